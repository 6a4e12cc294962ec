package pgrecords

import (
	"bytes"

	"strata.dev/libs/lsn"
)

// RM_STANDBY_ID record types (storage/standbydefs.h).
const (
	XLOG_STANDBY_LOCK  = 0x00
	XLOG_RUNNING_XACTS = 0x10
	XLOG_INVALIDATIONS = 0x20
)

// RunningXacts is the fixed part of xl_running_xacts: a snapshot of the
// transactions running when it was logged.
type RunningXacts struct {
	Xcnt               int32
	Subxcnt            int32
	SubxidOverflow     bool
	NextXid            uint32
	OldestRunningXid   uint32
	LatestCompletedXid uint32
}

// sizeOfRunningXacts is offsetof(xl_running_xacts, xids).
const sizeOfRunningXacts = 24

// ParseRunningXacts parses XLOG_RUNNING_XACTS (the xid array is checked
// for length, not returned).
func ParseRunningXacts(data []byte) (RunningXacts, error) {
	r := newReader("XLOG_RUNNING_XACTS", data)
	r.atLeast(sizeOfRunningXacts)
	x := RunningXacts{Xcnt: int32(r.u32("xcnt")), Subxcnt: int32(r.u32("subxcnt"))}
	x.SubxidOverflow = r.u8("subxid_overflow") != 0
	r.seek(12, "nextXid")
	x.NextXid = r.u32("nextXid")
	x.OldestRunningXid = r.u32("oldestRunningXid")
	x.LatestCompletedXid = r.u32("latestCompletedXid")
	if r.err == nil {
		n := int64(x.Xcnt) + int64(x.Subxcnt)
		if x.Xcnt < 0 || x.Subxcnt < 0 || n*4 != int64(r.remaining()) {
			r.fail("xcnt %d + subxcnt %d xids, but %d bytes follow", x.Xcnt, x.Subxcnt, r.remaining())
		}
	}
	return result(r, x)
}

// RM_REPLORIGIN_ID record types (replication/origin.h).
const (
	XLOG_REPLORIGIN_SET  = 0x00
	XLOG_REPLORIGIN_DROP = 0x10
)

// ReplOriginSet is xl_replorigin_set: replication origin NodeID has
// replayed the remote WAL up to RemoteLSN.
type ReplOriginSet struct {
	RemoteLSN lsn.LSN
	NodeID    uint16
	Force     bool
}

// ParseReplOriginSet parses XLOG_REPLORIGIN_SET (16 bytes with padding).
func ParseReplOriginSet(data []byte) (ReplOriginSet, error) {
	r := newReader("XLOG_REPLORIGIN_SET", data)
	r.atLeast(11)
	s := ReplOriginSet{RemoteLSN: lsn.LSN(r.u64("remote_lsn")), NodeID: r.u16("node_id"), Force: r.u8("force") != 0}
	return result(r, s)
}

// ParseReplOriginDrop parses XLOG_REPLORIGIN_DROP: the dropped origin.
func ParseReplOriginDrop(data []byte) (uint16, error) {
	r := newReader("XLOG_REPLORIGIN_DROP", data)
	r.atLeast(2)
	id := r.u16("node_id")
	return result(r, id)
}

// RM_LOGICALMSG_ID record type (replication/message.h).
const XLOG_LOGICAL_MESSAGE = 0x00

// LogicalMessage is xl_logical_message (pg_logical_emit_message).
type LogicalMessage struct {
	DB            uint32
	Transactional bool
	Prefix        string // without its NUL
	Message       []byte
}

// sizeOfLogicalMessage is offsetof(xl_logical_message, message).
const sizeOfLogicalMessage = 24

// ParseLogicalMessage parses XLOG_LOGICAL_MESSAGE.
func ParseLogicalMessage(data []byte) (LogicalMessage, error) {
	r := newReader("XLOG_LOGICAL_MESSAGE", data)
	r.atLeast(sizeOfLogicalMessage)
	m := LogicalMessage{DB: r.u32("dbId"), Transactional: r.u8("transactional") != 0}
	r.seek(8, "prefix_size")
	prefixSize := r.u64("prefix_size")
	messageSize := r.u64("message_size")
	if r.err == nil && (prefixSize == 0 || prefixSize > uint64(r.remaining()) ||
		messageSize != uint64(r.remaining())-prefixSize) {
		r.fail("prefix_size %d + message_size %d, but %d bytes follow", prefixSize, messageSize, r.remaining())
	}
	prefix := r.take(int(prefixSize), "prefix")
	if r.err == nil {
		if i := bytes.IndexByte(prefix, 0); i != len(prefix)-1 {
			r.fail("prefix is not one NUL-terminated string")
		}
	}
	m.Message = r.take(int(messageSize), "message")
	if r.err == nil {
		m.Prefix = string(prefix[:len(prefix)-1])
	}
	return result(r, m)
}
