package datadir

import (
	"slices"
	"testing"

	"strata.dev/pageserver/key"
)

func TestMerge(t *testing.T) {
	k := func(blk uint32) key.Key { return key.RelBlock(key.Rel{Spc: 1663, DB: 5, Rel: 1}, blk) }
	r := func(a, b uint32) key.Range { return key.Range{Start: k(a), End: k(b)} }
	for _, tc := range []struct {
		in, want []key.Range
	}{
		{nil, nil},
		{[]key.Range{r(5, 5)}, nil}, // empty dropped
		{[]key.Range{r(4, 6), r(0, 2)}, []key.Range{r(0, 2), r(4, 6)}}, // sorted
		{[]key.Range{r(0, 2), r(2, 4)}, []key.Range{r(0, 4)}},          // adjacent joined
		{[]key.Range{r(0, 5), r(1, 3)}, []key.Range{r(0, 5)}},          // contained
		{[]key.Range{r(3, 9), r(0, 4), r(8, 10)}, []key.Range{r(0, 10)}},
	} {
		if got := Merge(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Merge(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
