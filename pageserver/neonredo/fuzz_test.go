package neonredo

import (
	"testing"

	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// FuzzApply: any record on any key and page gives a page or an error,
// never a panic.
func FuzzApply(f *testing.F) {
	add := func(k key.Key, n int, r value.Record) { f.Add(k.Append(nil), n, value.NewRecord(r).Encode()) }
	add(vmKey(0), BlockSize, value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 5, Flags: 3})
	add(vmKey(0), BlockSize, value.Record{Kind: value.TruncateVisibilityMap, TruncByte: 8167, TruncOffs: 7})
	add(key.SlruBlock(key.Clog, 0, 0), ClogPageWithTimestamp, value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{3}})
	add(key.SlruBlock(key.MultiXactOffsets, 0, 0), BlockSize, value.Record{Kind: value.MultixactOffsetCreate, Mid: 2047})
	add(key.SlruBlock(key.MultiXactMembers, 0, 0), BlockSize, value.Record{Kind: value.MultixactMembersCreate, Moff: 1630,
		Members: []value.MultiXactMember{{Xid: 1, Status: 2}, {Xid: 3, Status: 4}}})
	f.Fuzz(func(t *testing.T, kb []byte, n int, enc []byte) {
		k, err := key.Decode(kb)
		if err != nil {
			return
		}
		v, err := value.Decode(enc)
		if err != nil || v.IsImage {
			return
		}
		var page []byte
		if n >= 0 && n <= 2*BlockSize {
			page = make([]byte, n)
		}
		Apply(k, page, value.Versioned{Record: v.Record})
	})
}
