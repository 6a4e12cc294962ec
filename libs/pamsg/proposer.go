package pamsg

import (
	"encoding/binary"
	"fmt"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
)

// This file is the proposer's half of the codec: encoding proposer messages
// and decoding acceptor replies. The walproposer and the tests use it.

// AppendProposerMessage appends the encoding of m to dst.
func AppendProposerMessage(dst []byte, v Version, m ProposerMessage) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v == V2 {
		return appendProposerV2(dst, m)
	}
	be := binary.BigEndian
	switch m := m.(type) {
	case *ProposerGreeting:
		dst = append(dst, TagGreeting)
		dst = putCString(dst, m.TenantID.String())
		dst = putCString(dst, m.TimelineID.String())
		dst = appendMconf(dst, m.Mconf)
		dst = putU32(dst, be, m.PgVersion)
		dst = putU64(dst, be, m.SystemID)
		dst = putU32(dst, be, m.WalSegSize)
	case *VoteRequest:
		dst = append(dst, TagVote)
		dst = putU32(dst, be, uint32(m.Generation))
		dst = putU64(dst, be, uint64(m.Term))
	case *ProposerElected:
		dst = append(dst, TagElected)
		dst = putU32(dst, be, uint32(m.Generation))
		dst = putU64(dst, be, uint64(m.Term))
		dst = putU64(dst, be, uint64(m.StartStreamingAt))
		dst = appendTermHistory(dst, be, m.TermHistory)
	case *AppendRequest:
		if err := checkAppendRequest(m); err != nil {
			return dst, err
		}
		dst = AppendAppendRequestHeader(dst, v, m)
		dst = append(dst, m.WAL...)
	default:
		return dst, fmt.Errorf("unknown proposer message %T", m)
	}
	return dst, nil
}

// AppendAppendRequestHeader appends only the header of an AppendRequest, so a
// proposer can write the WAL bytes straight from its own buffer.
func AppendAppendRequestHeader(dst []byte, v Version, m *AppendRequest) []byte {
	if v == V2 {
		le := binary.LittleEndian
		dst = putU64(dst, le, TagAppend)
		dst = putU64(dst, le, uint64(m.Term))
		dst = putU64(dst, le, 0) // epoch_start_lsn, unused
		dst = putU64(dst, le, uint64(m.BeginLSN))
		dst = putU64(dst, le, uint64(m.EndLSN))
		dst = putU64(dst, le, uint64(m.CommitLSN))
		dst = putU64(dst, le, uint64(m.TruncateLSN))
		return append(dst, make([]byte, 16)...) // proposer_id
	}
	be := binary.BigEndian
	dst = append(dst, TagAppend)
	dst = putU32(dst, be, uint32(m.Generation))
	dst = putU64(dst, be, uint64(m.Term))
	dst = putU64(dst, be, uint64(m.BeginLSN))
	dst = putU64(dst, be, uint64(m.EndLSN))
	dst = putU64(dst, be, uint64(m.CommitLSN))
	return putU64(dst, be, uint64(m.TruncateLSN))
}

func checkAppendRequest(m *AppendRequest) error {
	if m.EndLSN < m.BeginLSN || uint64(m.EndLSN-m.BeginLSN) != uint64(len(m.WAL)) {
		return fmt.Errorf("AppendRequest [%v, %v) does not match its %d WAL bytes", m.BeginLSN, m.EndLSN, len(m.WAL))
	}
	if len(m.WAL) > MaxWALPerAppend {
		return fmt.Errorf("AppendRequest carries %d bytes, more than %d", len(m.WAL), MaxWALPerAppend)
	}
	return nil
}

func appendProposerV2(dst []byte, m ProposerMessage) ([]byte, error) {
	le := binary.LittleEndian
	switch m := m.(type) {
	case *ProposerGreeting:
		dst = putU64(dst, le, TagGreeting)
		dst = putU32(dst, le, uint32(V2))
		dst = putU32(dst, le, m.PgVersion)
		dst = append(dst, m.ProposerID[:]...)
		dst = putU64(dst, le, m.SystemID)
		dst = append(dst, m.TimelineID[:]...)
		dst = append(dst, m.TenantID[:]...)
		dst = putU32(dst, le, m.PgTimeline)
		dst = putU32(dst, le, m.WalSegSize)
	case *VoteRequest:
		dst = putU64(dst, le, TagVote)
		dst = putU64(dst, le, uint64(m.Term))
		dst = append(dst, make([]byte, 16)...)
	case *ProposerElected:
		dst = putU64(dst, le, TagElected)
		dst = putU64(dst, le, uint64(m.Term))
		dst = putU64(dst, le, uint64(m.StartStreamingAt))
		dst = appendTermHistory(dst, le, m.TermHistory)
		dst = putU64(dst, le, uint64(m.TimelineStartLSN))
	case *AppendRequest:
		if err := checkAppendRequest(m); err != nil {
			return dst, err
		}
		dst = AppendAppendRequestHeader(dst, V2, m)
		dst = append(dst, m.WAL...)
	default:
		return dst, fmt.Errorf("unknown proposer message %T", m)
	}
	return dst, nil
}

// DecodeAcceptorMessage parses one reply of an acceptor. Like the C
// walproposer it requires every byte to be consumed, except for the optional
// pageserver feedback that may follow an AppendResponse.
func DecodeAcceptorMessage(v Version, b []byte) (AcceptorMessage, error) {
	if err := checkVersion(v); err != nil {
		return nil, err
	}
	var r *reader
	var tag byte
	if v == V2 {
		r = newReader(b, binary.LittleEndian, "acceptor message")
		tag = byte(r.u64("tag"))
	} else {
		r = newReader(b, binary.BigEndian, "acceptor message")
		tag = r.u8("tag")
	}
	if r.err != nil {
		return nil, r.err
	}
	switch tag {
	case TagGreeting:
		r.what = "AcceptorGreeting"
		var m AcceptorGreeting
		if v == V2 {
			m.Term = Term(r.u64("term"))
			m.NodeID = id.NodeID(r.u64("node_id"))
		} else {
			m.NodeID = id.NodeID(r.u64("node_id"))
			m.Mconf = r.mconf()
			m.Term = Term(r.u64("term"))
		}
		r.end()
		return &m, r.err
	case TagVote:
		r.what = "VoteResponse"
		var m VoteResponse
		if v == V3 {
			m.Generation = Generation(r.u32("generation"))
		}
		m.Term = Term(r.u64("term"))
		if v == V2 {
			m.VoteGiven = r.u64("vote_given") != 0
		} else {
			m.VoteGiven = r.u8("vote_given") != 0
		}
		m.FlushLSN = lsn.LSN(r.u64("flush_lsn"))
		m.TruncateLSN = lsn.LSN(r.u64("truncate_lsn"))
		m.TermHistory = r.termHistory()
		if v == V2 {
			_ = r.u64("timeline_start_lsn")
		}
		r.end()
		return &m, r.err
	case TagAppend:
		r.what = "AppendResponse"
		var m AppendResponse
		if v == V3 {
			m.Generation = Generation(r.u32("generation"))
		}
		m.Term = Term(r.u64("term"))
		m.FlushLSN = lsn.LSN(r.u64("flush_lsn"))
		m.CommitLSN = lsn.LSN(r.u64("commit_lsn"))
		m.HSFeedback.TS = int64(r.u64("hs_feedback.ts"))
		m.HSFeedback.Xmin = r.u64("hs_feedback.xmin")
		m.HSFeedback.CatalogXmin = r.u64("hs_feedback.catalog_xmin")
		if r.err != nil {
			return nil, r.err
		}
		if rest := r.rest(); len(rest) > 0 {
			f, err := DecodePageserverFeedback(rest)
			if err != nil {
				return nil, fmt.Errorf("AppendResponse: %w", err)
			}
			m.PageserverFeedback = &f
		}
		return &m, nil
	default:
		return nil, fmt.Errorf("unknown acceptor message tag %q", tag)
	}
}
