package pgrecords

import (
	"encoding/binary"

	"strata.dev/libs/lsn"
)

// RM_XLOG_ID record types (catalog/pg_control.h), xl_info & 0xF0.
const (
	XLOG_CHECKPOINT_SHUTDOWN  = 0x00
	XLOG_CHECKPOINT_ONLINE    = 0x10
	XLOG_NOOP                 = 0x20
	XLOG_NEXTOID              = 0x30
	XLOG_SWITCH               = 0x40
	XLOG_BACKUP_END           = 0x50
	XLOG_PARAMETER_CHANGE     = 0x60
	XLOG_RESTORE_POINT        = 0x70
	XLOG_FPW_CHANGE           = 0x80
	XLOG_END_OF_RECOVERY      = 0x90
	XLOG_FPI_FOR_HINT         = 0xA0
	XLOG_FPI                  = 0xB0
	XLOG_OVERWRITE_CONTRECORD = 0xD0
)

// Transaction id constants (access/transam.h).
const (
	InvalidTransactionID     = 0
	BootstrapTransactionID   = 1
	FrozenTransactionID      = 2
	FirstNormalTransactionID = 3
)

// CheckPointSize is sizeof(CheckPoint) in PostgreSQL 15.
const CheckPointSize = 88

// CheckPoint is PostgreSQL 15's CheckPoint struct (catalog/pg_control.h,
// PS §7.5.2): the main data of a checkpoint record, the checkPointCopy of
// pg_control, and the value of the pageserver's checkpoint key.
type CheckPoint struct {
	Redo              lsn.LSN
	ThisTimeLineID    uint32
	PrevTimeLineID    uint32
	FullPageWrites    bool
	NextXid           uint64 // FullTransactionId: epoch << 32 | xid
	NextOid           uint32
	NextMulti         uint32
	NextMultiOffset   uint32
	OldestXid         uint32
	OldestXidDB       uint32
	OldestMulti       uint32
	OldestMultiDB     uint32
	Time              int64 // pg_time_t: seconds since the Unix epoch
	OldestCommitTsXid uint32
	NewestCommitTsXid uint32
	OldestActiveXid   uint32
}

// DecodeCheckPoint reads the 88-byte struct. Padding bytes are not checked.
func DecodeCheckPoint(b []byte) (CheckPoint, error) {
	r := newReader("checkpoint", b)
	r.exactly(CheckPointSize)
	if r.err != nil {
		return CheckPoint{}, r.err
	}
	le := binary.LittleEndian
	return CheckPoint{
		Redo:              lsn.LSN(le.Uint64(b[0:])),
		ThisTimeLineID:    le.Uint32(b[8:]),
		PrevTimeLineID:    le.Uint32(b[12:]),
		FullPageWrites:    b[16] != 0,
		NextXid:           le.Uint64(b[24:]),
		NextOid:           le.Uint32(b[32:]),
		NextMulti:         le.Uint32(b[36:]),
		NextMultiOffset:   le.Uint32(b[40:]),
		OldestXid:         le.Uint32(b[44:]),
		OldestXidDB:       le.Uint32(b[48:]),
		OldestMulti:       le.Uint32(b[52:]),
		OldestMultiDB:     le.Uint32(b[56:]),
		Time:              int64(le.Uint64(b[64:])),
		OldestCommitTsXid: le.Uint32(b[72:]),
		NewestCommitTsXid: le.Uint32(b[76:]),
		OldestActiveXid:   le.Uint32(b[80:]),
	}, nil
}

// Append appends the 88-byte encoding, padding bytes zero.
func (c CheckPoint) Append(dst []byte) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, uint64(c.Redo))
	dst = le.AppendUint32(dst, c.ThisTimeLineID)
	dst = le.AppendUint32(dst, c.PrevTimeLineID)
	fpw := byte(0)
	if c.FullPageWrites {
		fpw = 1
	}
	dst = append(dst, fpw, 0, 0, 0, 0, 0, 0, 0)
	dst = le.AppendUint64(dst, c.NextXid)
	dst = le.AppendUint32(dst, c.NextOid)
	dst = le.AppendUint32(dst, c.NextMulti)
	dst = le.AppendUint32(dst, c.NextMultiOffset)
	dst = le.AppendUint32(dst, c.OldestXid)
	dst = le.AppendUint32(dst, c.OldestXidDB)
	dst = le.AppendUint32(dst, c.OldestMulti)
	dst = le.AppendUint32(dst, c.OldestMultiDB)
	dst = le.AppendUint32(dst, 0)
	dst = le.AppendUint64(dst, uint64(c.Time))
	dst = le.AppendUint32(dst, c.OldestCommitTsXid)
	dst = le.AppendUint32(dst, c.NewestCommitTsXid)
	dst = le.AppendUint32(dst, c.OldestActiveXid)
	return le.AppendUint32(dst, 0)
}

// Encode is Append to a new slice.
func (c CheckPoint) Encode() []byte { return c.Append(make([]byte, 0, CheckPointSize)) }

// TransactionIDIsNormal is TransactionIdIsNormal.
func TransactionIDIsNormal(xid uint32) bool { return xid >= FirstNormalTransactionID }

// TransactionIDPrecedes is TransactionIdPrecedes: modulo-2^32 comparison of
// normal xids, plain comparison when either is special.
func TransactionIDPrecedes(a, b uint32) bool {
	if !TransactionIDIsNormal(a) || !TransactionIDIsNormal(b) {
		return a < b
	}
	return int32(a-b) < 0
}

// TransactionIDFollowsOrEquals is TransactionIdFollowsOrEquals.
func TransactionIDFollowsOrEquals(a, b uint32) bool {
	if !TransactionIDIsNormal(a) || !TransactionIDIsNormal(b) {
		return a >= b
	}
	return int32(a-b) >= 0
}

// AdvanceNextXid moves NextXid past xid, as PostgreSQL's redo does for
// every record (AdvanceNextFullTransactionIdPastXid): exactly, not rounded,
// so that a vanilla server started from the checkpoint finds the CLOG page
// of nextXid (PS §7.7). The epoch is carried when the 32-bit value wraps.
// It reports whether NextXid changed.
func (c *CheckPoint) AdvanceNextXid(xid uint32) bool {
	next := uint32(c.NextXid)
	if !TransactionIDFollowsOrEquals(xid, next) {
		return false
	}
	xid++ // TransactionIdAdvance: skip the special xids
	if xid < FirstNormalTransactionID {
		xid = FirstNormalTransactionID
	}
	epoch := c.NextXid >> 32
	if xid < next {
		epoch++
	}
	nextXid := epoch<<32 | uint64(xid)
	if nextXid == c.NextXid {
		return false
	}
	c.NextXid = nextXid
	return true
}

// AdvanceNextMulti is MultiXactAdvanceNextMXact: NextMulti and
// NextMultiOffset move forward (modulo 2^32) to at least the given values.
// It reports whether either changed.
func (c *CheckPoint) AdvanceNextMulti(multi, offset uint32) bool {
	changed := false
	if int32(c.NextMulti-multi) < 0 {
		c.NextMulti = multi
		changed = true
	}
	if int32(c.NextMultiOffset-offset) < 0 {
		c.NextMultiOffset = offset
		changed = true
	}
	return changed
}

// ParseNextOid parses XLOG_NEXTOID: the next OID to assign.
func ParseNextOid(data []byte) (uint32, error) {
	r := newReader("XLOG_NEXTOID", data)
	r.exactly(4)
	v := r.u32("nextOid")
	return result(r, v)
}
