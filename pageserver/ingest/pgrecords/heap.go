package pgrecords

// RM_HEAP_ID record types (access/heapam_xlog.h): xl_info & XLOG_HEAP_OPMASK.
const (
	XLOG_HEAP_INSERT     = 0x00
	XLOG_HEAP_DELETE     = 0x10
	XLOG_HEAP_UPDATE     = 0x20
	XLOG_HEAP_TRUNCATE   = 0x30
	XLOG_HEAP_HOT_UPDATE = 0x40
	XLOG_HEAP_CONFIRM    = 0x50
	XLOG_HEAP_LOCK       = 0x60
	XLOG_HEAP_INPLACE    = 0x70

	XLOG_HEAP_OPMASK = 0x70
	// XLOG_HEAP_INIT_PAGE: the record initialises the page (and, for
	// MULTI_INSERT, leaves out the offsets array).
	XLOG_HEAP_INIT_PAGE = 0x80
)

// RM_HEAP2_ID record types.
const (
	XLOG_HEAP2_REWRITE      = 0x00
	XLOG_HEAP2_PRUNE        = 0x10
	XLOG_HEAP2_VACUUM       = 0x20
	XLOG_HEAP2_FREEZE_PAGE  = 0x30
	XLOG_HEAP2_VISIBLE      = 0x40
	XLOG_HEAP2_MULTI_INSERT = 0x50
	XLOG_HEAP2_LOCK_UPDATED = 0x60
	XLOG_HEAP2_NEW_CID      = 0x70
)

// Flags of the heap records that say visibility-map bits were cleared.
const (
	XLH_INSERT_ALL_VISIBLE_CLEARED     = 1 << 0
	XLH_DELETE_ALL_VISIBLE_CLEARED     = 1 << 0
	XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED = 1 << 0
	XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED = 1 << 1
	XLH_LOCK_ALL_FROZEN_CLEARED        = 1 << 0
)

// Visibility-map bits (access/visibilitymapdefs.h).
const (
	VISIBILITYMAP_ALL_VISIBLE = 0x01
	VISIBILITYMAP_ALL_FROZEN  = 0x02
	VISIBILITYMAP_VALID_BITS  = VISIBILITYMAP_ALL_VISIBLE | VISIBILITYMAP_ALL_FROZEN
)

// HeapVMClear says which heap pages of a heap record had their
// visibility-map bits cleared by the operation, and which bits. Redo of
// the record clears them in the VM fork, which the record does not
// reference as a block, so the pageserver must do it itself (PS §2.6).
type HeapVMClear struct {
	// NewBlock0: the page of block reference 0 (INSERT, DELETE,
	// MULTI_INSERT, and the new page of UPDATE).
	NewBlock0 bool
	// OldLastBlock: the page of the last block reference (the old page of
	// UPDATE and HOT_UPDATE).
	OldLastBlock bool
	// OldBlock0: the page of block reference 0, as the "old" page (LOCK,
	// LOCK_UPDATED, which clear only ALL_FROZEN).
	OldBlock0 bool
	Flags     uint8
}

// Any reports whether any bit is to be cleared.
func (c HeapVMClear) Any() bool { return c.NewBlock0 || c.OldLastBlock || c.OldBlock0 }

// Sizes of the vanilla PostgreSQL 15 heap structs (no t_cid, unlike Neon's
// fork): the flags byte is at offset 2 (insert), 7 (delete, update, lock,
// lock_updated) or 0 (multi_insert).
const (
	SizeOfHeapInsert      = 3  // offnum u16, flags u8
	SizeOfHeapDelete      = 8  // xmax u32, offnum u16, infobits_set u8, flags u8
	SizeOfHeapUpdate      = 14 // old_xmax u32, old_offnum u16, old_infobits_set u8, flags u8, new_xmax u32, new_offnum u16
	SizeOfHeapLock        = 8  // xmax u32, offnum u16, infobits_set u8, flags u8
	SizeOfHeapLockUpdated = 8  // the same fields
	SizeOfHeapMultiInsert = 4  // flags u8, pad, ntuples u16, then offsets[]
)

// ParseHeapVMClear reads the flags of an RM_HEAP_ID record (info is
// xl_info). Record types that never clear VM bits give a zero HeapVMClear.
func ParseHeapVMClear(info uint8, data []byte) (HeapVMClear, error) {
	var c HeapVMClear
	switch info & XLOG_HEAP_OPMASK {
	case XLOG_HEAP_INSERT:
		flags, err := flagsAt("XLOG_HEAP_INSERT", data, SizeOfHeapInsert, 2)
		c.NewBlock0 = flags&XLH_INSERT_ALL_VISIBLE_CLEARED != 0
		c.Flags = VISIBILITYMAP_VALID_BITS
		return c, err
	case XLOG_HEAP_DELETE:
		flags, err := flagsAt("XLOG_HEAP_DELETE", data, SizeOfHeapDelete, 7)
		c.NewBlock0 = flags&XLH_DELETE_ALL_VISIBLE_CLEARED != 0
		c.Flags = VISIBILITYMAP_VALID_BITS
		return c, err
	case XLOG_HEAP_UPDATE, XLOG_HEAP_HOT_UPDATE:
		flags, err := flagsAt("XLOG_HEAP_UPDATE", data, SizeOfHeapUpdate, 7)
		c.OldLastBlock = flags&XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED != 0
		c.NewBlock0 = flags&XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED != 0
		c.Flags = VISIBILITYMAP_VALID_BITS
		return c, err
	case XLOG_HEAP_LOCK:
		flags, err := flagsAt("XLOG_HEAP_LOCK", data, SizeOfHeapLock, 7)
		c.OldBlock0 = flags&XLH_LOCK_ALL_FROZEN_CLEARED != 0
		c.Flags = VISIBILITYMAP_ALL_FROZEN
		return c, err
	}
	return c, nil
}

// ParseHeap2VMClear is ParseHeapVMClear for RM_HEAP2_ID records.
func ParseHeap2VMClear(info uint8, data []byte) (HeapVMClear, error) {
	var c HeapVMClear
	switch info & XLOG_HEAP_OPMASK {
	case XLOG_HEAP2_MULTI_INSERT:
		r := newReader("XLOG_HEAP2_MULTI_INSERT", data)
		r.atLeast(SizeOfHeapMultiInsert)
		flags := r.u8("flags")
		r.u8("padding")
		ntuples := r.u16("ntuples")
		if info&XLOG_HEAP_INIT_PAGE == 0 {
			r.take(int(ntuples)*2, "offsets")
		}
		c.NewBlock0 = flags&XLH_INSERT_ALL_VISIBLE_CLEARED != 0
		c.Flags = VISIBILITYMAP_VALID_BITS
		return result(r, c)
	case XLOG_HEAP2_LOCK_UPDATED:
		flags, err := flagsAt("XLOG_HEAP2_LOCK_UPDATED", data, SizeOfHeapLockUpdated, 7)
		c.OldBlock0 = flags&XLH_LOCK_ALL_FROZEN_CLEARED != 0
		c.Flags = VISIBILITYMAP_ALL_FROZEN
		return c, err
	}
	return c, nil
}

// flagsAt reads the flags byte at off of a struct of size bytes.
func flagsAt(what string, data []byte, size, off int) (uint8, error) {
	r := newReader(what, data)
	r.atLeast(size)
	r.seek(off, "flags")
	flags := r.u8("flags")
	return result(r, flags)
}
