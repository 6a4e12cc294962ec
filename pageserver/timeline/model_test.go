package timeline

// A randomized model test: random commits of images, records and
// will_init records over a small key set, with freezes, flushes,
// compaction, branches, clean restarts and crashes, comparing Get at
// random LSNs with an in-memory model after every step.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

var modelKeys = func() []key.Key {
	var ks []key.Key
	for b := uint32(0); b < 8; b++ {
		ks = append(ks, blk(1, b))
	}
	for b := uint32(0); b < 4; b++ {
		ks = append(ks, blk(2, b))
	}
	return append(ks,
		key.Key{Field1: 3, Field6: 2}, // legacy aux key: dense, not inherited
		key.ReplOrigin(1),             // sparse, not inherited
	)
}()

type modelTimeline struct {
	n       byte
	tl      *Timeline
	m       *model
	parent  *modelTimeline
	created lsn.LSN // last_record_lsn at creation
}

type modelRun struct {
	t    *testing.T
	r    *rand.Rand
	base string
	tls  []*modelTimeline // parents before children
	log  strings.Builder  // the steps, printed on failure

	restarts, crashes, reads int
}

func TestModel(t *testing.T) {
	seeds, steps := 12, 250
	if testing.Short() {
		seeds = 3
	}
	// STRATA_MODEL_SEEDS=n runs more seeds (longer soak runs by hand).
	if n, err := strconv.Atoi(os.Getenv("STRATA_MODEL_SEEDS")); err == nil {
		seeds = n
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			mr := &modelRun{t: t, r: rand.New(rand.NewPCG(uint64(seed), 99)), base: t.TempDir()}
			defer func() {
				if t.Failed() {
					t.Logf("steps:\n%s", mr.log.String())
				}
				for i := len(mr.tls) - 1; i >= 0; i-- {
					mr.tls[i].tl.Close()
				}
			}()
			mr.run(steps)
		})
	}
}

func (mr *modelRun) options(mt *modelTimeline) Options {
	opts := testOptions(mr.t, mt.n)
	opts.CheckpointDistance = 4 << 10
	opts.ImageThreshold = 2
	opts.CompactionTargetSize = 8192 * 5
	if mt.parent != nil {
		opts.Ancestor = mt.parent.tl
		opts.AncestorLSN = mt.m.ancLSN
	}
	return opts
}

func (mr *modelRun) step(format string, args ...any) {
	fmt.Fprintf(&mr.log, format+"\n", args...)
}

func (mr *modelRun) run(steps int) {
	t, r := mr.t, mr.r
	root := &modelTimeline{n: 1, m: newModel(nil, 0), created: 0x100}
	tl, err := Create(tlDir(mr.base, 1), mr.options(root))
	if err != nil {
		t.Fatal(err)
	}
	root.tl = tl
	mr.tls = append(mr.tls, root)
	for i := 0; i < 1+r.IntN(3); i++ { // the initial import, maybe in several commits
		var es []value.Entry
		for _, k := range modelKeys[:r.IntN(len(modelKeys))] {
			es = append(es, ent(k, 0x100, img(fmt.Sprint("imp", i))))
		}
		mr.commit(root, batch{entries: es, last: 0x100})
	}
	for s := 0; s < steps && !t.Failed(); s++ {
		mt := mr.tls[r.IntN(len(mr.tls))]
		switch p := r.IntN(100); {
		case p < 60:
			mr.randomCommit(mt)
		case p < 66:
			mr.step("freeze %d", mt.n)
			mt.tl.Freeze()
		case p < 74:
			mr.step("flush %d", mt.n)
			mustFlush(t, mt.tl)
		case p < 82:
			mr.step("compact %d", mt.n)
			if err := mt.tl.Compact(context.Background(), mr.keyspace(mt)); err != nil {
				t.Fatal(err)
			}
		case p < 86:
			mr.restart(false)
		case p < 91:
			mr.restart(true)
		case p < 96 && len(mr.tls) < 5:
			mr.branch(mt)
		}
		mr.check(8, lsn.Max)
	}
	mr.check(100, lsn.Max)
	var deltas, images, reads int
	for _, mt := range mr.tls {
		for _, li := range mt.tl.Layers() {
			switch {
			case li.InMemory:
			case li.Kind == layer.KindImage:
				images++
			default:
				deltas++
			}
		}
	}
	reads = mr.reads
	t.Logf("%d timelines, %d delta and %d image layer files, %d restarts (%d crashes), %d reads checked",
		len(mr.tls), deltas, images, mr.restarts, mr.crashes, reads)
}

func (mr *modelRun) commit(mt *modelTimeline, b batch) {
	mr.step("commit %d last %s: %d entries", mt.n, b.last, len(b.entries))
	if err := mt.tl.Commit(b.entries, b.last, b.prev); err != nil {
		mr.t.Fatal(err)
	}
	mt.m.commit(b)
}

func (mr *modelRun) randomCommit(mt *modelTimeline) {
	r := mr.r
	last, _ := mt.tl.LastRecordLSN()
	b := batch{prev: last}
	l := last
	pending := newModel(mt.m.parent, mt.m.ancLSN) // what the batch has added so far
	pending.versions = mt.m.versions
	for i := 0; i < 1+r.IntN(4); i++ {
		l += lsn.LSN(8 * (1 + r.IntN(4)))
		k := modelKeys[r.IntN(len(modelKeys))]
		_, exists := mt.m.lookup(k, l)
		for _, e := range b.entries { // the batch so far
			exists = exists || e.Key == k
		}
		s := fmt.Sprintf("%x", r.IntN(16))
		var v value.Value
		switch p := r.IntN(10); {
		case p < 2:
			v = img(s)
			if r.IntN(4) == 0 {
				v = value.NewImage([]byte(strings.Repeat(s, 2000))) // fills layers faster
			}
		case p < 4 || !exists:
			v = ini(s)
		default:
			v = rec(s)
		}
		b.entries = append(b.entries, ent(k, l, v))
	}
	b.last = l + lsn.LSN(8*r.IntN(2))
	mr.commit(mt, b)
}

// keyspace is the live key space of mt at an LSN, by the model.
func (mr *modelRun) keyspace(mt *modelTimeline) KeySpaceFunc {
	return func(_ context.Context, at lsn.LSN) ([]key.Range, error) {
		var rs []key.Range
		for _, k := range modelKeys {
			if _, ok := mt.m.lookup(k, at); ok {
				rs = append(rs, key.Range{Start: k, End: k.Next()})
			}
		}
		return rs, nil
	}
}

func (mr *modelRun) branch(parent *modelTimeline) {
	last, _ := parent.tl.LastRecordLSN()
	anc := parent.created + lsn.LSN(mr.r.Uint64N(uint64(last-parent.created)+1))
	child := &modelTimeline{n: byte(len(mr.tls) + 1), m: newModel(parent.m, anc), parent: parent, created: anc}
	mr.step("branch %d from %d at %s", child.n, parent.n, anc)
	tl, err := Create(tlDir(mr.base, child.n), mr.options(child))
	if err != nil {
		mr.t.Fatal(err)
	}
	child.tl = tl
	mr.tls = append(mr.tls, child)
}

// restart closes every timeline and opens it again. A crash does not
// flush: each timeline comes back at its disk_consistent_lsn, data up to
// it intact, and the commits above it are made again (WAL re-ingest).
func (mr *modelRun) restart(crash bool) {
	t := mr.t
	mr.step("restart crash=%v", crash)
	mr.restarts++
	if crash {
		mr.crashes++
	}
	if !crash {
		for _, mt := range mr.tls {
			mustFlush(t, mt.tl)
		}
	}
	for i := len(mr.tls) - 1; i >= 0; i-- {
		mr.tls[i].tl.Close()
	}
	for _, mt := range mr.tls {
		before, _ := mt.tl.LastRecordLSN()
		dcl := mt.tl.DiskConsistentLSN()
		tl, err := Open(tlDir(mr.base, mt.n), mr.options(mt))
		if err != nil {
			t.Fatal(err)
		}
		mt.tl = tl
		last, prev := tl.LastRecordLSN()
		if last != dcl || (!crash && last != before) {
			t.Fatalf("timeline %d reopened at %s; disk_consistent_lsn was %s, last %s", mt.n, last, dcl, before)
		}
		for i := len(mt.m.batches) - 1; i >= 0; i-- {
			if b := mt.m.batches[i]; b.last == dcl {
				if prev != b.prev {
					t.Fatalf("timeline %d reopened with prev %s, want %s", mt.n, prev, b.prev)
				}
				break
			}
		}
		importing := mt.parent == nil && tl.layers.Load().open.lsns.Start == tl.InitDBLSN()
		if importing {
			// The import never reached disk: nothing is there, and it is
			// accepted again.
			for _, k := range modelKeys {
				mustMiss(t, tl, k, dcl)
			}
		} else {
			mr.checkTimeline(mt, 30, dcl)
		}
		for _, b := range mt.m.batches {
			if b.last > dcl || importing && b.last == dcl {
				mr.step("  re-commit %d last %s", mt.n, b.last)
				if err := tl.Commit(b.entries, b.last, b.prev); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func (mr *modelRun) check(reads int, upTo lsn.LSN) {
	for _, mt := range mr.tls {
		mr.checkTimeline(mt, reads, upTo)
	}
}

// checkTimeline compares reads at random LSNs up to upTo (and the last
// record LSN + 16) with the model.
func (mr *modelRun) checkTimeline(mt *modelTimeline, reads int, upTo lsn.LSN) {
	t, r := mr.t, mr.r
	last, _ := mt.tl.LastRecordLSN()
	hi := min(last+16, upTo)
	lo := mt.tl.GCCutoff()
	for i := 0; i < reads; i++ {
		k := modelKeys[r.IntN(len(modelKeys))]
		l := lo + lsn.LSN(r.Uint64N(uint64(hi-lo)+1))
		mr.reads++
		want, ok := mt.m.lookup(k, l)
		got, err := read(mt.tl, k, l)
		switch {
		case !ok && !errors.Is(err, ErrMissingKey):
			t.Fatalf("timeline %d: read %s@%s = %q, %v; want missing", mt.n, k, l, got, err)
		case ok && (err != nil || string(got) != string(want)):
			t.Fatalf("timeline %d: read %s@%s = %q, %v; want %q", mt.n, k, l, got, err, want)
		}
	}
}
