package ingest

// RM_XLOG_ID records: the checkpoint fields PostgreSQL's redo keeps in
// memory, merged into the stored checkpoint.

import (
	"context"

	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
)

func (in *Ingester) xlog(ctx context.Context, info uint8, data []byte) error {
	switch info {
	case pgrecords.XLOG_NEXTOID:
		oid, err := pgrecords.ParseNextOid(data)
		if err != nil {
			return err
		}
		if in.checkpoint.NextOid != oid {
			in.checkpoint.NextOid = oid
			in.checkpointMod = true
		}
	case pgrecords.XLOG_CHECKPOINT_SHUTDOWN, pgrecords.XLOG_CHECKPOINT_ONLINE:
		rc, err := pgrecords.DecodeCheckPoint(data)
		if err != nil {
			return err
		}
		return in.mergeCheckpoint(ctx, info == pgrecords.XLOG_CHECKPOINT_SHUTDOWN, &rc)
	}
	// FPIs are block references only; SWITCH, NOOP, PARAMETER_CHANGE,
	// END_OF_RECOVERY, BACKUP_END, RESTORE_POINT, FPW_CHANGE and
	// OVERWRITE_CONTRECORD change no storage.
	return nil
}

// mergeCheckpoint folds a checkpoint record into the stored checkpoint.
//
// Neon's rules (PS §2.6): oldestXid only moves forward; oldestActiveXid is
// the record's, except that a shutdown checkpoint (which logs 0) gets the
// oldest of nextXid and the prepared xids; redo is the record's end LSN
// for a shutdown checkpoint and 0 for an online one, which is how
// basebackup knows it can start exactly at a clean shutdown.
//
// Added, as xlog_redo does: nextXid and nextMulti/nextMultiOffset move
// forward to the record's values, oldestMulti moves forward, and a
// shutdown checkpoint's nextOid (exact at shutdown) is taken. In valid WAL
// these never move backwards what the records before established.
func (in *Ingester) mergeCheckpoint(ctx context.Context, shutdown bool, rc *pgrecords.CheckPoint) error {
	cp := &in.checkpoint
	if shutdown || pgrecords.TransactionIDPrecedes(cp.OldestXid, rc.OldestXid) {
		cp.OldestXid, cp.OldestXidDB = rc.OldestXid, rc.OldestXidDB
	}
	if rc.NextXid > cp.NextXid {
		cp.NextXid = rc.NextXid
	}
	cp.AdvanceNextMulti(rc.NextMulti, rc.NextMultiOffset)
	if shutdown || int32(cp.OldestMulti-rc.OldestMulti) < 0 {
		cp.OldestMulti, cp.OldestMultiDB = rc.OldestMulti, rc.OldestMultiDB
	}
	if shutdown {
		cp.NextOid = rc.NextOid
	}

	if shutdown && rc.OldestActiveXid == pgrecords.InvalidTransactionID {
		oldest := uint32(cp.NextXid)
		xids, err := datadir.TwoPhaseXids(ctx, in.reader(), in.committed)
		if err != nil {
			return err
		}
		for _, xid := range xids {
			if int32(xid-oldest) < 0 {
				oldest = xid
			}
		}
		cp.OldestActiveXid = oldest
	} else {
		cp.OldestActiveXid = rc.OldestActiveXid
	}
	cp.Redo = 0
	if shutdown {
		cp.Redo = in.at
	}
	in.checkpointMod = true // rewritten at every checkpoint record
	return nil
}
