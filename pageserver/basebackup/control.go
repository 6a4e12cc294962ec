// pg_control for a vanilla start (PS §7.5.3, §7.6 step 4): the stored
// control file with checkPoint = P, checkPointCopy = our shutdown
// checkpoint, state DB_SHUTDOWNED, no recovery or backup in progress, and
// a fresh CRC. Everything else, the compile-time constants above all, is
// kept from the stored file, which initdb of the same binaries wrote.
package basebackup

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/ingest/pgrecords"
)

type checkpoint = pgrecords.CheckPoint

// ControlFileData offsets in PostgreSQL 15 (catalog/pg_control.h).
const (
	ctlSystemID        = 0
	ctlVersion         = 8
	ctlCatalogVersion  = 12
	ctlState           = 16
	ctlTime            = 24
	ctlCheckPoint      = 32
	ctlCheckPointCopy  = 40
	ctlMinRecovery     = 136
	ctlMinRecoveryTLI  = 144
	ctlBackupStart     = 152
	ctlBackupEnd       = 160
	ctlBackupEndReq    = 168
	ctlBlcksz          = 216
	ctlXLogBlcksz      = 224
	ctlXLogSegSize     = 228
	ctlChecksumVersion = 252
	ctlCRC             = 288
	ctlDataSize        = 296  // sizeof(ControlFileData)
	ctlFileSize        = 8192 // PG_CONTROL_FILE_SIZE

	pgControlVersion = 1300      // PG_CONTROL_VERSION of 15
	catalogVersion   = 202209061 // CATALOG_VERSION_NO of 15
	dbShutdowned     = 1         // DB_SHUTDOWNED
	blockSize        = 8192
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// control is the stored pg_control and what the backup needs from it.
type control struct {
	raw     []byte
	sysID   uint64
	segSize uint64
}

func parseControl(raw []byte) (control, error) {
	if len(raw) < ctlDataSize {
		return control{}, fmt.Errorf("stored pg_control is %d bytes, want at least %d", len(raw), ctlDataSize)
	}
	le := binary.LittleEndian
	if v, cat := le.Uint32(raw[ctlVersion:]), le.Uint32(raw[ctlCatalogVersion:]); v != pgControlVersion || cat != catalogVersion {
		return control{}, fmt.Errorf("stored pg_control version %d, catalog %d: want PostgreSQL 15 (%d, %d): %w",
			v, cat, pgControlVersion, catalogVersion, ErrUnsupported)
	}
	if bs, xbs := le.Uint32(raw[ctlBlcksz:]), le.Uint32(raw[ctlXLogBlcksz:]); bs != blockSize || xbs != lsn.PageSize {
		return control{}, fmt.Errorf("stored pg_control has blcksz %d, xlog_blcksz %d: want %d: %w", bs, xbs, blockSize, ErrUnsupported)
	}
	c := control{raw: raw, sysID: le.Uint64(raw[ctlSystemID:]), segSize: uint64(le.Uint32(raw[ctlXLogSegSize:]))}
	if err := wal.ValidateSegmentSize(c.segSize); err != nil {
		return control{}, fmt.Errorf("stored pg_control: %w", err)
	}
	return c, nil
}

// checksums reports whether the cluster has data checksums.
func (c control) checksums() bool {
	return binary.LittleEndian.Uint32(c.raw[ctlChecksumVersion:]) != 0
}

// rewrite returns the 8192-byte pg_control pointing at the shutdown
// checkpoint record at p.
func (c control) rewrite(cp checkpoint, p lsn.LSN, now time.Time) []byte {
	out := make([]byte, ctlFileSize)
	copy(out, c.raw[:ctlCRC])
	le := binary.LittleEndian
	le.PutUint32(out[ctlState:], dbShutdowned)
	le.PutUint64(out[ctlTime:], uint64(now.Unix()))
	le.PutUint64(out[ctlCheckPoint:], uint64(p))
	copy(out[ctlCheckPointCopy:], cp.Encode())
	le.PutUint64(out[ctlMinRecovery:], 0)
	le.PutUint32(out[ctlMinRecoveryTLI:], 0)
	le.PutUint64(out[ctlBackupStart:], 0)
	le.PutUint64(out[ctlBackupEnd:], 0)
	out[ctlBackupEndReq] = 0
	le.PutUint32(out[ctlCRC:], crc32.Checksum(out[:ctlCRC], castagnoli))
	return out
}

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

// normalize moves an LSN at a page start past the page header, to where
// a record there would begin.
func normalize(l lsn.LSN, segSize uint64) lsn.LSN {
	switch {
	case l.IsSegmentStart(segSize):
		return l + wal.LongPageHeaderSize
	case l.IsPageStart():
		return l + wal.ShortPageHeaderSize
	}
	return l
}
