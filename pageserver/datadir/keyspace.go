package datadir

import (
	"context"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// Sparse ranges kept whole in the live key space: aux files and
// replication origins (first bytes 0x62 and 0x63, PS §1.2).
var sparseRange = key.Range{Start: key.Key{Field1: 0x62}, End: key.Key{Field1: 0x64}}

// KeySpace is the live key space at an LSN (PS §5.4): every key a read at
// that LSN can reach through the directories and sizes, as sorted,
// non-overlapping, non-adjacent ranges. Keys of dropped relations, blocks
// past a relation's end and removed SLRU segments are not in it, which is
// what lets image layers and garbage collection forget them.
func KeySpace(ctx context.Context, r Reader, at lsn.LSN) ([]key.Range, error) {
	var rs []key.Range
	one := func(k key.Key) { rs = append(rs, key.Range{Start: k, End: k.Next()}) }
	blocks := func(first, size key.Key, n uint32) {
		if n > 0 {
			rs = append(rs, key.Range{Start: first, End: withBlock(first, n)})
		}
		one(size)
	}

	one(key.DBDir())
	dbs, err := DBDir(ctx, r, at)
	if err != nil {
		return nil, err
	}
	for _, db := range sortedDBs(dbs) {
		if dbs[db] {
			one(key.RelMap(db.Spc, db.DB))
		}
		one(key.RelDir(db.Spc, db.DB))
		rels, err := listRels(ctx, r, db.Spc, db.DB, at)
		if err != nil {
			return nil, err
		}
		for _, rel := range rels {
			n, err := sizeKey(ctx, r, key.RelSize(rel), at)
			if err != nil {
				return nil, err
			}
			blocks(key.RelBlock(rel, 0), key.RelSize(rel), n)
		}
	}
	for _, kind := range key.SlruKinds {
		one(key.SlruDir(kind))
		segs, err := SlruSegments(ctx, r, kind, at)
		if err != nil {
			return nil, err
		}
		for _, seg := range segs {
			n, err := SlruSegmentSize(ctx, r, kind, seg, at)
			if err != nil {
				return nil, err
			}
			blocks(key.SlruBlock(kind, seg, 0), key.SlruSegSize(kind, seg), n)
		}
	}
	one(key.TwoPhaseDir())
	xids, err := TwoPhaseXids(ctx, r, at)
	if err != nil {
		return nil, err
	}
	for _, xid := range xids {
		one(key.TwoPhaseFile(xid))
	}
	one(key.ControlFile())
	one(key.Checkpoint())
	rs = append(rs, sparseRange)
	return Merge(rs), nil
}

// withBlock is k with its block field set to blk.
func withBlock(k key.Key, blk uint32) key.Key {
	k.Field6 = blk
	return k
}

// Merge sorts ranges and joins the overlapping and adjacent ones; empty
// ranges are dropped.
func Merge(rs []key.Range) []key.Range {
	rs = slices.DeleteFunc(slices.Clone(rs), key.Range.IsEmpty)
	slices.SortFunc(rs, func(a, b key.Range) int { return a.Start.Compare(b.Start) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && !out[n-1].End.Less(r.Start) {
			if out[n-1].End.Less(r.End) {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
