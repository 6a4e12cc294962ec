// Package pgcontrol reads and rewrites PostgreSQL 15's pg_control file
// (catalog/pg_control.h, PS §7.5.3): the one place that knows its layout.
// Imports read where a data directory's WAL replay starts from it;
// basebackups rewrite it to point at their shutdown checkpoint record.
package pgcontrol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// ControlFileData offsets in PostgreSQL 15.
const (
	OffSystemID        = 0
	OffVersion         = 8
	OffCatalogVersion  = 12
	OffState           = 16
	OffTime            = 24
	OffCheckPoint      = 32
	OffCheckPointCopy  = 40
	OffMinRecovery     = 136
	OffMinRecoveryTLI  = 144
	OffBackupStart     = 152
	OffBackupEnd       = 160
	OffBackupEndReq    = 168
	OffBlcksz          = 216
	OffXLogBlcksz      = 224
	OffXLogSegSize     = 228
	OffChecksumVersion = 252
	OffCRC             = 288
	// DataSize is sizeof(ControlFileData); the CRC covers the bytes before
	// OffCRC.
	DataSize = 296
	// FileSize is PG_CONTROL_FILE_SIZE: the file is zero-padded to it.
	FileSize = 8192

	Version        = 1300      // PG_CONTROL_VERSION of 15
	CatalogVersion = 202209061 // CATALOG_VERSION_NO of 15
	BlockSize      = 8192      // BLCKSZ

	// StateShutdowned is DB_SHUTDOWNED: the cluster was shut down cleanly.
	StateShutdowned = 1
)

// ErrUnsupported is wrapped when the file is from another PostgreSQL
// version or build (block sizes).
var ErrUnsupported = errors.New("unsupported")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Control is a parsed pg_control.
type Control struct {
	raw []byte
}

// Parse checks that raw is a PostgreSQL 15 pg_control with 8 KiB blocks
// and a valid WAL segment size. The CRC is not checked: a file being
// copied while the server runs may not match it, and PostgreSQL itself
// decides that at startup.
func Parse(raw []byte) (Control, error) {
	if len(raw) < DataSize {
		return Control{}, fmt.Errorf("pg_control is %d bytes, want at least %d", len(raw), DataSize)
	}
	le := binary.LittleEndian
	if v, cat := le.Uint32(raw[OffVersion:]), le.Uint32(raw[OffCatalogVersion:]); v != Version || cat != CatalogVersion {
		return Control{}, fmt.Errorf("pg_control version %d, catalog %d: want PostgreSQL 15 (%d, %d): %w",
			v, cat, Version, CatalogVersion, ErrUnsupported)
	}
	if bs, xbs := le.Uint32(raw[OffBlcksz:]), le.Uint32(raw[OffXLogBlcksz:]); bs != BlockSize || xbs != lsn.PageSize {
		return Control{}, fmt.Errorf("pg_control has blcksz %d, xlog_blcksz %d: want %d: %w", bs, xbs, BlockSize, ErrUnsupported)
	}
	c := Control{raw: raw}
	if err := wal.ValidateSegmentSize(c.SegmentSize()); err != nil {
		return Control{}, fmt.Errorf("pg_control: %w", err)
	}
	return c, nil
}

// Bytes is the file as parsed.
func (c Control) Bytes() []byte { return c.raw }

// SystemID is the cluster's system identifier.
func (c Control) SystemID() uint64 { return binary.LittleEndian.Uint64(c.raw[OffSystemID:]) }

// SegmentSize is the WAL segment size.
func (c Control) SegmentSize() uint64 {
	return uint64(binary.LittleEndian.Uint32(c.raw[OffXLogSegSize:]))
}

// State is the cluster state (StateShutdowned after a clean shutdown).
func (c Control) State() uint32 { return binary.LittleEndian.Uint32(c.raw[OffState:]) }

// CheckPoint is the LSN of the latest checkpoint record.
func (c Control) CheckPoint() lsn.LSN {
	return lsn.LSN(binary.LittleEndian.Uint64(c.raw[OffCheckPoint:]))
}

// CheckPointCopy is the encoded CheckPoint of that record
// (pgrecords.DecodeCheckPoint reads it).
func (c Control) CheckPointCopy(size int) []byte {
	return c.raw[OffCheckPointCopy : OffCheckPointCopy+size]
}

// Checksums reports whether the cluster has data checksums.
func (c Control) Checksums() bool {
	return binary.LittleEndian.Uint32(c.raw[OffChecksumVersion:]) != 0
}

// ShutdownAt returns a FileSize pg_control that says the cluster was shut
// down cleanly with its checkpoint record at p, whose CheckPoint encodes
// as checkPointCopy: no recovery and no backup in progress, a fresh CRC.
// Everything else, the compile-time constants above all, is kept.
func (c Control) ShutdownAt(p lsn.LSN, checkPointCopy []byte, now time.Time) []byte {
	out := make([]byte, FileSize)
	copy(out, c.raw[:OffCRC])
	le := binary.LittleEndian
	le.PutUint32(out[OffState:], StateShutdowned)
	le.PutUint64(out[OffTime:], uint64(now.Unix()))
	le.PutUint64(out[OffCheckPoint:], uint64(p))
	copy(out[OffCheckPointCopy:], checkPointCopy)
	le.PutUint64(out[OffMinRecovery:], 0)
	le.PutUint32(out[OffMinRecoveryTLI:], 0)
	le.PutUint64(out[OffBackupStart:], 0)
	le.PutUint64(out[OffBackupEnd:], 0)
	out[OffBackupEndReq] = 0
	le.PutUint32(out[OffCRC:], CRC(out))
	return out
}

// CRC is the CRC-32C pg_control stores at OffCRC.
func CRC(raw []byte) uint32 { return crc32.Checksum(raw[:OffCRC], castagnoli) }
