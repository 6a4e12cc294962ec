package key

import (
	"bytes"
	"slices"
	"testing"
)

func TestTextForm(t *testing.T) {
	// The example of PS §1.1.
	const s = "000000067F000032BE0000400000000070B6"
	k, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	want := Key{0, 0x067F, 0x32BE, 0x4000, 0, 0x70B6}
	if k != want {
		t.Fatalf("Parse(%s) = %+v, want %+v", s, k, want)
	}
	if k.String() != s {
		t.Fatalf("String() = %s, want %s", k.String(), s)
	}
	if Max.String() != "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF" || Min.String() != "000000000000000000000000000000000000" {
		t.Fatalf("Min/Max text forms: %s %s", Min, Max)
	}
	for _, bad := range []string{"", "00", s + "0", "G00000067F000032BE0000400000000070B6"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

// Compare agrees with the byte order of the binary form.
func TestOrderMatchesBytes(t *testing.T) {
	keys := []Key{
		Min, Max, DBDir(), RelDir(1663, 5), RelMap(1663, 5),
		RelBlock(Rel{1663, 5, 16384, ForkMain}, 0), RelBlock(Rel{1663, 5, 16384, ForkMain}, 1<<31),
		RelSize(Rel{1663, 5, 16384, ForkMain}), RelBlock(Rel{1663, 5, 16384, ForkVM}, 0),
		SlruDir(Clog), SlruBlock(MultiXactOffsets, 3, 31), SlruSegSize(Clog, 0),
		TwoPhaseDir(), TwoPhaseFile(1234), ControlFile(), Checkpoint(), ReplOrigin(7),
		{1, 2, 3, 4, 5, 0xFFFFFFFF}, {1, 2, 3, 4, 6, 0},
	}
	for _, a := range keys {
		for _, b := range keys {
			ab, bb := a.Bytes(), b.Bytes()
			if got, want := a.Compare(b), bytes.Compare(ab[:], bb[:]); got != want {
				t.Fatalf("Compare(%s, %s) = %d, bytes say %d", a, b, got, want)
			}
		}
		b := a.Bytes()
		if d, err := Decode(b[:]); err != nil || d != a {
			t.Fatalf("Decode(Bytes(%s)) = %s, %v", a, d, err)
		}
	}
	sorted := slices.SortedFunc(slices.Values(keys), Key.Compare)
	if sorted[0] != Min || sorted[len(sorted)-1] != Max {
		t.Fatalf("Min/Max not at the ends: %v", sorted)
	}
}

func TestNext(t *testing.T) {
	cases := []struct{ k, want Key }{
		{Key{0, 0, 0, 0, 0, 5}, Key{0, 0, 0, 0, 0, 6}},
		{Key{0, 0, 0, 0, 0, 0xFFFFFFFF}, Key{0, 0, 0, 0, 1, 0}},
		{Key{0, 0, 0, 0, 0xFF, 0xFFFFFFFF}, Key{0, 0, 0, 1, 0, 0}},
		{Key{0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFF, 0xFFFFFFFF}, Key{0, 1, 0, 0, 0, 0}},
		{Key{3, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFF, 0xFFFFFFFF}, Key{4, 0, 0, 0, 0, 0}},
		{Max, Min},
	}
	for _, c := range cases {
		if got := c.k.Next(); got != c.want {
			t.Errorf("Next(%s) = %s, want %s", c.k, got, c.want)
		}
	}
}

func TestPredicates(t *testing.T) {
	rel := Rel{1663, 5, 16384, ForkFSM}
	cases := []struct {
		k                                           Key
		relBlock, relSize, slruBlock, sparse, inher bool
	}{
		{RelBlock(rel, 7), true, false, false, false, true},
		{RelSize(rel), false, true, false, false, true},
		{RelDir(1663, 5), false, false, false, false, true},
		{DBDir(), false, false, false, false, true},
		{SlruBlock(Clog, 0, 3), false, false, true, false, true},
		{SlruSegSize(Clog, 0), false, false, false, false, true},
		{SlruDir(MultiXactMembers), false, false, false, false, true},
		{TwoPhaseFile(9), false, false, false, false, true},
		{Checkpoint(), false, false, false, false, true},
		{auxFilesV1(), false, false, false, false, false},
		{Key{0x62, 1, 1, 0, 0, 0}, false, false, false, true, false},
		{ReplOrigin(1), false, false, false, true, false},
		{Key{0x61, 0, 0, 0, 0, 0}, false, false, false, true, true},
		{Key{0x65, 0, 0, 0, 0, 1}, false, false, false, true, true},
	}
	for _, c := range cases {
		if c.k.IsRelBlock() != c.relBlock || c.k.IsRelSize() != c.relSize || c.k.IsSlruBlock() != c.slruBlock ||
			c.k.IsSparse() != c.sparse || c.k.IsInherited() != c.inher {
			t.Errorf("%s: relBlock %v relSize %v slruBlock %v sparse %v inherited %v; want %v %v %v %v %v", c.k,
				c.k.IsRelBlock(), c.k.IsRelSize(), c.k.IsSlruBlock(), c.k.IsSparse(), c.k.IsInherited(),
				c.relBlock, c.relSize, c.slruBlock, c.sparse, c.inher)
		}
		if c.k.IsData() != (c.relBlock || c.slruBlock) {
			t.Errorf("%s: IsData %v", c.k, c.k.IsData())
		}
	}
	if got := RelBlock(rel, 7).Rel(); got != rel {
		t.Errorf("Rel() = %v, want %v", got, rel)
	}
	if kind, seg := SlruBlock(MultiXactOffsets, 12, 3).Slru(); kind != MultiXactOffsets || seg != 12 {
		t.Errorf("Slru() = %v %d", kind, seg)
	}
}

func TestRanges(t *testing.T) {
	rel := Rel{1663, 5, 16384, ForkMain}
	r := RelRange(rel)
	for _, k := range []Key{RelBlock(rel, 0), RelBlock(rel, 0xFFFFFFFE), RelSize(rel)} {
		if !r.Contains(k) {
			t.Errorf("RelRange(%v) misses %s", rel, k)
		}
	}
	for _, k := range []Key{RelBlock(Rel{1663, 5, 16384, ForkFSM}, 0), RelDir(1663, 5)} {
		if r.Contains(k) {
			t.Errorf("RelRange(%v) holds %s", rel, k)
		}
	}
	db := DBRange(1663, 5)
	if !db.Contains(RelDir(1663, 5)) || !db.Contains(RelMap(1663, 5)) || !db.Contains(RelSize(rel)) || db.Contains(RelDir(1663, 6)) {
		t.Errorf("DBRange(1663, 5) = %s is wrong", db)
	}
	if !r.Overlaps(db) || r.Overlaps(Range{RelDir(1663, 6), Max}) || !(Range{Max, Max}).IsEmpty() {
		t.Error("Overlaps/IsEmpty wrong")
	}
	if (Key{0, 70000, 0, 0, 0, 0}).Representable() || !(Key{0, 65535, 0, 0, 0, 0}).Representable() {
		t.Error("Representable wrong")
	}
}
