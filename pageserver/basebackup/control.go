// The checkpoint a basebackup's pg_control points at (PS §7.5.3, §7.6
// step 4; pgcontrol.Control.ShutdownAt rewrites the stored file around it).
package basebackup

import (
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/ingest/pgrecords"
)

type checkpoint = pgrecords.CheckPoint

// shutdownCheckpoint is the stored checkpoint as a shutdown checkpoint
// record at p would carry it (PS §7.5.2): redo is the record itself, and
// oldestActiveXid is 0, as PostgreSQL writes at shutdown.
func shutdownCheckpoint(cp checkpoint, p lsn.LSN, now time.Time) checkpoint {
	cp.Redo = p
	cp.ThisTimeLineID, cp.PrevTimeLineID = wal.InitialTLI, wal.InitialTLI
	cp.FullPageWrites = true
	cp.Time = now.Unix()
	cp.OldestActiveXid = 0
	return cp
}
