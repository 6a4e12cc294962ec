package ingest

// Transaction records: CLOG status, relation drops, two-phase state,
// replication origins (PS §2.6, RM_XACT_ID rows).

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

func (in *Ingester) advanceXid(xid uint32) {
	if in.checkpoint.AdvanceNextXid(xid) {
		in.checkpointMod = true
	}
}

func (in *Ingester) xact(ctx context.Context, rec *walrecord.Record) error {
	switch op := rec.Header.Info & pgrecords.XLOG_XACT_OPMASK; op {
	case pgrecords.XLOG_XACT_COMMIT, pgrecords.XLOG_XACT_ABORT,
		pgrecords.XLOG_XACT_COMMIT_PREPARED, pgrecords.XLOG_XACT_ABORT_PREPARED:
		x, err := pgrecords.ParseXact(rec.Header.Info, rec.MainData)
		if err != nil {
			return err
		}
		return in.xactEnd(ctx, rec, &x)
	case pgrecords.XLOG_XACT_PREPARE:
		h, err := pgrecords.ParseTwoPhaseHeader(rec.MainData)
		if err != nil {
			return err
		}
		return in.putTwoPhase(ctx, h.Xid, rec.MainData)
	case pgrecords.XLOG_XACT_ASSIGNMENT, pgrecords.XLOG_XACT_INVALIDATIONS:
		return nil
	default:
		return fmt.Errorf("unknown transaction record 0x%02X", op)
	}
}

// xactEnd handles the four commit and abort records.
func (in *Ingester) xactEnd(ctx context.Context, rec *walrecord.Record, x *pgrecords.Xact) error {
	xid := x.Xid(rec.Header.XID)
	// As xact_redo_commit/abort: nextXid passes every xid of the record.
	in.advanceXid(xid)
	for _, sub := range x.Subxacts {
		in.advanceXid(sub)
	}

	// One CLOG record per page the xids fall on. Neon cuts the list into
	// runs of consecutive xids on one page, which could write two records
	// for one page at one LSN after a wrap-around; grouping by page (a
	// stable sort, keeping each page's xids in record order) cannot.
	page := func(xid uint32) uint32 { return xid / pgrecords.ClogXactsPerPage }
	xids := append([]uint32{xid}, x.Subxacts...)
	slices.SortStableFunc(xids, func(a, b uint32) int { return cmp.Compare(page(a), page(b)) })
	for len(xids) > 0 {
		n := 1
		for n < len(xids) && page(xids[n]) == page(xids[0]) {
			n++
		}
		r := value.Record{Kind: value.ClogSetAborted, Xids: xids[:n:n]}
		if x.IsCommit() {
			r.Kind, r.Timestamp = value.ClogSetCommitted, x.XactTime
		}
		if err := in.putSlruRecord(key.Clog, page(xids[0]), r); err != nil {
			return err
		}
		xids = xids[n:]
	}

	if len(x.Rels) > 0 {
		rels := make([]key.Rel, 0, 4*len(x.Rels))
		for _, n := range x.Rels {
			for fork := range uint8(pgrecords.MaxForkNum + 1) {
				rel, err := checkRel(n.Spc, n.DB, n.Rel, fork)
				if err != nil {
					return fmt.Errorf("dropped relation: %w", err)
				}
				rels = append(rels, rel)
			}
		}
		if err := in.dropRels(ctx, rels); err != nil {
			return err
		}
	}

	if rec.HasOrigin && rec.Origin != 0 && x.HasOrigin() {
		if err := in.setReplOrigin(rec.Origin, x.OriginLSN); err != nil {
			return err
		}
	}
	if x.IsPrepared() {
		return in.dropTwoPhase(ctx, xid)
	}
	return nil
}

func (in *Ingester) twoPhaseDir(ctx context.Context) (value.U32Set, error) {
	b, err := in.image(ctx, key.TwoPhaseDir())
	if err != nil {
		return nil, err
	}
	return value.DecodeU32Set(b)
}

// putTwoPhase stores a prepared transaction's state: the PREPARE record's
// main data, which is the state file without its CRC.
func (in *Ingester) putTwoPhase(ctx context.Context, xid uint32, state []byte) error {
	dir, err := in.twoPhaseDir(ctx)
	if err != nil {
		return err
	}
	if _, ok := dir[xid]; ok {
		return fmt.Errorf("two-phase state of xid %d already exists", xid)
	}
	dir[xid] = struct{}{}
	if err := in.put(key.TwoPhaseDir(), value.NewImage(dir.Encode())); err != nil {
		return err
	}
	return in.put(key.TwoPhaseFile(xid), value.NewImage(cloneBytes(state)))
}

// dropTwoPhase removes a prepared transaction from the directory, if there
// (RemoveTwoPhaseFile during redo does not insist either).
func (in *Ingester) dropTwoPhase(ctx context.Context, xid uint32) error {
	dir, err := in.twoPhaseDir(ctx)
	if err != nil {
		return err
	}
	if _, ok := dir[xid]; !ok {
		return nil
	}
	delete(dir, xid)
	return in.put(key.TwoPhaseDir(), value.NewImage(dir.Encode()))
}

// setReplOrigin stores an origin's remote LSN (u64 BE, Neon's encoding).
func (in *Ingester) setReplOrigin(id uint16, remote lsn.LSN) error {
	return in.put(key.ReplOrigin(id), value.NewImage(binary.BigEndian.AppendUint64(nil, uint64(remote))))
}

func (in *Ingester) replorigin(info uint8, data []byte) error {
	switch info {
	case pgrecords.XLOG_REPLORIGIN_SET:
		s, err := pgrecords.ParseReplOriginSet(data)
		if err != nil {
			return err
		}
		// Neon stores the value whether or not it moves backwards; so
		// does this (replorigin_advance keeps the larger one unless
		// forced, a difference only a decreasing non-forced SET shows).
		return in.setReplOrigin(s.NodeID, s.RemoteLSN)
	case pgrecords.XLOG_REPLORIGIN_DROP:
		id, err := pgrecords.ParseReplOriginDrop(data)
		if err != nil {
			return err
		}
		return in.setReplOrigin(id, lsn.Invalid)
	}
	return fmt.Errorf("unknown replication origin record 0x%02X", info)
}
