package timeline

import (
	"math/rand/v2"
	"slices"
	"testing"

	"strata.dev/pageserver/key"
)

// TestKeyIndex: slots found again by lookup, keys listed in key order
// whatever their kind, with relation blocks at span edges and the largest
// block number next to the relation's size key.
func TestKeyIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rels := []key.Rel{
		{Spc: 1663, DB: 5, Rel: 16384},
		{Spc: 1663, DB: 5, Rel: 16384, Fork: 1},
		{Spc: 1663, DB: 5, Rel: 2},
		{Spc: 1664, DB: 0, Rel: 1262},
		{Spc: 1663, DB: 4, Rel: 99999},
	}
	var all []key.Key
	for _, r := range rels {
		for _, b := range []uint32{0, 1, spanBlocks - 1, spanBlocks, 5 * spanBlocks, 0xFFFFFFFE} {
			all = append(all, key.RelBlock(r, b))
		}
		for range 200 {
			all = append(all, key.RelBlock(r, rng.Uint32N(100_000)))
		}
		all = append(all, key.RelSize(r))
	}
	all = append(all, key.DBDir(), key.RelMap(1663, 5), key.RelDir(1663, 5), key.Checkpoint(), key.ControlFile(),
		key.SlruBlock(key.Clog, 0, 3), key.SlruSegSize(key.Clog, 0), key.TwoPhaseFile(77))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	x := newKeyIndex()
	want := map[key.Key]int32{}
	for i, k := range all {
		// Later writes of a key overwrite its slot.
		v := int32(i + 1)
		*x.slot(k) = v
		want[k] = v
	}
	// A slot made but never set is not a key.
	x.slot(key.RelBlock(rels[0], 123_456))
	x.slot(key.TwoPhaseFile(78))
	for k, v := range want {
		if got := x.lookup(k); got != v {
			t.Fatalf("lookup(%s) = %d, want %d", k, got, v)
		}
	}
	for _, k := range []key.Key{key.RelBlock(rels[0], 123_456), key.RelBlock(rels[2], 7_000_000), key.TwoPhaseFile(78), key.TwoPhaseFile(79)} {
		if got := x.lookup(k); got != 0 {
			t.Fatalf("lookup(%s) of a key without a version = %d", k, got)
		}
	}
	wantKeys := slices.SortedFunc(func(yield func(key.Key) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}, key.Key.Compare)
	if got := x.sortedKeys(nil); !slices.Equal(got, wantKeys) {
		t.Fatalf("sortedKeys: %d keys, want %d in order:\n got %v\nwant %v", len(got), len(wantKeys), got, wantKeys)
	}
}
