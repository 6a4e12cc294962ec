package ingest

// Storage, database and heap records: relation creation and truncation,
// CREATE/DROP DATABASE, and the visibility-map bits heap records clear.

import (
	"context"
	"errors"
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// Free-space map and visibility-map geometry for 8 KiB pages (PS §1.4).
const (
	fsmSlotsPerPage = 4069
	fsmTreeDepth    = 3
)

// fsmLogicalToPhysical is fsm_logical_to_physical for a bottom-level page.
func fsmLogicalToPhysical(logical uint32) uint32 {
	var pages uint32
	leaf := logical
	for range fsmTreeDepth {
		pages += leaf + 1
		leaf /= fsmSlotsPerPage
	}
	return pages - 1
}

func (in *Ingester) smgr(ctx context.Context, info uint8, data []byte) error {
	switch info {
	case pgrecords.XLOG_SMGR_CREATE:
		c, err := pgrecords.ParseSmgrCreate(data)
		if err != nil {
			return err
		}
		rel, err := checkRel(c.Rel.Spc, c.Rel.DB, c.Rel.Rel, uint8(c.Fork))
		if err != nil {
			return err
		}
		// smgrcreate(isRedo) accepts an existing fork; Neon fails there.
		if _, ok, err := in.relSize(ctx, rel); err != nil || ok {
			return err
		}
		return in.createRel(ctx, rel, 0)
	case pgrecords.XLOG_SMGR_TRUNCATE:
		t, err := pgrecords.ParseSmgrTruncate(data)
		if err != nil {
			return err
		}
		return in.smgrTruncate(ctx, &t)
	}
	return fmt.Errorf("unknown storage record 0x%02X", info)
}

// smgrTruncate follows smgr_redo (and Neon's ingest_xlog_smgr_truncate):
// the main fork is cut to Blkno; the FSM and VM to the pages that map the
// remaining heap, with the tail of the last remaining page cleared (a zero
// page for the FSM, a TruncateVisibilityMap record for the VM) when that
// page exists.
func (in *Ingester) smgrTruncate(ctx context.Context, t *pgrecords.SmgrTruncate) error {
	main, err := checkRel(t.Rel.Spc, t.Rel.DB, t.Rel.Rel, key.ForkMain)
	if err != nil {
		return err
	}
	if t.Flags&pgrecords.SMGR_TRUNCATE_HEAP != 0 {
		if err := in.truncateRel(ctx, main, t.Blkno); err != nil {
			return err
		}
	}
	if t.Flags&pgrecords.SMGR_TRUNCATE_FSM != 0 {
		fsm := main
		fsm.Fork = key.ForkFSM
		size, ok, err := in.relSize(ctx, fsm)
		if err != nil {
			return err
		}
		p := fsmLogicalToPhysical(t.Blkno / fsmSlotsPerPage)
		if ok && t.Blkno%fsmSlotsPerPage != 0 && p < size {
			if err := in.put(key.RelBlock(fsm, p), value.NewImage(in.zeroPage)); err != nil {
				return err
			}
			p++
		}
		if ok && size > p {
			if err := in.setRelSize(fsm, p); err != nil {
				return err
			}
		}
	}
	if t.Flags&pgrecords.SMGR_TRUNCATE_VM != 0 {
		vm := main
		vm.Fork = key.ForkVM
		size, ok, err := in.relSize(ctx, vm)
		if err != nil {
			return err
		}
		v, truncByte, truncOffs := pgpage.VMBits(t.Blkno)
		if ok && (truncByte != 0 || truncOffs != 0) && v < size {
			r := value.Record{Kind: value.TruncateVisibilityMap, TruncByte: uint64(truncByte), TruncOffs: uint64(truncOffs)}
			if err := in.put(key.RelBlock(vm, v), value.NewRecord(r)); err != nil {
				return err
			}
			v++
		}
		if ok && size > v {
			if err := in.setRelSize(vm, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (in *Ingester) dbase(ctx context.Context, info uint8, data []byte) error {
	switch info {
	case pgrecords.XLOG_DBASE_CREATE_FILE_COPY:
		c, err := pgrecords.ParseDbaseCreateFileCopy(data)
		if err != nil {
			return err
		}
		return in.copyDatabase(ctx, &c)
	case pgrecords.XLOG_DBASE_CREATE_WAL_LOG:
		// The directory only; the relation map, relations and pages
		// follow as RELMAP_UPDATE, SMGR_CREATE and XLOG_FPI records.
		c, err := pgrecords.ParseDbaseCreateWalLog(data)
		if err != nil {
			return err
		}
		return checkDB(c.Tablespace, c.DB)
	case pgrecords.XLOG_DBASE_DROP:
		d, err := pgrecords.ParseDbaseDrop(data)
		if err != nil {
			return err
		}
		for _, spc := range d.Tablespaces {
			if err := checkDB(spc, d.DB); err != nil {
				return err
			}
			if err := in.dropDB(ctx, spc, d.DB); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown database record 0x%02X", info)
}

// copyDatabase is CREATE DATABASE ... STRATEGY FILE_COPY: the source's
// relation map, relations and their current pages, as images. The batch
// before the record was committed (see needsCommittedPages), so the pages
// are read at the last committed LSN.
func (in *Ingester) copyDatabase(ctx context.Context, c *pgrecords.DbaseCreateFileCopy) error {
	if err := checkDB(c.SrcTablespace, c.SrcDB); err != nil {
		return fmt.Errorf("source database: %w", err)
	}
	if err := checkDB(c.Tablespace, c.DB); err != nil {
		return err
	}
	if in.pages == nil {
		return errors.New("CREATE DATABASE by file copy needs a PageReader")
	}
	r := in.reader()
	relmap, err := datadir.RelMap(ctx, r, c.SrcTablespace, c.SrcDB, in.committed)
	if err != nil {
		return fmt.Errorf("relation map of source database %d: %w", c.SrcDB, err)
	}
	rels, err := datadir.ListRels(ctx, r, c.SrcTablespace, c.SrcDB, in.committed)
	if err != nil {
		return err
	}
	if err := in.putRelMap(ctx, c.Tablespace, c.DB, relmap); err != nil {
		return err
	}
	for _, src := range rels {
		n, _, err := in.relSize(ctx, src)
		if err != nil {
			return err
		}
		dst := key.Rel{Spc: c.Tablespace, DB: c.DB, Rel: src.Rel, Fork: src.Fork}
		if err := in.createRel(ctx, dst, n); err != nil {
			return err
		}
		for blk := range n {
			page, err := in.pages.Page(ctx, key.RelBlock(src, blk), in.committed)
			if err != nil {
				return fmt.Errorf("copy block %d of %s: %w", blk, src, err)
			}
			if err := in.put(key.RelBlock(dst, blk), value.NewImage(page)); err != nil {
				return err
			}
		}
	}
	return nil
}

// clearVM writes the ClearVisibilityMapFlags records a heap record implies
// (PS §2.6 "VM-clear"): on the VM page of each heap page named, one record
// when both fall on the same VM page. VM pages past the VM's end (or a VM
// that does not exist) are skipped: PostgreSQL sets the flags even then,
// and a record there would have no page to apply to.
func (in *Ingester) clearVM(ctx context.Context, rec *walrecord.Record, c pgrecords.HeapVMClear) error {
	if !c.Any() {
		return nil
	}
	if len(rec.Blocks) == 0 {
		return errors.New("heap record clearing visibility map bits references no block")
	}
	b0, last := &rec.Blocks[0], &rec.Blocks[len(rec.Blocks)-1]
	var r value.Record
	r.Kind, r.Flags = value.ClearVisibilityMapFlags, c.Flags
	if c.NewBlock0 {
		r.HasNewHeapBlkno, r.NewHeapBlkno = true, b0.Blkno
	}
	switch {
	case c.OldLastBlock:
		r.HasOldHeapBlkno, r.OldHeapBlkno = true, last.Blkno
	case c.OldBlock0:
		r.HasOldHeapBlkno, r.OldHeapBlkno = true, b0.Blkno
	}
	vm, err := checkRel(b0.Rel.Spc, b0.Rel.DB, b0.Rel.Rel, key.ForkVM)
	if err != nil {
		return err
	}
	size, _, err := in.relSize(ctx, vm)
	if err != nil {
		return err
	}
	newVM, oldVM := r.NewHeapBlkno/pgpage.VMHeapBlocksPerPage, r.OldHeapBlkno/pgpage.VMHeapBlocksPerPage
	hasNew := r.HasNewHeapBlkno && newVM < size
	hasOld := r.HasOldHeapBlkno && oldVM < size
	if r.HasNewHeapBlkno && !hasNew {
		in.stats.VMClearsSkipped++
	}
	if r.HasOldHeapBlkno && !hasOld {
		in.stats.VMClearsSkipped++
	}
	switch {
	case hasNew && hasOld && newVM == oldVM:
		return in.putRelBlock(ctx, vm, newVM, value.NewRecord(r))
	default:
		if hasNew {
			one := r
			one.HasOldHeapBlkno, one.OldHeapBlkno = false, 0
			if err := in.putRelBlock(ctx, vm, newVM, value.NewRecord(one)); err != nil {
				return err
			}
		}
		if hasOld {
			one := r
			one.HasNewHeapBlkno, one.NewHeapBlkno = false, 0
			return in.putRelBlock(ctx, vm, oldVM, value.NewRecord(one))
		}
	}
	return nil
}
