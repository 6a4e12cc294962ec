package walstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"strata.dev/libs/lsn"
)

// TestRandomized drives a store with random appends, flushes, truncations
// and restarts, the way a safekeeper sees them across elections, and checks
// after every step that
//   - WriteRecordLSN and FlushRecordLSN are the ends of the last records
//     lying whole below WriteLSN and FlushLSN;
//   - the files hold the model stream up to FlushLSN, the stream or zeros up
//     to WriteLSN, and zeros after it to the end of its segment;
//   - a restart from the commit point finds FlushRecordLSN again.
//
// Truncations never go below a "commit" point, as the protocol guarantees.
//
// It runs with the segment written around the page cache (O_DIRECT, where
// the test's file system allows it) and through it (where it does not).
func TestRandomized(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("buffered=%v/%d", buffered, seed), func(t *testing.T) { runRandomized(t, seed, 250, buffered) })
		}
	}
}

func runRandomized(t *testing.T, seed uint64, steps int, buffered bool) {
	r := rand.New(rand.NewPCG(seed, 77))
	dir := t.TempDir()
	opts := testOpts(dir)
	base := []lsn.LSN{segLSN(1), segLSN(1) + 0x40, segLSN(2) + 3*lsn.PageSize, segLSN(1) + 7*lsn.PageSize + 0x1F0}[seed%4]
	w := newWALStream(t, base)

	s := openStore(t, opts, 0)
	s.buffered = buffered
	// As at the first election: synthetic headers, then truncation at the start.
	if err := s.InitializeFirstSegment(base); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(base); err != nil {
		t.Fatal(err)
	}
	commit := base

	grow := func(to lsn.LSN) {
		for w.end() < to {
			switch k := r.IntN(100); {
			case k < 70:
				w.msg(r.IntN(600))
			case k < 90:
				w.msg(8*kib + r.IntN(32*kib))
			case k < 95:
				w.noop(26 + r.IntN(200))
			case k < 98:
				w.noop(int(testSegSize/2) + r.IntN(testSegSize)) // often longer than a segment
			default:
				w.switchSeg()
			}
		}
	}
	// cutPoint picks a record boundary in [commit, limit].
	cutPoint := func(limit lsn.LSN) lsn.LSN {
		ends := []lsn.LSN{commit}
		for _, rec := range w.recs {
			if rec.End > commit && rec.End <= limit {
				ends = append(ends, rec.End)
			}
		}
		return ends[r.IntN(len(ends))]
	}
	check := func(step int, what string, full bool) {
		t.Helper()
		got := lsnsOf(s)
		if want := w.lastEndWithin(got.write); got.writeRecord != want {
			t.Fatalf("step %d (%s): write record LSN %s, want %s (write LSN %s)", step, what, got.writeRecord, want, got.write)
		}
		if want := w.lastEndWithin(got.flush); got.flushRecord != want {
			t.Fatalf("step %d (%s): flush record LSN %s, want %s (flush LSN %s)", step, what, got.flushRecord, want, got.flush)
		}
		if got.flush > got.write || got.flushRecord < commit {
			t.Fatalf("step %d (%s): LSNs %+v, commit %s", step, what, got, commit)
		}
		from := base
		if !full {
			// The segment being written holds what this step changed;
			// truncations are checked in full.
			from = max(base, (got.flush - 1).SegmentStart(testSegSize))
		}
		checkDisk(t, dir, w, from, got.flush, got.write)
	}

	for step := range steps {
		var what string
		full := step%25 == 0
		switch k := r.IntN(100); {
		case k < 60:
			n := 1 + r.IntN([]int{16, 512, 8 * kib, 128 * kib}[r.IntN(4)])
			at := s.WriteLSN()
			grow(at + lsn.LSN(n))
			what = fmt.Sprintf("write %d bytes at %s", n, at)
			if err := s.Write(at, w.bytes(at, at+lsn.LSN(n))); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
		case k < 78:
			what = "flush"
			flush(t, s)
			if r.IntN(2) == 0 {
				commit = s.FlushRecordLSN()
			}
		case k < 90:
			cut := cutPoint(s.WriteRecordLSN())
			what = fmt.Sprintf("truncate at %s", cut)
			if err := s.Truncate(cut); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
			w.truncate(cut)
			full = true
		default:
			want := s.FlushRecordLSN()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, opts, commit)
			s.buffered = buffered
			if got := lsnsOf(s); got != (lsns{want, want, want, want}) {
				t.Fatalf("step %d: reopened from commit %s: LSNs %+v, want all %s", step, commit, got, want)
			}
			cut := cutPoint(want)
			what = fmt.Sprintf("reopen, truncate at %s", cut)
			if err := s.Truncate(cut); err != nil {
				t.Fatalf("step %d: %s: %v", step, what, err)
			}
			w.truncate(cut)
			full = true
		}
		check(step, what, full)
	}
}
