package ingest

// What each resource manager's records mean for the metadata (PS §2.6).
// Block references are handled separately, for every record.

import (
	"context"
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
)

// needsCommittedPages reports records that read pages back from the
// Store, so the batch before them must be committed first.
func needsCommittedPages(rec *walrecord.Record) bool {
	return rec.Header.RmID == walrecord.RmDatabase && rec.RmInfo() == pgrecords.XLOG_DBASE_CREATE_FILE_COPY
}

func (in *Ingester) metadata(ctx context.Context, rec *walrecord.Record) error {
	info := rec.RmInfo()
	data := rec.MainData
	switch id := rec.Header.RmID; id {
	case walrecord.RmXLOG:
		return in.xlog(ctx, info, data)
	case walrecord.RmTransaction:
		return in.xact(ctx, rec)
	case walrecord.RmStorage:
		return in.smgr(ctx, info, data)
	case walrecord.RmCLOG:
		return in.clog(ctx, info, data)
	case walrecord.RmDatabase:
		return in.dbase(ctx, info, data)
	case walrecord.RmTablespace:
		return fmt.Errorf("tablespace record 0x%02X: user tablespaces are not supported", info)
	case walrecord.RmMultiXact:
		return in.multixact(ctx, info, data)
	case walrecord.RmRelMap:
		if info != pgrecords.XLOG_RELMAP_UPDATE {
			return fmt.Errorf("unknown relmap record 0x%02X", info)
		}
		u, err := pgrecords.ParseRelmapUpdate(data)
		if err != nil {
			return err
		}
		return in.putRelMap(ctx, u.Tablespace, u.DB, u.Data)
	case walrecord.RmStandby:
		if info == pgrecords.XLOG_RUNNING_XACTS {
			x, err := pgrecords.ParseRunningXacts(data)
			if err != nil {
				return err
			}
			in.checkpoint.OldestActiveXid = x.OldestRunningXid
			in.checkpointMod = true
		}
		return nil
	case walrecord.RmHeap:
		c, err := pgrecords.ParseHeapVMClear(rec.Header.Info, data)
		if err != nil {
			return err
		}
		return in.clearVM(ctx, rec, c)
	case walrecord.RmHeap2:
		c, err := pgrecords.ParseHeap2VMClear(rec.Header.Info, data)
		if err != nil {
			return err
		}
		return in.clearVM(ctx, rec, c)
	case walrecord.RmReplicationOrigin:
		return in.replorigin(info, data)
	case walrecord.RmLogicalMessage:
		// Only Neon's patched compute sends "neon-file:" messages (aux
		// files); for vanilla PostgreSQL a logical message changes no
		// storage. Parse it anyway so a corrupt one is noticed.
		_, err := pgrecords.ParseLogicalMessage(data)
		return err
	case walrecord.RmBtree, walrecord.RmHash, walrecord.RmGin, walrecord.RmGist, walrecord.RmSequence,
		walrecord.RmSPGist, walrecord.RmBRIN, walrecord.RmGeneric, walrecord.RmCommitTs:
		// Block references only (commit timestamps are not kept).
		return nil
	default:
		if id >= 128 { // custom resource managers: their blocks only
			return nil
		}
		return fmt.Errorf("unknown resource manager %d", id)
	}
}
