package timeline

import (
	"slices"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// TestMemLayerVersionOrder: versions out of LSN order land in order, and
// a second version at one LSN replaces the first.
func TestMemLayerVersionOrder(t *testing.T) {
	m := newMemLayer(newChunkPool(1 << 20))
	k := blk(1, 7)
	for _, v := range []struct {
		at   lsn.LSN
		body string
	}{{10, "a"}, {30, "c"}, {20, "b"}, {20, "B"}, {5, "0"}, {40, "d"}} {
		m.put(value.Entry{Key: k, LSN: v.at, Value: value.NewImage([]byte(v.body))})
	}
	var got []string
	for _, v := range m.versions(nil, k) {
		val, err := value.Decode(m.bytes(v))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v.lsn.String()+"="+string(val.Image))
	}
	want := []string{"0/5=0", "0/A=a", "0/14=B", "0/1E=c", "0/28=d"}
	if len(got) != len(want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("versions %v, want %v", got, want)
		}
	}
	if _, entries := m.info(); entries != 5 {
		t.Errorf("%d entries, want 5", entries)
	}
	// Images end the newest-first walk: only the newest below End.
	var seen []lsn.LSN
	if err := m.get(k, layer.LSNRange{Start: 0, End: 31}, func(l lsn.LSN, _ value.Value) bool { seen = append(seen, l); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != 30 {
		t.Errorf("get below 31 visited %v, want [0/1E]", seen)
	}
	m.release()
	if err := m.get(k, layer.LSNRange{Start: 0, End: 100}, func(lsn.LSN, value.Value) bool { return true }); err != errReleased {
		t.Errorf("get after release: %v, want errReleased", err)
	}
}

// TestChunkPoolReady: with no free chunk, the pool hands out fresh chunks
// and keeps readyAhead touched ones waiting, then stops; released chunks
// are handed out first.
func TestChunkPoolReady(t *testing.T) {
	p := newChunkPool(8 << 20)
	settled := func() int {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			p.mu.Lock()
			n, filling := len(p.ready), p.filling
			p.mu.Unlock()
			if !filling {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatal("the filler never stopped")
			}
			time.Sleep(time.Millisecond)
		}
	}
	var got [][]byte
	for range 3 {
		c := p.get(100)
		if len(c) != 0 || cap(c) != arenaChunk {
			t.Fatalf("chunk of len %d cap %d", len(c), cap(c))
		}
		got = append(got, c)
	}
	if n := settled(); n != readyAhead {
		t.Fatalf("%d chunks ready, want %d", n, readyAhead)
	}
	c := p.get(100)
	if n := settled(); n != readyAhead {
		t.Fatalf("%d chunks ready after one was taken, want %d again", n, readyAhead)
	}
	released := append(got, c)
	p.put(released)
	first := &p.get(100)[:1][0]
	if !slices.ContainsFunc(released, func(r []byte) bool { return &r[:1][0] == first }) {
		t.Fatal("a fresh chunk handed out while released ones were free")
	}
	if n := settled(); n != readyAhead {
		t.Fatalf("%d chunks ready with free ones in the pool, want %d untouched", n, readyAhead)
	}
	// A value bigger than a chunk gets its own allocation.
	if c := p.get(arenaChunk + 1); cap(c) < arenaChunk+1 {
		t.Fatalf("big chunk of cap %d", cap(c))
	}
}
