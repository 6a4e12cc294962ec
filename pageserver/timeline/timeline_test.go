package timeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// TestReadPath checks §5.5 on one timeline, with the versions in memory,
// after a flush to an L0 layer, and after a restart.
func TestReadPath(t *testing.T) {
	a, b, c, d := blk(1, 0), blk(1, 1), blk(1, 2), blk(2, 0)
	commits := []struct {
		last lsn.LSN
		es   []value.Entry
	}{
		{0x200, []value.Entry{ent(a, 0x200, img("A")), ent(b, 0x200, ini("B"))}},
		{0x300, []value.Entry{ent(a, 0x280, rec("1")), ent(b, 0x300, rec("2")), ent(a, 0x300, rec("3"))}},
		{0x400, []value.Entry{ent(a, 0x400, ini("new")), ent(c, 0x380, rec("orphan"))}},
		{0x500, []value.Entry{ent(a, 0x480, rec("x")), ent(b, 0x500, img("img"))}},
	}
	reads := []struct {
		k    key.Key
		at   lsn.LSN
		want string // "" = missing
	}{
		{a, 0x1FF, ""}, {a, 0x200, "A"}, {a, 0x27F, "A"}, {a, 0x280, "A1"}, {a, 0x300, "A13"},
		{a, 0x3FF, "A13"}, {a, 0x400, "new"}, {a, 0x480, "newx"}, {a, lsn.Max, "newx"},
		{b, 0x200, "B"}, {b, 0x300, "B2"}, {b, 0x4FF, "B2"}, {b, 0x500, "img"},
		{c, 0x380, ""}, {c, 0x500, ""}, // records without a base
		{d, 0x500, ""},
	}
	check := func(t *testing.T, tl *Timeline) {
		for _, r := range reads {
			if r.want == "" {
				mustMiss(t, tl, r.k, r.at)
			} else {
				mustRead(t, tl, r.k, r.at, r.want)
			}
		}
	}
	for _, mode := range []string{"memory", "flushed each", "flushed once", "reopened"} {
		t.Run(mode, func(t *testing.T) {
			dir := tlDir(t.TempDir(), 1)
			tl, err := Create(dir, testOptions(t, 1))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { tl.Close() }()
			for _, c := range commits {
				mustCommit(t, tl, c.last, c.es...)
				if mode == "flushed each" {
					mustFlush(t, tl)
				}
			}
			if mode != "memory" {
				mustFlush(t, tl)
			}
			if mode == "reopened" {
				tl.Close()
				if tl, err = Open(dir, testOptions(t, 1)); err != nil {
					t.Fatal(err)
				}
			}
			check(t, tl)
			if mode == "flushed each" && len(tl.Layers()) != 5 { // open + 4 L0s
				t.Fatalf("layers: %+v", tl.Layers())
			}
		})
	}
}

func TestMissingKeyError(t *testing.T) {
	tl, err := Create(tlDir(t.TempDir(), 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	k := blk(9, 9)
	_, err = tl.Get(context.Background(), k, 0x1234)
	var mk *MissingKeyError
	if !errors.Is(err, ErrMissingKey) || !errors.As(err, &mk) || mk.Key != k || mk.LSN != 0x1234 ||
		!strings.Contains(err.Error(), k.String()) || !strings.Contains(err.Error(), "0/1234") {
		t.Fatalf("error %v", err)
	}
	if _, err := tl.Get(context.Background(), k, 0x50); !errors.Is(err, ErrGarbageCollected) {
		t.Fatalf("read below initdb (the GC cutoff): %v", err)
	}
}

func TestCommitValidation(t *testing.T) {
	tl, err := Create(tlDir(t.TempDir(), 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	a := blk(1, 0)
	mustCommit(t, tl, 0x200, ent(a, 0x200, img("x")))
	for _, c := range []struct {
		name string
		es   []value.Entry
		last lsn.LSN
	}{
		{"at last_record_lsn", []value.Entry{ent(a, 0x200, img("y"))}, 0x300},
		{"above lastRecord", []value.Entry{ent(a, 0x301, img("y"))}, 0x300},
		{"lastRecord going back", nil, 0x1FF},
		{"one bad entry of many", []value.Entry{ent(a, 0x250, img("y")), ent(a, 0x100, img("z"))}, 0x300},
	} {
		if err := tl.Commit(c.es, c.last, 0x200); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if last, prev := tl.LastRecordLSN(); last != 0x200 || prev != 0x100 {
		t.Fatalf("after rejected commits: last %s prev %s", last, prev)
	}
	mustRead(t, tl, a, 0x300, "x") // nothing of the rejected batches is visible
	if err := tl.Commit(nil, 0x208, 0x200); err != nil {
		t.Fatal(err)
	}
	if last, prev := tl.LastRecordLSN(); last != 0x208 || prev != 0x200 {
		t.Fatalf("last %s prev %s", last, prev)
	}
}

func TestWaitLSN(t *testing.T) {
	tl, err := Create(tlDir(t.TempDir(), 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	ctx := context.Background()
	if err := tl.WaitLSN(ctx, 0x100, time.Second); err != nil {
		t.Fatal(err)
	}
	err = tl.WaitLSN(ctx, 0x300, 20*time.Millisecond)
	if !errors.Is(err, ErrWaitLSNTimeout) || !strings.Contains(err.Error(), "0/300") || !strings.Contains(err.Error(), "0/100") {
		t.Fatalf("timeout error %v should name both LSNs", err)
	}
	done := make(chan error)
	go func() { done <- tl.WaitLSN(ctx, 0x300, 10*time.Second) }()
	mustCommit(t, tl, 0x200)
	mustCommit(t, tl, 0x300)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- tl.WaitLSN(cctx, 0x400, 0) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	go func() { done <- tl.WaitLSN(ctx, 0x400, 0) }()
	tl.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

func TestFreezeAtCheckpointDistance(t *testing.T) {
	opts := testOptions(t, 1)
	opts.CheckpointDistance = 10 << 10
	tl, err := Create(tlDir(t.TempDir(), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	page := make([]byte, 8192)
	l := lsn.LSN(0x100)
	for i := 0; i < 20; i++ {
		l += 8
		mustCommit(t, tl, l, ent(blk(1, uint32(i)), l, value.NewImage(page)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for tl.DiskConsistentLSN() < l-8 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if dcl := tl.DiskConsistentLSN(); dcl < l-8 {
		t.Fatalf("disk_consistent_lsn %s after 20 pages with a 10 KiB checkpoint distance", dcl)
	}
	n := 0
	for _, li := range tl.Layers() {
		if !li.InMemory {
			n++
			if li.Kind != layer.KindDelta || li.Keys != key.Full || li.Size <= 0 {
				t.Fatalf("layer %+v", li)
			}
		}
	}
	if n < 9 {
		t.Fatalf("%d layer files, want one per 2 pages", n)
	}
}

func TestCheckpointTimeout(t *testing.T) {
	opts := testOptions(t, 1)
	opts.CheckpointTimeout = 20 * time.Millisecond
	tl, err := Create(tlDir(t.TempDir(), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	mustCommit(t, tl, 0x200, ent(blk(1, 0), 0x200, img("x")))
	deadline := time.Now().Add(10 * time.Second)
	for tl.DiskConsistentLSN() != 0x200 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if tl.DiskConsistentLSN() != 0x200 {
		t.Fatal("an old open layer was not flushed")
	}
}

// TestRestart covers Open: clean restart, crash (no flush), cleanup of
// temporary files and layers in the future, and the metadata.
func TestRestart(t *testing.T) {
	base := t.TempDir()
	dir := tlDir(base, 1)
	tl, err := Create(dir, testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, testOptions(t, 1)); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v", err)
	}
	a := blk(1, 0)
	mustCommit(t, tl, 0x200, ent(a, 0x200, img("A")))
	mustCommit(t, tl, 0x300, ent(a, 0x300, rec("1")))
	mustFlush(t, tl)
	mustCommit(t, tl, 0x400, ent(a, 0x400, rec("2")))
	mustCommit(t, tl, 0x500, ent(a, 0x500, rec("3")))
	tl.Freeze() // frozen but perhaps not flushed at the "crash"
	tl.Close()
	dcl := tl.DiskConsistentLSN()
	if dcl != 0x300 && dcl != 0x500 {
		t.Fatalf("disk_consistent_lsn %s", dcl)
	}

	// Leftovers of a crash: a temporary file and a layer above dcl.
	tmp := filepath.Join(dir, "junk"+layer.TempSuffix)
	future := filepath.Join(dir, layer.DeltaName(key.Full, layer.LSNRange{Start: dcl + 1, End: dcl + 0x100}).String())
	futureImg := filepath.Join(dir, layer.ImageName(key.Full, dcl+1).String())
	for _, p := range []string{tmp, future, futureImg} {
		if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tl, err = Open(dir, testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tmp, future, futureImg} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived Open", filepath.Base(p))
		}
	}
	last, prev := tl.LastRecordLSN()
	wantPrev := map[lsn.LSN]lsn.LSN{0x300: 0x200, 0x500: 0x400}[dcl]
	if last != dcl || prev != wantPrev || tl.DiskConsistentLSN() != dcl {
		t.Fatalf("after restart last %s prev %s dcl %s, want %s %s", last, prev, tl.DiskConsistentLSN(), dcl, wantPrev)
	}
	mustRead(t, tl, a, 0x300, "A1")
	if dcl == 0x300 {
		mustRead(t, tl, a, 0x500, "A1")
		// The caller re-ingests the WAL above disk_consistent_lsn.
		mustCommit(t, tl, 0x400, ent(a, 0x400, rec("2")))
		mustCommit(t, tl, 0x500, ent(a, 0x500, rec("3")))
	}
	mustRead(t, tl, a, 0x500, "A123")
	mustFlush(t, tl)
	tl.Close()
	if tl, err = Open(dir, testOptions(t, 1)); err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	if last, _ := tl.LastRecordLSN(); last != 0x500 {
		t.Fatalf("after a clean restart last %s", last)
	}
	mustRead(t, tl, a, 0x500, "A123")
	if tl.PgVersion() != 15 || tl.InitDBLSN() != 0x100 || tl.GCCutoff() != 0x100 {
		t.Fatalf("metadata: pg %d initdb %s cutoff %s", tl.PgVersion(), tl.InitDBLSN(), tl.GCCutoff())
	}

	// A damaged metadata file stops Open with a clear error.
	mp := filepath.Join(dir, MetadataFile)
	b, _ := os.ReadFile(mp)
	b[20] ^= 1
	os.WriteFile(mp, b, 0o644)
	if _, err := Open(dir, testOptions(t, 1)); !errors.Is(err, ErrCorruptMetadata) {
		t.Fatalf("Open with damaged metadata: %v", err)
	}
}

// TestInitialImport: values at exactly InitDBLSN, flushed as an image
// layer; a crash before that flush accepts the import again.
func TestInitialImport(t *testing.T) {
	dir := tlDir(t.TempDir(), 1)
	tl, err := Create(dir, testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	a, b := blk(1, 0), blk(1, 1)
	mustCommit(t, tl, 0x100, ent(a, 0x100, img("A")))
	mustCommit(t, tl, 0x100, ent(b, 0x100, img("B")))
	mustRead(t, tl, b, 0x100, "B")
	tl.Close() // crash before the import is on disk
	if tl, err = Open(dir, testOptions(t, 1)); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, tl, a, 0x100)
	mustCommit(t, tl, 0x100, ent(a, 0x100, img("A")), ent(b, 0x100, img("B")))
	mustFlush(t, tl)
	var files []LayerInfo
	for _, li := range tl.Layers() {
		if !li.InMemory {
			files = append(files, li)
		}
	}
	if len(files) != 1 || files[0].Kind != layer.KindImage || files[0].LSNs.Start != 0x100 {
		t.Fatalf("after the import: %+v", files)
	}
	if err := tl.Commit([]value.Entry{ent(a, 0x100, img("again"))}, 0x100, 0); err == nil {
		t.Fatal("import accepted after it was flushed")
	}
	mustCommit(t, tl, 0x200, ent(a, 0x200, rec("1")))
	tl.Close()
	if tl, err = Open(dir, testOptions(t, 1)); err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	mustRead(t, tl, a, 0x200, "A")
	mustRead(t, tl, b, 0x200, "B")
	mustMiss(t, tl, blk(1, 2), 0x200) // the image layer covers every key
}

// TestBranch checks §5.1: fall-through at the branch point, writes of the
// child invisible to the parent, non-inherited keys, and the image layer
// range rule.
func TestBranch(t *testing.T) {
	base := t.TempDir()
	parent, err := Create(tlDir(base, 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	a, b, c := blk(1, 0), blk(1, 1), blk(1, 2)
	aux := key.Key{Field1: 3, Field6: 2} // Neon's legacy aux file key: never inherited
	mustCommit(t, parent, 0x200, ent(a, 0x200, img("A")), ent(b, 0x200, img("B")), ent(aux, 0x200, img("aux")))
	mustCommit(t, parent, 0x300, ent(a, 0x300, rec("1")))
	mustFlush(t, parent)
	mustCommit(t, parent, 0x400, ent(a, 0x400, rec("2")), ent(c, 0x400, img("C")))

	copts := testOptions(t, 2)
	copts.Ancestor, copts.AncestorLSN = parent, 0x500
	if _, err := Create(tlDir(base, 2), copts); err == nil {
		t.Fatal("branch above the parent's last record LSN accepted")
	}
	copts.AncestorLSN = 0x350
	child, err := Create(tlDir(base, 2), copts)
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := child.LastRecordLSN(); last != 0x350 {
		t.Fatalf("child starts at %s", last)
	}
	if err := child.Commit([]value.Entry{ent(a, 0x350, rec("x"))}, 0x360, 0x350); err == nil {
		t.Fatal("child accepted a value at its branch point")
	}
	mustRead(t, child, a, 0x350, "A1")
	mustRead(t, child, a, 0x1000, "A1") // not the parent's 0x400
	mustMiss(t, child, c, 0x1000)
	mustMiss(t, child, aux, 0x1000)
	mustRead(t, parent, aux, 0x1000, "aux")

	mustCommit(t, child, 0x380, ent(a, 0x380, rec("c")), ent(b, 0x380, img("child B")))
	mustRead(t, child, a, 0x380, "A1c")
	mustRead(t, child, a, 0x37F, "A1")
	mustRead(t, child, b, 0x380, "child B")
	mustRead(t, parent, a, 0x400, "A12")
	mustRead(t, parent, b, 0x400, "B")

	// A branch of the child reads through two levels.
	gopts := testOptions(t, 3)
	gopts.Ancestor, gopts.AncestorLSN = child, 0x380
	grand, err := Create(tlDir(base, 3), gopts)
	if err != nil {
		t.Fatal(err)
	}
	defer grand.Close()
	mustRead(t, grand, a, 0x390, "A1c")
	mustRead(t, grand, a, 0x300, "A1")
	mustRead(t, grand, b, 0x390, "child B")

	// An image layer on the child whose range holds b but not a: a does
	// not exist on the child from then on, though the parent has it.
	mustFlush(t, child)
	keyspace := func(context.Context, lsn.LSN) ([]key.Range, error) {
		return []key.Range{{Start: b, End: c}}, nil
	}
	copts2 := child.opts
	child.opts.ImageThreshold, child.opts.CompactionTargetSize = 1, 8192*100
	if err := child.Compact(context.Background(), keyspace); err != nil {
		t.Fatal(err)
	}
	child.opts = copts2
	images := 0
	for _, li := range child.Layers() {
		if li.Kind == layer.KindImage {
			images++
			if li.Keys != (key.Range{Start: b, End: c}) || li.LSNs.Start != 0x380 {
				t.Fatalf("image layer %+v", li)
			}
		}
	}
	if images != 1 {
		t.Fatalf("%d image layers", images)
	}
	mustRead(t, child, b, 0x380, "child B")
	mustRead(t, child, a, 0x37F, "A1")
	mustRead(t, child, a, 0x380, "A1c") // a is outside the image layer's range
	child.Close()

	// Reopen the child; it needs its parent.
	if _, err := Open(tlDir(base, 2), testOptions(t, 2)); err == nil {
		t.Fatal("Open of a branch without its ancestor accepted")
	}
	copts.AncestorLSN = 0
	child, err = Open(tlDir(base, 2), copts)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	if _, anc := child.Ancestor(); anc != 0x350 {
		t.Fatalf("ancestor LSN %s", anc)
	}
	mustRead(t, child, b, 0x380, "child B")
	mustRead(t, child, a, 0x350, "A1")
}

// TestImageRangeRule: a key inside an image layer's range but not in it
// does not exist, even though the parent has it.
func TestImageRangeRule(t *testing.T) {
	base := t.TempDir()
	parent, err := Create(tlDir(base, 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	a, b, c := blk(1, 0), blk(1, 1), blk(1, 2)
	mustCommit(t, parent, 0x200, ent(a, 0x200, img("A")), ent(b, 0x200, img("B")), ent(c, 0x200, img("C")))
	copts := testOptions(t, 2)
	copts.Ancestor, copts.AncestorLSN = parent, 0x200
	copts.ImageThreshold = 1
	child, err := Create(tlDir(base, 2), copts)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	mustCommit(t, child, 0x300, ent(a, 0x300, rec("1")))
	mustFlush(t, child)
	// The live key space says b was dropped (a and c remain).
	keyspace := func(context.Context, lsn.LSN) ([]key.Range, error) {
		return []key.Range{{Start: c, End: c.Next()}, {Start: a, End: b}}, nil
	}
	if err := child.Compact(context.Background(), keyspace); err != nil {
		t.Fatal(err)
	}
	mustRead(t, child, a, 0x300, "A1")
	mustRead(t, child, c, 0x300, "C")
	mustMiss(t, child, b, 0x300)
	mustRead(t, child, b, 0x2FF, "B") // below the image layer
	mustRead(t, parent, b, 0x300, "B")
}

// TestCompaction: image layers appear after ImageThreshold deltas, reads
// are unchanged, and a second Compact at the same LSN does nothing.
func TestCompaction(t *testing.T) {
	opts := testOptions(t, 1)
	opts.CompactionTargetSize = 8192 * 3
	dir := tlDir(t.TempDir(), 1)
	tl, err := Create(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { tl.Close() }()
	const n = 8
	want := map[uint32]string{}
	l := lsn.LSN(0x100)
	for round := 0; round < 3; round++ {
		for i := uint32(0); i < n; i++ {
			l += 8
			if round == 0 {
				mustCommit(t, tl, l, ent(blk(1, i), l, img("i")))
			} else {
				mustCommit(t, tl, l, ent(blk(1, i), l, rec("r")))
			}
			want[i] += map[bool]string{true: "i", false: "r"}[round == 0]
		}
		mustFlush(t, tl)
	}
	var calls int
	keyspace := func(_ context.Context, at lsn.LSN) ([]key.Range, error) {
		calls++
		if at != l {
			t.Errorf("key space at %s, want last record LSN %s", at, l)
		}
		return []key.Range{{Start: blk(1, 0), End: blk(1, n)}, key.Range{Start: key.ReplOrigin(1), End: key.ReplOrigin(3)}}, nil
	}
	imagesAt := l
	countImages := func() (images int) {
		for _, li := range tl.Layers() {
			if li.Kind == layer.KindImage {
				images++
				if li.Keys.Start.Field1 != 0 || li.LSNs.Start != imagesAt {
					t.Fatalf("image layer %+v", li)
				}
			}
		}
		return images
	}
	if err := tl.Compact(context.Background(), keyspace); err != nil {
		t.Fatal(err)
	}
	if got := countImages(); got != 3 { // 8 keys, 3 per layer
		t.Fatalf("%d image layers, want 3", got)
	}
	if err := tl.Compact(context.Background(), keyspace); err != nil || countImages() != 3 {
		t.Fatalf("second Compact: %v, %d image layers", err, countImages())
	}
	// The second pass found nothing to do; with no layer since, a third
	// does not even compute the key space. A new delta layer brings it back.
	if err := tl.Compact(context.Background(), keyspace); err != nil || calls != 2 {
		t.Fatalf("third Compact with no new layer: %v, key space computed %d times, want 2", err, calls)
	}
	l += 8
	mustCommit(t, tl, l, ent(blk(1, 0), l, rec("r")))
	want[0] += "r"
	mustFlush(t, tl)
	if err := tl.Compact(context.Background(), keyspace); err != nil || calls != 3 || countImages() != 3 {
		t.Fatalf("Compact after a new delta layer: %v, key space computed %d times, want 3; %d image layers", err, calls, countImages())
	}
	for i := uint32(0); i < n; i++ {
		mustRead(t, tl, blk(1, i), l, want[i])
	}
	mustMiss(t, tl, blk(1, n), l)
	// Old LSNs still read from the deltas.
	mustRead(t, tl, blk(1, 0), 0x108, "i")
	mustRead(t, tl, blk(1, 0), imagesAt, want[0][:len(want[0])-1])
	tl.Close()
	if tl, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	if countImages() != 3 {
		t.Fatal("image layers lost on restart")
	}
	for i := uint32(0); i < n; i++ {
		mustRead(t, tl, blk(1, i), l, want[i])
	}
	tl.opts.Reconstructor = nil
	if err := tl.Compact(context.Background(), keyspace); err == nil {
		t.Fatal("Compact without a Reconstructor")
	}
}

// TestCorruptLayer: a damaged layer file fails the reads that touch it,
// naming the file; other reads go on.
func TestCorruptLayer(t *testing.T) {
	dir := tlDir(t.TempDir(), 1)
	tl, err := Create(dir, testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	a, b := blk(1, 0), blk(1, 1)
	mustCommit(t, tl, 0x200, ent(a, 0x200, img("A")))
	mustFlush(t, tl)
	mustCommit(t, tl, 0x300, ent(b, 0x300, img("B")))
	mustFlush(t, tl)
	tl.Close()
	var first string
	for _, li := range tl.Layers() {
		if !li.InMemory && li.LSNs.Start == 0x100 {
			first = filepath.Join(dir, li.Name)
		}
	}
	for _, off := range []int64{10, 140, -10} { // header, block, index
		raw, err := os.ReadFile(first)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), raw...)
		if off < 0 {
			off += int64(len(bad))
		}
		bad[off] ^= 0x40
		os.WriteFile(first, bad, 0o644)
		tl, err := Open(dir, testOptions(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		_, err = tl.Get(context.Background(), a, 0x300)
		if !errors.Is(err, layer.ErrCorrupt) || !strings.Contains(err.Error(), first) {
			t.Fatalf("flip at %d: %v", off, err)
		}
		mustRead(t, tl, b, 0x300, "B") // b is found in the newer, intact layer
		tl.Close()
		os.WriteFile(first, raw, 0o644)
	}
}

// TestConcurrentReads reads while commits, freezes, flushes and
// compaction run (for the race detector).
func TestConcurrentReads(t *testing.T) {
	opts := testOptions(t, 1)
	opts.CheckpointDistance = 8 << 10
	opts.ImageThreshold = 2
	tl, err := Create(tlDir(t.TempDir(), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	const keys = 16
	mustCommit(t, tl, 0x100+keys*8, func() []value.Entry {
		var es []value.Entry
		for i := 0; i < keys; i++ {
			es = append(es, ent(blk(1, uint32(i)), lsn.LSN(0x108+i*8), ini("0")))
		}
		return es
	}()...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				last, _ := tl.LastRecordLSN()
				k := blk(1, uint32(i%keys))
				got, err := read(tl, k, last)
				if err != nil {
					errs <- err
					return
				}
				// Each key's value is a growing run of digits.
				if len(got) == 0 || got[0] != '0' {
					errs <- errors.New("bad value " + string(got))
					return
				}
			}
		}()
	}
	keyspace := func(context.Context, lsn.LSN) ([]key.Range, error) {
		return []key.Range{{Start: blk(1, 0), End: blk(1, keys)}}, nil
	}
	l := lsn.LSN(0x100 + keys*8)
	for i := 0; i < 2000; i++ {
		l += 8
		mustCommit(t, tl, l, ent(blk(1, uint32(i%keys)), l, rec("1")))
		if i%500 == 499 {
			if err := tl.Compact(ctx, keyspace); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mustFlush(t, tl)
}

// TestNoGoroutineLeak: Close waits for the flusher.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	base := t.TempDir()
	parent, err := Create(tlDir(base, 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, parent, 0x200, ent(blk(1, 0), 0x200, img("A")))
	opts := testOptions(t, 2)
	opts.Ancestor, opts.AncestorLSN = parent, 0x200
	child, err := Create(tlDir(base, 2), opts)
	if err != nil {
		t.Fatal(err)
	}
	parent.Freeze()
	child.Close()
	parent.Close()
	parent.Close() // twice is fine
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
	if _, err := parent.Get(context.Background(), blk(1, 0), 0x200); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := parent.Commit(nil, 0x300, 0x200); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
}

// TestNoCompactionDuringImport: an image at InitDBLSN while the import
// goes on would hide the rest of the import.
func TestNoCompactionDuringImport(t *testing.T) {
	opts := testOptions(t, 1)
	opts.ImageThreshold = 1
	tl, err := Create(tlDir(t.TempDir(), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	a, b := blk(1, 0), blk(1, 1)
	mustCommit(t, tl, 0x100, ent(a, 0x100, img("A")))
	keyspace := func(context.Context, lsn.LSN) ([]key.Range, error) {
		return []key.Range{{Start: a, End: b.Next()}}, nil
	}
	if err := tl.Compact(context.Background(), keyspace); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, tl, 0x100, ent(b, 0x100, img("B")))
	mustRead(t, tl, b, 0x100, "B")
	for _, li := range tl.Layers() {
		if !li.InMemory {
			t.Fatalf("layer %s during the import", li.Name)
		}
	}
}
