// Package replication encodes and decodes the CopyData messages of
// PostgreSQL's physical streaming replication protocol (big-endian), plus the
// 'z' pageserver-feedback message Neon added (SK §5.4–§5.5):
//
//	server → client: 'w' XLogData, 'k' primary keepalive
//	client → server: 'r' standby status update, 'h' hot standby feedback, 'z' pageserver feedback
//
// Decoders take untrusted bytes and return errors, never panic.
package replication

import (
	"encoding/binary"
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// Message tags.
const (
	TagXLogData           = 'w'
	TagKeepalive          = 'k'
	TagStandbyStatus      = 'r'
	TagHotStandbyFeedback = 'h'
	TagPageserverFeedback = 'z'
)

// XLogDataHeaderSize is the size of an XLogData message before its WAL bytes.
const XLogDataHeaderSize = 1 + 8 + 8 + 8

// XLogData carries WAL bytes starting at WALStart.
type XLogData struct {
	WALStart lsn.LSN
	WALEnd   lsn.LSN // the server's current end of streamable WAL
	SendTime int64   // PostgreSQL timestamp (µs since 2000-01-01)
	Data     []byte  // aliases the decoded buffer
}

// AppendXLogDataHeader appends the header of an XLogData message; the caller
// appends the WAL bytes (so they need not be copied twice).
func AppendXLogDataHeader(dst []byte, walStart, walEnd lsn.LSN, sendTime int64) []byte {
	dst = append(dst, TagXLogData)
	dst = binary.BigEndian.AppendUint64(dst, uint64(walStart))
	dst = binary.BigEndian.AppendUint64(dst, uint64(walEnd))
	return binary.BigEndian.AppendUint64(dst, uint64(sendTime))
}

// Keepalive is the primary keepalive message.
type Keepalive struct {
	WALEnd         lsn.LSN
	SendTime       int64
	ReplyRequested bool
}

// Append encodes k.
func (k Keepalive) Append(dst []byte) []byte {
	dst = append(dst, TagKeepalive)
	dst = binary.BigEndian.AppendUint64(dst, uint64(k.WALEnd))
	dst = binary.BigEndian.AppendUint64(dst, uint64(k.SendTime))
	if k.ReplyRequested {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// StandbyStatus is a standby's report of its write, flush and apply positions.
type StandbyStatus struct {
	WriteLSN       lsn.LSN
	FlushLSN       lsn.LSN
	ApplyLSN       lsn.LSN
	ReplyTime      int64
	ReplyRequested bool
}

// Append encodes s.
func (s StandbyStatus) Append(dst []byte) []byte {
	dst = append(dst, TagStandbyStatus)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.WriteLSN))
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.FlushLSN))
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.ApplyLSN))
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.ReplyTime))
	if s.ReplyRequested {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// HotStandbyFeedback is a standby's oldest running xmin and catalog xmin,
// each with its epoch.
type HotStandbyFeedback struct {
	ReplyTime        int64
	Xmin             uint32
	XminEpoch        uint32
	CatalogXmin      uint32
	CatalogXminEpoch uint32
}

// Full converts to the full-transaction-id form relayed to proposers.
func (h HotStandbyFeedback) Full() pamsg.HotStandbyFeedback {
	return pamsg.HotStandbyFeedback{
		TS:          h.ReplyTime,
		Xmin:        uint64(h.XminEpoch)<<32 | uint64(h.Xmin),
		CatalogXmin: uint64(h.CatalogXminEpoch)<<32 | uint64(h.CatalogXmin),
	}
}

// Append encodes h.
func (h HotStandbyFeedback) Append(dst []byte) []byte {
	dst = append(dst, TagHotStandbyFeedback)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.ReplyTime))
	dst = binary.BigEndian.AppendUint32(dst, h.Xmin)
	dst = binary.BigEndian.AppendUint32(dst, h.XminEpoch)
	dst = binary.BigEndian.AppendUint32(dst, h.CatalogXmin)
	return binary.BigEndian.AppendUint32(dst, h.CatalogXminEpoch)
}

// AppendPageserverFeedback encodes a 'z' message: a u64 length, then the feedback.
func AppendPageserverFeedback(dst []byte, f *pamsg.PageserverFeedback) []byte {
	body := f.Append(nil)
	dst = append(dst, TagPageserverFeedback)
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(body)))
	return append(dst, body...)
}

// ServerMessage is *XLogData or *Keepalive.
type ServerMessage interface{ serverMessage() }

func (*XLogData) serverMessage()  {}
func (*Keepalive) serverMessage() {}

// ClientMessage is *StandbyStatus, *HotStandbyFeedback or *pamsg.PageserverFeedback.
type ClientMessage interface{}

// DecodeServerMessage parses a CopyData payload sent by a walsender.
func DecodeServerMessage(b []byte) (ServerMessage, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("replication message: empty")
	}
	switch b[0] {
	case TagXLogData:
		if len(b) < XLogDataHeaderSize {
			return nil, fmt.Errorf("XLogData: %d bytes, need at least %d", len(b), XLogDataHeaderSize)
		}
		return &XLogData{
			WALStart: lsn.LSN(binary.BigEndian.Uint64(b[1:])),
			WALEnd:   lsn.LSN(binary.BigEndian.Uint64(b[9:])),
			SendTime: int64(binary.BigEndian.Uint64(b[17:])),
			Data:     b[XLogDataHeaderSize:],
		}, nil
	case TagKeepalive:
		if len(b) != 18 {
			return nil, fmt.Errorf("keepalive: %d bytes, want 18", len(b))
		}
		return &Keepalive{
			WALEnd:         lsn.LSN(binary.BigEndian.Uint64(b[1:])),
			SendTime:       int64(binary.BigEndian.Uint64(b[9:])),
			ReplyRequested: b[17] != 0,
		}, nil
	default:
		return nil, fmt.Errorf("unknown replication message tag %q", b[0])
	}
}

// DecodeClientMessage parses a CopyData payload sent by a replication client.
// Unknown tags return (nil, nil): servers log and ignore them (SK §5.5).
func DecodeClientMessage(b []byte) (ClientMessage, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("replication reply: empty")
	}
	switch b[0] {
	case TagStandbyStatus:
		if len(b) != 34 {
			return nil, fmt.Errorf("standby status update: %d bytes, want 34", len(b))
		}
		return &StandbyStatus{
			WriteLSN:       lsn.LSN(binary.BigEndian.Uint64(b[1:])),
			FlushLSN:       lsn.LSN(binary.BigEndian.Uint64(b[9:])),
			ApplyLSN:       lsn.LSN(binary.BigEndian.Uint64(b[17:])),
			ReplyTime:      int64(binary.BigEndian.Uint64(b[25:])),
			ReplyRequested: b[33] != 0,
		}, nil
	case TagHotStandbyFeedback:
		if len(b) != 25 {
			return nil, fmt.Errorf("hot standby feedback: %d bytes, want 25", len(b))
		}
		return &HotStandbyFeedback{
			ReplyTime:        int64(binary.BigEndian.Uint64(b[1:])),
			Xmin:             binary.BigEndian.Uint32(b[9:]),
			XminEpoch:        binary.BigEndian.Uint32(b[13:]),
			CatalogXmin:      binary.BigEndian.Uint32(b[17:]),
			CatalogXminEpoch: binary.BigEndian.Uint32(b[21:]),
		}, nil
	case TagPageserverFeedback:
		// A u64 length precedes the feedback; like Neon we parse from byte 9 on.
		if len(b) < 9 {
			return nil, fmt.Errorf("pageserver feedback: %d bytes, need at least 9", len(b))
		}
		f, err := pamsg.DecodePageserverFeedback(b[9:])
		if err != nil {
			return nil, err
		}
		return &f, nil
	default:
		return nil, nil
	}
}
