package pgrecords

import (
	"bytes"
	"fmt"

	"strata.dev/libs/lsn"
)

// RM_XACT_ID record types (access/xact.h): xl_info & XLOG_XACT_OPMASK.
const (
	XLOG_XACT_COMMIT          = 0x00
	XLOG_XACT_PREPARE         = 0x10
	XLOG_XACT_ABORT           = 0x20
	XLOG_XACT_COMMIT_PREPARED = 0x30
	XLOG_XACT_ABORT_PREPARED  = 0x40
	XLOG_XACT_ASSIGNMENT      = 0x50
	XLOG_XACT_INVALIDATIONS   = 0x60

	XLOG_XACT_OPMASK = 0x70
	// XLOG_XACT_HAS_INFO says an xinfo word follows xact_time.
	XLOG_XACT_HAS_INFO = 0x80
)

// xinfo bits of commit and abort records, PostgreSQL 15.
const (
	XACT_XINFO_HAS_DBINFO        = 1 << 0
	XACT_XINFO_HAS_SUBXACTS      = 1 << 1
	XACT_XINFO_HAS_RELFILENODES  = 1 << 2
	XACT_XINFO_HAS_INVALS        = 1 << 3
	XACT_XINFO_HAS_TWOPHASE      = 1 << 4
	XACT_XINFO_HAS_ORIGIN        = 1 << 5
	XACT_XINFO_HAS_AE_LOCKS      = 1 << 6
	XACT_XINFO_HAS_GID           = 1 << 7
	XACT_XINFO_HAS_DROPPED_STATS = 1 << 8 // new in PostgreSQL 15
)

// Sizes of the variable-length elements.
const (
	statsItemSize    = 12 // xl_xact_stats_item: int kind, Oid dboid, Oid objoid
	invalMessageSize = 16 // SharedInvalidationMessage
)

// GIDSize is GIDSIZE, the buffer PostgreSQL copies a GID into (with its NUL).
const GIDSize = 200

// StatsItem is an xl_xact_stats_item: statistics dropped with the
// transaction.
type StatsItem struct {
	Kind   int32
	DBOid  uint32
	ObjOid uint32
}

// Xact is a parsed commit or abort record (ParseCommitRecord and
// ParseAbortRecord of xactdesc.c), for all four kinds: COMMIT, ABORT,
// COMMIT_PREPARED, ABORT_PREPARED.
type Xact struct {
	Op       uint8 // XLOG_XACT_COMMIT, _ABORT, _COMMIT_PREPARED or _ABORT_PREPARED
	XactTime int64 // TimestampTz: microseconds since 2000-01-01
	XInfo    uint32

	DBID, TsID   uint32 // if XACT_XINFO_HAS_DBINFO
	Subxacts     []uint32
	Rels         []RelFileNode // relations whose files the transaction drops
	DroppedStats []StatsItem
	NInvals      int // shared invalidation messages (commit only)

	TwoPhaseXid uint32 // the prepared transaction's xid, if XACT_XINFO_HAS_TWOPHASE
	GID         string // if XACT_XINFO_HAS_GID (wal_level = logical)

	OriginLSN       lsn.LSN // if XACT_XINFO_HAS_ORIGIN
	OriginTimestamp int64
}

// IsCommit reports whether the record commits (COMMIT or COMMIT_PREPARED).
func (x *Xact) IsCommit() bool {
	return x.Op == XLOG_XACT_COMMIT || x.Op == XLOG_XACT_COMMIT_PREPARED
}

// IsPrepared reports whether the record finishes a prepared transaction.
func (x *Xact) IsPrepared() bool {
	return x.Op == XLOG_XACT_COMMIT_PREPARED || x.Op == XLOG_XACT_ABORT_PREPARED
}

// HasOrigin reports whether OriginLSN and OriginTimestamp were present.
func (x *Xact) HasOrigin() bool { return x.XInfo&XACT_XINFO_HAS_ORIGIN != 0 }

// Xid is the transaction the record is about: the prepared transaction's
// xid when there is one, else recordXid (xl_xid), as xact_redo does.
func (x *Xact) Xid(recordXid uint32) uint32 {
	if x.XInfo&XACT_XINFO_HAS_TWOPHASE != 0 {
		return x.TwoPhaseXid
	}
	return recordXid
}

// ParseXact parses the main data of a commit or abort record; info is the
// record's xl_info (its XLOG_XACT_HAS_INFO bit says whether xinfo is there).
// The sections follow in the order PostgreSQL 15 writes them: dbinfo,
// subxacts, relfilenodes, dropped stats, invalidations (commit records
// only), two-phase xid and GID, origin.
func ParseXact(info uint8, data []byte) (Xact, error) {
	op := info & XLOG_XACT_OPMASK
	var name string
	switch op {
	case XLOG_XACT_COMMIT:
		name = "XLOG_XACT_COMMIT"
	case XLOG_XACT_ABORT:
		name = "XLOG_XACT_ABORT"
	case XLOG_XACT_COMMIT_PREPARED:
		name = "XLOG_XACT_COMMIT_PREPARED"
	case XLOG_XACT_ABORT_PREPARED:
		name = "XLOG_XACT_ABORT_PREPARED"
	default:
		return Xact{}, fmt.Errorf("xact record 0x%02X is not a commit or abort: %w", op, ErrMalformed)
	}
	commit := op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED
	r := newReader(name, data)
	x := Xact{Op: op, XactTime: int64(r.u64("xact_time"))}
	if info&XLOG_XACT_HAS_INFO != 0 {
		x.XInfo = r.u32("xinfo")
	}
	if x.XInfo&XACT_XINFO_HAS_DBINFO != 0 {
		x.DBID = r.u32("dbId")
		x.TsID = r.u32("tsId")
	}
	if x.XInfo&XACT_XINFO_HAS_SUBXACTS != 0 {
		n := r.count("nsubxacts", 4)
		x.Subxacts = make([]uint32, n)
		for i := range x.Subxacts {
			x.Subxacts[i] = r.u32("subxact")
		}
	}
	if x.XInfo&XACT_XINFO_HAS_RELFILENODES != 0 {
		n := r.count("nrels", relFileNodeSize)
		x.Rels = make([]RelFileNode, n)
		for i := range x.Rels {
			x.Rels[i] = r.relFileNode("xnode")
		}
	}
	if x.XInfo&XACT_XINFO_HAS_DROPPED_STATS != 0 {
		n := r.count("nitems", statsItemSize)
		x.DroppedStats = make([]StatsItem, n)
		for i := range x.DroppedStats {
			x.DroppedStats[i] = StatsItem{Kind: int32(r.u32("kind")), DBOid: r.u32("dboid"), ObjOid: r.u32("objoid")}
		}
	}
	if commit && x.XInfo&XACT_XINFO_HAS_INVALS != 0 {
		x.NInvals = r.count("nmsgs", invalMessageSize)
		r.take(x.NInvals*invalMessageSize, "msgs")
	}
	if x.XInfo&XACT_XINFO_HAS_TWOPHASE != 0 {
		x.TwoPhaseXid = r.u32("twophase xid")
		if x.XInfo&XACT_XINFO_HAS_GID != 0 {
			x.GID = r.cString("gid")
		}
	}
	if x.XInfo&XACT_XINFO_HAS_ORIGIN != 0 {
		// xl_xact_origin, copied unaligned by PostgreSQL too.
		x.OriginLSN = lsn.LSN(r.u64("origin_lsn"))
		x.OriginTimestamp = int64(r.u64("origin_timestamp"))
	}
	return result(r, x)
}

// cString reads a NUL-terminated string and the NUL. PostgreSQL copies at
// most GIDSize-1 bytes of it but skips the whole string.
func (r *reader) cString(field string) string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b[r.off:], 0)
	if i < 0 {
		r.fail("%s: no terminating NUL in %d bytes", field, r.remaining())
		return ""
	}
	s := string(r.b[r.off : r.off+i])
	r.off += i + 1
	return s
}

// TwoPhaseHeader is the start of the main data of XLOG_XACT_PREPARE: the
// two-phase state file header (xl_xact_prepare). The pageserver stores the
// whole main data as the state file (PS §2.6).
type TwoPhaseHeader struct {
	Magic      uint32
	TotalLen   uint32
	Xid        uint32 // the prepared transaction
	Database   uint32
	PreparedAt int64
	Owner      uint32
}

// twoPhaseHeaderMin covers the fields parsed: magic through owner.
const twoPhaseHeaderMin = 28

// ParseTwoPhaseHeader parses the fixed start of a PREPARE record's main
// data; only the fields that have kept their place in every version since
// PostgreSQL 10 are read.
func ParseTwoPhaseHeader(data []byte) (TwoPhaseHeader, error) {
	r := newReader("XLOG_XACT_PREPARE", data)
	r.atLeast(twoPhaseHeaderMin)
	h := TwoPhaseHeader{
		Magic:    r.u32("magic"),
		TotalLen: r.u32("total_len"),
		Xid:      r.u32("xid"),
		Database: r.u32("database"),
	}
	h.PreparedAt = int64(r.u64("prepared_at"))
	h.Owner = r.u32("owner")
	return result(r, h)
}
