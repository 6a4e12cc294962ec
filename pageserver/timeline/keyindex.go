package timeline

import (
	"maps"
	"slices"

	"strata.dev/pageserver/key"
)

// keyIndex maps each key of an in-memory layer to a slot holding its newest
// version: an index into the layer's versionLog, plus one (0: none yet).
//
// Nearly every key is a relation block, and one map over all of them (a
// 256 MiB layer of pgbench WAL has ~100k) missed the cache on each lookup:
// the largest cost of putting a version. Relation blocks are found instead
// through their relation (the last one used is remembered: records come in
// runs on one relation) and a span of spanBlocks neighbouring blocks, a small
// map and an array; sorted keys then come out of the structure in order.
// Every other key (sizes, SLRU pages, metadata) is in a plain map.
//
// slot is for the writer only (it updates the memory of the last relation);
// lookup and sortedKeys may run concurrently with each other.
type keyIndex struct {
	rels map[key.Rel]relSpans
	// lastRel and last are the relation the last slot call found.
	lastRel key.Rel
	last    relSpans

	other      map[key.Key]int32 // index in otherSlots
	otherSlots []int32
}

// spanBlocks is how many neighbouring blocks share a span: 256 bytes, so a
// relation written sparsely (random pages of a large table) costs little
// more than a map entry per page.
const spanBlocks = 64

type span [spanBlocks]int32

// relSpans holds a relation's spans by block / spanBlocks.
type relSpans map[uint32]*span

func newKeyIndex() keyIndex {
	return keyIndex{rels: make(map[key.Rel]relSpans), other: make(map[key.Key]int32)}
}

// slot returns k's slot, made if new (then 0). The pointer is valid until
// the next call.
func (x *keyIndex) slot(k key.Key) *int32 {
	if !k.IsRelBlock() {
		i, ok := x.other[k]
		if !ok {
			i = int32(len(x.otherSlots))
			x.otherSlots = append(x.otherSlots, 0)
			x.other[k] = i
		}
		return &x.otherSlots[i]
	}
	r, blk := k.Rel(), k.Block()
	if x.last == nil || r != x.lastRel {
		spans, ok := x.rels[r]
		if !ok {
			spans = make(relSpans)
			x.rels[r] = spans
		}
		x.lastRel, x.last = r, spans
	}
	s := x.last[blk/spanBlocks]
	if s == nil {
		s = new(span)
		x.last[blk/spanBlocks] = s
	}
	return &s[blk%spanBlocks]
}

// lookup returns k's slot's content (0: no version).
func (x *keyIndex) lookup(k key.Key) int32 {
	if !k.IsRelBlock() {
		if i, ok := x.other[k]; ok {
			return x.otherSlots[i]
		}
		return 0
	}
	if s := x.rels[k.Rel()][k.Block()/spanBlocks]; s != nil {
		return s[k.Block()%spanBlocks]
	}
	return 0
}

// sortedKeys appends the keys with a version to dst, in key order.
func (x *keyIndex) sortedKeys(dst []key.Key) []key.Key {
	others := make([]key.Key, 0, len(x.other))
	for k, i := range x.other {
		if x.otherSlots[i] != 0 {
			others = append(others, k)
		}
	}
	slices.SortFunc(others, key.Key.Compare)
	rels := slices.SortedFunc(maps.Keys(x.rels), func(a, b key.Rel) int {
		return key.RelBlock(a, 0).Compare(key.RelBlock(b, 0))
	})
	o := 0
	for _, r := range rels {
		spans := x.rels[r]
		for _, id := range slices.Sorted(maps.Keys(spans)) {
			for j, v := range spans[id] {
				if v == 0 {
					continue
				}
				k := key.RelBlock(r, id*spanBlocks+uint32(j))
				for o < len(others) && others[o].Less(k) {
					dst = append(dst, others[o])
					o++
				}
				dst = append(dst, k)
			}
		}
	}
	return append(dst, others[o:]...)
}
