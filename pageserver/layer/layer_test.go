package layer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"strata.dev/libs/directio"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

var owner = id.TenantTimeline{Tenant: id.MustParse("11111111111111111111111111111111"), Timeline: id.MustParse("22222222222222222222222222222222")}

func TestNames(t *testing.T) {
	k1 := key.RelBlock(key.Rel{Spc: 1663, DB: 5, Rel: 16384}, 7)
	cases := []struct {
		name Name
		text string
	}{
		{DeltaName(key.Full, LSNRange{0x1696070, 0x16960E9}),
			"000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF__0000000001696070-00000000016960E9"},
		{ImageName(key.Range{Start: k1, End: k1.Next()}, 0x1234),
			"000000067F00000005000040000000000007-000000067F00000005000040000000000008__0000000000001234"},
	}
	for _, c := range cases {
		if got := c.name.String(); got != c.text {
			t.Errorf("String() = %s, want %s", got, c.text)
		}
		for _, suffix := range []string{"", "-v1-0000000a", "-0000000a"} {
			got, err := ParseName(c.text + suffix)
			if err != nil || got != c.name {
				t.Errorf("ParseName(%s) = %+v, %v; want %+v", c.text+suffix, got, err, c.name)
			}
		}
	}
	full := "000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
	for _, bad := range []string{
		"", "metadata", full, full + "__", full + "__123", full + "__0000000000000002-0000000000000001",
		full + "__0000000000000001-0000000000000001", full + "__FFFFFFFFFFFFFFFF", full + "__000000000000000G",
		"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF-000000000000000000000000000000000000__0000000000000001",
		full + "__0000000000000001" + TempSuffix,
	} {
		if n, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) = %+v, want an error", bad, n)
		}
	}
}

// testEntries makes sorted entries over nkeys keys, each with up to
// maxVersions versions between LSN 0x100 and 0x100+1000.
func testEntries(r *rand.Rand, nkeys, maxVersions int) []value.Entry {
	var es []value.Entry
	k := key.RelBlock(key.Rel{Spc: 1663, DB: 1, Rel: 1000}, 0)
	for i := 0; i < nkeys; i++ {
		k = k.Next()
		if r.IntN(3) == 0 {
			k = k.Next() // leave gaps
		}
		l := lsn.LSN(0x100)
		for v := 0; v < 1+r.IntN(maxVersions); v++ {
			l += lsn.LSN(1 + r.IntN(40))
			var val value.Value
			switch r.IntN(3) {
			case 0:
				val = value.NewImage(bytes.Repeat([]byte{byte(v)}, r.IntN(3000)))
			case 1:
				val = value.NewPostgres([]byte(fmt.Sprintf("rec %s@%s", k, l)), r.IntN(2) == 0)
			case 2:
				val = value.NewRecord(value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{uint32(v)}, Timestamp: int64(l)})
			}
			es = append(es, value.Entry{Key: k, LSN: l, Value: val})
		}
	}
	return es
}

func writeDelta(t testing.TB, dir string, es []value.Entry, opts WriterOptions) string {
	t.Helper()
	w, err := NewDeltaWriter(dir, owner, key.Full, LSNRange{0x100, 0x100000}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	path, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// normEntry makes entries comparable: nil and empty slices alike.
func normEntry(e value.Entry) value.Entry {
	if len(e.Value.Image) == 0 {
		e.Value.Image = nil
	}
	return e
}

func scanAll(it *Iterator) ([]value.Entry, error) {
	var out []value.Entry
	for it.Next() {
		out = append(out, normEntry(it.Entry()))
	}
	return out, it.Err()
}

func TestDeltaRoundTrip(t *testing.T) {
	for _, blockSize := range []int{1, 100, 4096, 0} {
		t.Run(fmt.Sprint(blockSize), func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(blockSize)))
			es := testEntries(r, 200, 12)
			dir := t.TempDir()
			path := writeDelta(t, dir, es, WriterOptions{BlockSize: blockSize})
			if filepath.Base(path) != DeltaName(key.Full, LSNRange{0x100, 0x100000}).String() {
				t.Fatalf("path %s", path)
			}
			d, err := OpenDelta(path)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Entries() != uint64(len(es)) || d.Owner() != owner {
				t.Fatalf("entries %d owner %v", d.Entries(), d.Owner())
			}
			got, err := scanAll(d.Scan())
			if err != nil {
				t.Fatal(err)
			}
			want := make([]value.Entry, len(es))
			for i, e := range es {
				want[i] = normEntry(e)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("scan differs")
			}
			checkDeltaGets(t, r, d, es)
		})
	}
}

// checkDeltaGets compares Get over random keys and LSN ranges with es.
func checkDeltaGets(t *testing.T, r *rand.Rand, d *Delta, es []value.Entry) {
	t.Helper()
	for q := 0; q < 2000; q++ {
		e := es[r.IntN(len(es))]
		k := e.Key
		if r.IntN(10) == 0 {
			k = k.Next()
		}
		rng := LSNRange{lsn.LSN(r.IntN(1500)), lsn.LSN(r.IntN(1500))}
		limit := r.IntN(5)
		var want []lsn.LSN
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].Key == k && rng.Contains(es[i].LSN) && (limit == 0 || len(want) < limit) {
				want = append(want, es[i].LSN)
			}
		}
		var got []lsn.LSN
		err := d.Get(k, rng, func(l lsn.LSN, v value.Value) bool {
			got = append(got, l)
			return limit == 0 || len(got) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Get(%s, %s, limit %d) = %v, want %v", k, rng, limit, got, want)
		}
	}
}

func TestImageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	base := key.RelBlock(key.Rel{Spc: 1663, DB: 1, Rel: 7}, 0)
	rng := key.Range{Start: base, End: key.RelSize(key.Rel{Spc: 1663, DB: 1, Rel: 7})}
	w, err := NewImageWriter(dir, owner, rng, 0x5000, WriterOptions{BlockSize: 9000})
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[key.Key][]byte{}
	for blk := uint32(0); blk < 100; blk++ {
		if blk%3 == 1 {
			continue
		}
		k := key.RelBlock(key.Rel{Spc: 1663, DB: 1, Rel: 7}, blk)
		img := bytes.Repeat([]byte{byte(blk)}, 8192)
		if blk%7 == 0 {
			img = nil
		}
		imgs[k] = img
		if err := w.Add(k, img); err != nil {
			t.Fatal(err)
		}
	}
	path, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	im, err := OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.LSN() != 0x5000 || im.Name() != ImageName(rng, 0x5000) {
		t.Fatalf("name %v", im.Name())
	}
	for blk := uint32(0); blk < 120; blk++ {
		k := key.RelBlock(key.Rel{Spc: 1663, DB: 1, Rel: 7}, blk)
		got, found, err := im.Get(k)
		want, ok := imgs[k]
		if err != nil || found != ok || !bytes.Equal(got, want) {
			t.Fatalf("Get(%d) = %d bytes, %v, %v; want %d bytes, %v", blk, len(got), found, err, len(want), ok)
		}
	}
	if _, found, err := im.Get(key.Min); found || err != nil {
		t.Fatalf("Get(Min) outside the range: %v %v", found, err)
	}
	es, err := scanAll(im.Scan())
	if err != nil || len(es) != len(imgs) {
		t.Fatalf("scan: %d entries, %v", len(es), err)
	}
	for _, e := range es {
		if e.LSN != 0x5000 || !e.Value.IsImage || !bytes.Equal(e.Value.Image, imgs[e.Key]) {
			t.Fatalf("scan entry %+v", e)
		}
	}
	if _, err := OpenDelta(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenDelta(image) = %v", err)
	}
}

func TestWriterRejects(t *testing.T) {
	dir := t.TempDir()
	k := key.RelBlock(key.Rel{Spc: 1663, DB: 1, Rel: 7}, 5)
	w, err := NewDeltaWriter(dir, owner, key.Range{Start: k, End: k.Next().Next()}, LSNRange{10, 20}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	img := value.NewImage([]byte("x"))
	ok := []value.Entry{{Key: k, LSN: 10, Value: img}, {Key: k, LSN: 19, Value: img}, {Key: k.Next(), LSN: 10, Value: img}}
	for _, e := range ok {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	bad := []value.Entry{
		{Key: k.Next(), LSN: 10, Value: img},        // repeated
		{Key: k, LSN: 11, Value: img},               // out of order
		{Key: k.Next(), LSN: 20, Value: img},        // LSN out of range
		{Key: k.Next().Next(), LSN: 12, Value: img}, // key out of range
	}
	for _, e := range bad {
		if err := w.Add(e); err == nil {
			t.Errorf("Add(%s@%s) accepted", e.Key, e.LSN)
		}
	}
	if _, err := NewDeltaWriter(dir, owner, key.Full, LSNRange{5, 5}, WriterOptions{}); err == nil {
		t.Error("empty LSN range accepted")
	}
	w.Abort()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("Abort left %v", names)
	}
}

func dirNames(t testing.TB, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// failingFile fails with ENOSPC once more than limit bytes were written,
// or on Sync when failSync is set.
type failingFile struct {
	*os.File
	limit    int64
	written  int64
	failSync bool
}

func (f *failingFile) Write(b []byte) (int, error) {
	if f.written+int64(len(b)) > f.limit {
		return 0, syscall.ENOSPC
	}
	f.written += int64(len(b))
	return f.File.Write(b)
}

func (f *failingFile) Sync() error {
	if f.failSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

func TestWriteErrors(t *testing.T) {
	es := testEntries(rand.New(rand.NewPCG(3, 3)), 300, 5)
	for _, c := range []struct {
		limit    int64
		failSync bool
		want     error
	}{{0, false, syscall.ENOSPC}, {1000, false, syscall.ENOSPC}, {100000, false, syscall.ENOSPC}, {1 << 40, true, syscall.EIO}} {
		dir := t.TempDir()
		opts := WriterOptions{CreateFile: func(path string) (File, error) {
			f, err := os.Create(path)
			return &failingFile{File: f, limit: c.limit, failSync: c.failSync}, err
		}}
		var err error
		w, err := NewDeltaWriter(dir, owner, key.Full, LSNRange{0x100, 0x100000}, opts)
		if err == nil {
			for _, e := range es {
				if err = w.Add(e); err != nil {
					break
				}
			}
			if err == nil {
				_, err = w.Finish()
			}
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), dir) {
			t.Errorf("limit %d: error %v, want %v naming the file", c.limit, err, c.want)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Errorf("limit %d: left %v", c.limit, names)
		}
	}
}

// TestCorruption flips every byte of a small delta and an image layer in
// turn: each flip must give ErrCorrupt naming the file, never other data.
func TestCorruption(t *testing.T) {
	dir := t.TempDir()
	es := testEntries(rand.New(rand.NewPCG(4, 4)), 12, 3)
	for i := range es {
		if es[i].Value.IsImage {
			es[i].Value.Image = es[i].Value.Image[:len(es[i].Value.Image)%50]
		}
	}
	deltaPath := writeDelta(t, dir, es, WriterOptions{BlockSize: 200})
	iw, err := NewImageWriter(dir, owner, key.Full, 0x200, WriterOptions{BlockSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		if i == 0 || e.Key != es[i-1].Key {
			iw.Add(e.Key, []byte(fmt.Sprint("image of ", e.Key)))
		}
	}
	imagePath, err := iw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{deltaPath, imagePath} {
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := readEverything(orig, path)
		if err != nil {
			t.Fatal(err)
		}
		for off := range orig {
			for _, x := range []byte{0x01, 0x80, 0xFF} {
				b := bytes.Clone(orig)
				b[off] ^= x
				got, err := readEverything(b, path)
				if err == nil {
					if got != want {
						t.Fatalf("%s: flip %#x at %d gave different data and no error", filepath.Base(path), x, off)
					}
					continue
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Fatalf("flip at %d: error %v is not ErrCorrupt naming the file", off, err)
				}
			}
		}
		// Truncations too.
		for n := 0; n < len(orig); n += 7 {
			if _, err := readEverything(orig[:n], path); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d: %v", n, err)
			}
		}
	}
}

// readEverything opens a layer image from memory and renders a scan and
// point lookups of every key it holds.
func readEverything(b []byte, path string) (string, error) {
	kind := KindDelta
	if bytes.HasPrefix(b, magicImage[:]) {
		kind = KindImage
	}
	f, err := openFile(bytes.NewReader(b), int64(len(b)), path, kind)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	var it *Iterator
	if kind == KindDelta {
		it = (&Delta{f}).Scan()
	} else {
		it = (&Image{f}).Scan()
	}
	es, err := scanAll(it)
	if err != nil {
		return "", err
	}
	for _, e := range es {
		fmt.Fprintf(&out, "%s@%s=%x;", e.Key, e.LSN, e.Value.Encode())
		if kind == KindDelta {
			err = (&Delta{f}).Get(e.Key, LSNRange{0, e.LSN + 1}, func(l lsn.LSN, v value.Value) bool {
				fmt.Fprintf(&out, "%s:%x,", l, v.Encode())
				return true
			})
		} else {
			var img []byte
			img, _, err = (&Image{f}).Get(e.Key)
			fmt.Fprintf(&out, "%x", img)
		}
		if err != nil {
			return "", err
		}
	}
	return out.String(), nil
}

// TestDirectFile: a layer written around the page cache (where the test's
// file system allows it) reads back whole whatever its size: smaller than
// one chunk, exactly chunks, and chunks plus an unaligned end, with the
// header patched in memory or on disk.
func TestDirectFile(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 100, directio.Align, directChunk - headerSize, directChunk, 3*directChunk + 777} {
		path := filepath.Join(dir, fmt.Sprintf("f%d", size))
		created, err := CreateFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := created.(*directFile)
		if !ok {
			t.Skip("the file system refuses O_DIRECT")
		}
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7 + i>>13)
		}
		// Odd write sizes, then a patch at the start, as the writer's header.
		for rest := want; len(rest) > 0; {
			k := min(len(rest), 1+len(rest)%5000+3000)
			if _, err := f.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if size >= 64 {
			copy(want, bytes.Repeat([]byte{0xAB}, 64))
			if _, err := f.WriteAt(want[:64], 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.WriteAt([]byte{1}, int64(size)); err == nil {
			t.Fatal("a patch past the written bytes was taken")
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte{1}); err == nil {
			t.Fatal("a write after Sync was taken")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: file of %d bytes differs from what was written", size, len(got))
		}
	}
}
