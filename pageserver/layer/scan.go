package layer

import (
	"strata.dev/pageserver/value"
)

// Iterator reads a whole layer in (key, LSN) order, one block at a time.
//
//	it := l.Scan()
//	for it.Next() {
//		use(it.Entry())
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	f       *file
	block   int
	entries []rawEntry
	pos     int
	seen    uint64
	cur     value.Entry
	err     error
}

// Next moves to the next entry; it returns false at the end or on error.
func (it *Iterator) Next() bool {
	if it.err != nil {
		return false
	}
	for it.pos >= len(it.entries) {
		if it.block >= len(it.f.blocks) {
			if it.seen != it.f.hdr.entryCount {
				it.err = it.f.corrupt(108, "header counts %d entries, blocks hold %d", it.f.hdr.entryCount, it.seen)
			}
			return false
		}
		it.entries, it.err = it.f.readBlock(it.block)
		if it.err != nil {
			return false
		}
		it.block++
		it.pos = 0
	}
	e := &it.entries[it.pos]
	it.pos++
	it.seen++
	it.cur = value.Entry{Key: e.key, LSN: e.lsn}
	if it.f.hdr.name.Kind == KindImage {
		it.cur.Value = value.NewImage(e.val)
		return true
	}
	v, err := value.Decode(e.val)
	if err != nil {
		it.err = it.f.corrupt(e.offset, "value of %s@%s: %v", e.key, e.lsn, err)
		return false
	}
	it.cur.Value = v
	return true
}

// Entry is the current entry. Its bytes belong to the caller.
func (it *Iterator) Entry() value.Entry { return it.cur }

// Err is the error that stopped the iteration, if any.
func (it *Iterator) Err() error { return it.err }
