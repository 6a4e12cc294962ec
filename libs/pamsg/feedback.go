package pamsg

import (
	"encoding/binary"
	"fmt"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pgtime"
)

// PageserverFeedback is what a pageserver reports about its progress on a
// timeline. It travels as the body of a 'z' message on a START_REPLICATION
// stream and is relayed to the proposer at the end of AppendResponses. The
// encoding is a self-describing key/value list, big-endian in both protocol
// versions (SK §2.2).
type PageserverFeedback struct {
	CurrentTimelineSize uint64
	LastReceivedLSN     lsn.LSN
	DiskConsistentLSN   lsn.LSN
	RemoteConsistentLSN lsn.LSN
	ReplyTime           time.Time
	ShardNumber         uint32
	CorruptionDetected  bool
}

// Append appends the encoding Neon writes: the five fixed keys under their
// old names, then shard_number and corruption_detected only when set.
func (f *PageserverFeedback) Append(dst []byte) []byte {
	be := binary.BigEndian
	n := byte(5)
	if f.ShardNumber > 0 {
		n++
	}
	if f.CorruptionDetected {
		n++
	}
	dst = append(dst, n)
	u64 := func(dst []byte, key string, v uint64) []byte {
		dst = putCString(dst, key)
		dst = putU32(dst, be, 8)
		return putU64(dst, be, v)
	}
	dst = u64(dst, "current_timeline_size", f.CurrentTimelineSize)
	dst = u64(dst, "ps_writelsn", uint64(f.LastReceivedLSN))
	dst = u64(dst, "ps_flushlsn", uint64(f.DiskConsistentLSN))
	dst = u64(dst, "ps_applylsn", uint64(f.RemoteConsistentLSN))
	dst = u64(dst, "ps_replytime", uint64(pgtime.FromTime(f.ReplyTime)))
	if f.ShardNumber > 0 {
		dst = putCString(dst, "shard_number")
		dst = putU32(dst, be, 4)
		dst = putU32(dst, be, f.ShardNumber)
	}
	if f.CorruptionDetected {
		dst = putCString(dst, "corruption_detected")
		dst = putU32(dst, be, 1)
		dst = append(dst, 1)
	}
	return dst
}

// DecodePageserverFeedback parses the key/value list, accepting old and new
// key names and skipping unknown keys by their length.
func DecodePageserverFeedback(b []byte) (PageserverFeedback, error) {
	var f PageserverFeedback
	r := newReader(b, binary.BigEndian, "pageserver feedback")
	n := int(r.u8("key count"))
	for i := 0; i < n && r.err == nil; i++ {
		key := r.cstring("key")
		size := r.u32("value length")
		if r.err != nil {
			break
		}
		if int32(size) < 0 {
			return f, fmt.Errorf("pageserver feedback: key %q has negative length %d", key, int32(size))
		}
		val := r.take(int(size), "value of "+key)
		if r.err != nil {
			break
		}
		want := func(n int) bool {
			if len(val) != n {
				r.fail("key %q has %d bytes, want %d", key, len(val), n)
				return false
			}
			return true
		}
		switch key {
		case "current_timeline_size":
			if want(8) {
				f.CurrentTimelineSize = binary.BigEndian.Uint64(val)
			}
		case "ps_writelsn", "last_received_lsn":
			if want(8) {
				f.LastReceivedLSN = lsn.LSN(binary.BigEndian.Uint64(val))
			}
		case "ps_flushlsn", "disk_consistent_lsn":
			if want(8) {
				f.DiskConsistentLSN = lsn.LSN(binary.BigEndian.Uint64(val))
			}
		case "ps_applylsn", "remote_consistent_lsn":
			if want(8) {
				f.RemoteConsistentLSN = lsn.LSN(binary.BigEndian.Uint64(val))
			}
		case "ps_replytime", "replytime":
			if want(8) {
				f.ReplyTime = pgtime.ToTime(int64(binary.BigEndian.Uint64(val)))
			}
		case "shard_number":
			if want(4) {
				f.ShardNumber = binary.BigEndian.Uint32(val)
			}
		case "corruption_detected":
			if want(1) {
				f.CorruptionDetected = val[0] != 0
			}
		}
	}
	return f, r.err
}
