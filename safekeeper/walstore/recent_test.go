package walstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

// TestRecent: the ring holds the last size bytes appended while a reader
// looks, wrapping around, starts over at a gap, forgets what a truncation
// cuts, answers only for what it holds, and takes no memory before a
// reader looks or once none did for recentIdle.
func TestRecent(t *testing.T) {
	const size = 1000
	r := newRecent(size)
	rng := rand.New(rand.NewPCG(5, 6))
	base := lsn.LSN(0x1234567)
	stream := make([]byte, 0, 100_000)
	// No reader has looked: a write is not copied.
	r.append(base-100, make([]byte, 100))
	if r.buf != nil || r.end != 0 {
		t.Fatal("the ring took WAL before any reader looked")
	}
	r.readAt(nil, base) // a reader looks: the ring fills from now on
	at := func(l lsn.LSN) byte { return stream[l-base] }
	check := func(what string, start, end lsn.LSN) {
		t.Helper()
		if r.start != start || r.end != end {
			t.Fatalf("%s: ring holds [%s, %s), want [%s, %s)", what, r.start, r.end, start, end)
		}
		for range 20 {
			pos := start + lsn.LSN(rng.IntN(max(1, int(end-start))))
			p := make([]byte, 1+rng.IntN(size+10))
			n := r.readAt(p, pos)
			if want := min(len(p), int(end-pos)); end > start && n != want {
				t.Fatalf("%s: readAt(%s, %d bytes) = %d, want %d", what, pos, len(p), n, want)
			}
			for i := range n {
				if p[i] != at(pos+lsn.LSN(i)) {
					t.Fatalf("%s: byte at %s differs", what, pos+lsn.LSN(i))
				}
			}
		}
		for _, pos := range []lsn.LSN{start - 1, end, end + 5} {
			if pos >= base && r.readAt(make([]byte, 10), pos) != 0 {
				t.Fatalf("%s: readAt(%s) outside [%s, %s) returned bytes", what, pos, start, end)
			}
		}
	}
	add := func(n int) (lsn.LSN, []byte) {
		from := base + lsn.LSN(len(stream))
		for range n {
			stream = append(stream, byte(rng.Uint32()))
		}
		return from, stream[from-base:]
	}
	var first lsn.LSN
	for i := range 200 {
		n := 1 + rng.IntN(400)
		if i == 100 {
			n = 2*size + 7 // more than the ring: its last size bytes stay
		}
		from, p := add(n)
		if i == 0 {
			first = from
		}
		r.append(from, p)
		end := from + lsn.LSN(n)
		check("append", max(first, end-size), end)
	}
	// A truncation cuts the end; the stream goes on from there.
	end := base + lsn.LSN(len(stream))
	cut := end - 300
	r.truncate(cut)
	check("truncated", end-size, cut)
	stream = stream[:cut-base]
	from, p := add(50)
	r.append(from, p)
	check("append after a truncation", end-size, cut+50)
	// A truncation below everything held empties it.
	r.truncate(base)
	if r.readAt(make([]byte, 10), cut) != 0 {
		t.Fatal("the ring answers after a truncation below all it held")
	}
	// A write that does not continue the ring starts it over.
	stream = stream[:0]
	base += 1 << 20
	from, p = add(100)
	r.append(from, p)
	check("after a gap", from, from+100)
	// Memory no reader looked at for recentIdle is given back, and no
	// more WAL is copied; once a reader looks again, writes start over.
	if r.ReleaseIdle(time.Now()) {
		t.Fatal("released a ring a reader just looked at")
	}
	later := time.Now().Add(recentIdle + time.Second)
	if !r.ReleaseIdle(later) || r.buf != nil {
		t.Fatal("a ring no reader looked at kept its memory")
	}
	r.looked.Store(time.Now().Add(-2 * recentIdle).UnixNano()) // as if that time had passed
	from, p = add(30)
	r.append(from, p)
	if r.buf != nil {
		t.Fatal("an idle ring took WAL")
	}
	if r.readAt(make([]byte, 10), from) != 0 {
		t.Fatal("a released ring still answers")
	}
	from, p = add(30)
	r.append(from, p)
	check("after a release, a reader looking again", from, from+30)
	// LSNs below the ring's size (no wrap-around of end-size).
	low := newRecent(size)
	low.readAt(nil, 0x28)
	low.append(0x28, stream[:100])
	if low.start != 0x28 || low.end != 0x28+100 || low.readAt(make([]byte, 10), 0x30) != 10 {
		t.Fatalf("a ring at LSN 0x28 holds [%s, %s)", low.start, low.end)
	}
	if newRecent(0) != nil {
		t.Fatal("a ring of size 0 is not nil")
	}
	var off *Recent // off: every call is a no-op
	off.append(base, p)
	off.truncate(base)
	off.ReleaseIdle(time.Now())
	if off.readAt(p, base) != 0 {
		t.Fatal("a nil ring returned bytes")
	}
}

// TestReaderRecent: a reader with the store's Recent serves the latest WAL
// from memory without opening a segment, falls back to the files before
// it, and after a truncation never returns the WAL that was cut.
func TestReaderRecent(t *testing.T) {
	s, w, r, o := recentStore(t, 64*kib, 7, segLSN(3)+300*kib)
	base := w.base
	s.Recent().readAt(nil, base) // a WAL sender follows the timeline
	writeRange(t, s, w, base, segLSN(3)+200*kib, randomChunks(r, 16*kib))
	flush(t, s)

	// The last 64 KiB: from memory, no segment opened.
	end := s.WriteLSN()
	rd := newReader(t, o, end-60*kib)
	if got := readTo(t, rd, r, end); !bytes.Equal(got, w.bytes(end-60*kib, end)) {
		t.Fatal("bytes read from memory differ from the stream")
	}
	if rd.file != nil {
		t.Fatal("the reader opened a segment for WAL the store holds in memory")
	}
	// Older WAL comes from the files, and reading on reaches memory.
	rd = newReader(t, o, end-500*kib)
	if got := readTo(t, rd, r, end); !bytes.Equal(got, w.bytes(end-500*kib, end)) {
		t.Fatal("bytes read across files and memory differ from the stream")
	}
	// Reading ahead from the files stops where memory begins.
	held, ok := s.Recent().heldFrom()
	if !ok || held > end-60*kib {
		t.Fatalf("memory holds from %s (%v), want the last 64 KiB", held, ok)
	}
	rd = newReader(t, o, end-300*kib)
	rd.blockSize = 16 * kib
	rd.SetEnd(end)
	p := make([]byte, 4*kib)
	for rd.Pos() < end {
		if _, err := rd.Read(p[:min(len(p), int(end-rd.Pos()))]); err != nil {
			t.Fatal(err)
		}
		if rd.ahead != nil && rd.ahead.valid > held {
			t.Fatalf("at %s a read-ahead from the files reaches %s, into the WAL memory holds from %s", rd.Pos(), rd.ahead.valid, held)
		}
	}

	// A truncation inside what memory holds, then different WAL.
	cut := w.lastEndWithin(end - 20*kib)
	if cut < end-64*kib {
		t.Fatalf("no record ends in the last 64 KiB (last before %s at %s)", end-20*kib, cut)
	}
	truncate(t, s, w, cut)
	if n := s.Recent().readAt(make([]byte, 100), cut); n != 0 {
		t.Fatalf("memory still holds %d bytes of the WAL cut at %s", n, cut)
	}
	w.fill(r, cut+100*kib)
	writeRange(t, s, w, cut, w.end(), randomChunks(r, 16*kib))
	flush(t, s)
	from := cut - 10*kib
	rd = newReader(t, o, from)
	if got := readTo(t, rd, r, w.end()); !bytes.Equal(got, w.bytes(from, w.end())) {
		t.Fatalf("after a truncation at %s the reader returned other bytes than the new WAL (first difference at +%d)", cut, firstDiff(got, w.bytes(from, w.end())))
	}
}

// TestReaderRecentConcurrent: readers following the flush LSN while the
// store writes (run with -race) get exactly the stream's bytes.
func TestReaderRecentConcurrent(t *testing.T) {
	s, w, r, o := recentStore(t, 32*kib, 9, segLSN(3))
	base := w.base
	var flushed atomic.Uint64
	done := make(chan error, 2)
	for i := range 2 {
		go func() {
			rd, err := NewReader(o, base)
			if err != nil {
				done <- err
				return
			}
			defer rd.Close()
			p := make([]byte, 100+i*8*kib)
			for rd.Pos() < w.end() {
				end := lsn.LSN(flushed.Load())
				if rd.Pos() >= end {
					runtime.Gosched()
					continue
				}
				pos := rd.Pos()
				n, err := rd.Read(p[:min(len(p), int(end-pos))])
				if err != nil {
					done <- err
					return
				}
				if !bytes.Equal(p[:n], w.data[pos-base:pos-base+lsn.LSN(n)]) {
					done <- fmt.Errorf("reader %d: bytes at %s differ from the stream", i, pos)
					return
				}
			}
			done <- nil
		}()
	}
	chunk := randomChunks(r, 4*kib)
	for p := base; p < w.end(); {
		n := min(w.end().Sub(p), uint64(chunk()))
		if err := s.Write(p, w.data[p-base:p-base+lsn.LSN(n)]); err != nil {
			t.Fatal(err)
		}
		p += lsn.LSN(n)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		flushed.Store(uint64(s.FlushLSN()))
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// recentStore is a new store keeping size bytes in memory, ready for WAL at
// segLSN(1)+0x100, with a stream of random records up to fillTo and the
// options of a reader that uses the memory.
func recentStore(t *testing.T, size int, seed uint64, fillTo lsn.LSN) (*Store, *walStream, *rand.Rand, ReaderOptions) {
	t.Helper()
	dir := t.TempDir()
	opts := testOpts(dir)
	opts.RecentSize = size
	base := segLSN(1) + 0x100
	r := rand.New(rand.NewPCG(seed, seed+1))
	s, w := storeWithStream(t, opts, base, r, fillTo)
	o := readerOpts(dir, base, base)
	o.Recent = s.Recent()
	return s, w, r, o
}
