package ingest

import (
	"testing"

	"strata.dev/pageserver/key"
)

func TestRecordKeys(t *testing.T) {
	var r recordKeys
	k := func(blk uint32) key.Key { return key.RelBlock(key.Rel{Spc: 1663, DB: 5, Rel: 16384}, blk) }
	for round := range 2 {
		// Past linearKeys the keys move to a map; every one stays found.
		for i := range 3 * linearKeys {
			if _, ok := r.get(k(uint32(i))); ok {
				t.Fatalf("round %d: block %d found before it was added", round, i)
			}
			r.add(k(uint32(i)), 10*i)
			for j := 0; j <= i; j++ {
				if got, ok := r.get(k(uint32(j))); !ok || got != 10*j {
					t.Fatalf("round %d, %d keys: block %d = %d, %v; want %d", round, i+1, j, got, ok, 10*j)
				}
			}
		}
		r.reset()
		if _, ok := r.get(k(0)); ok || r.big != nil || len(r.list) != 0 {
			t.Fatalf("round %d: reset left keys behind", round)
		}
	}
}
