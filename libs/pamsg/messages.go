package pamsg

import (
	"encoding/binary"
	"fmt"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
)

// Version is the protocol version chosen by START_WAL_PUSH's proto_version option.
type Version uint32

const (
	// V2 is the legacy protocol: little-endian C structs with 8-byte tags (SK §2.5).
	V2 Version = 2
	// V3 is the current protocol: big-endian, field by field (SK §2.3–§2.4).
	V3 Version = 3
)

// MaxWALPerAppend is MAX_SEND_SIZE: the most WAL one AppendRequest may carry.
const MaxWALPerAppend = 16 * 8192

// Message tags, the same in both versions (v2 widens them to a little-endian u64).
const (
	TagGreeting = 'g'
	TagVote     = 'v'
	TagElected  = 'e'
	TagAppend   = 'a'
)

// Proposer → acceptor messages.

// ProposerGreeting opens a session and names the timeline and the server.
type ProposerGreeting struct {
	TenantID   id.TenantID
	TimelineID id.TimelineID
	Mconf      Configuration // v2 carries none: generation 0, no members
	PgVersion  uint32        // PG_VERSION_NUM, e.g. 150004; 0 from --sync-safekeepers
	SystemID   uint64        // 0 from --sync-safekeepers
	WalSegSize uint32
	// ProposerID is only carried by v2 (as zeros); kept for round trips.
	ProposerID [16]byte
	// PgTimeline is only carried by v2.
	PgTimeline uint32
}

// VoteRequest asks for a vote in Term.
type VoteRequest struct {
	Generation Generation
	Term       Term
}

// ProposerElected announces the winner's term history and where the acceptor
// must continue its WAL (truncating what lies beyond).
type ProposerElected struct {
	Generation       Generation
	Term             Term
	StartStreamingAt lsn.LSN
	TermHistory      TermHistory
	// TimelineStartLSN is only carried by v2 (ignored by acceptors).
	TimelineStartLSN lsn.LSN
}

// AppendRequest carries WAL bytes [BeginLSN, EndLSN) plus the proposer's
// commit position and truncate (peer horizon) LSN. An empty one is a heartbeat.
type AppendRequest struct {
	Generation  Generation
	Term        Term
	BeginLSN    lsn.LSN
	EndLSN      lsn.LSN
	CommitLSN   lsn.LSN
	TruncateLSN lsn.LSN
	// WAL aliases the decoded buffer: copy it to keep it past the next read.
	WAL []byte
}

// ProposerMessage is one of the four proposer message types above.
type ProposerMessage interface{ proposerMessage() }

func (*ProposerGreeting) proposerMessage() {}
func (*VoteRequest) proposerMessage()      {}
func (*ProposerElected) proposerMessage()  {}
func (*AppendRequest) proposerMessage()    {}

// Acceptor → proposer messages.

// AcceptorGreeting answers a ProposerGreeting with the acceptor's term.
type AcceptorGreeting struct {
	NodeID id.NodeID
	Mconf  Configuration // v3 only
	Term   Term
}

// VoteResponse answers a VoteRequest.
type VoteResponse struct {
	Generation  Generation // v3 only
	Term        Term
	VoteGiven   bool
	FlushLSN    lsn.LSN
	TruncateLSN lsn.LSN
	TermHistory TermHistory
}

// HotStandbyFeedback is the aggregate replica feedback relayed to the proposer:
// a PostgreSQL timestamp and full (epoch<<32 | xid) transaction ids.
type HotStandbyFeedback struct {
	TS          int64
	Xmin        uint64
	CatalogXmin uint64
}

// AppendResponse reports the acceptor's durable positions.
type AppendResponse struct {
	Generation Generation // v3 only
	Term       Term
	FlushLSN   lsn.LSN
	// CommitLSN is the persisted (control file) commit LSN.
	CommitLSN          lsn.LSN
	HSFeedback         HotStandbyFeedback
	PageserverFeedback *PageserverFeedback // optional tail
}

// AcceptorMessage is one of the three acceptor message types above.
type AcceptorMessage interface{ acceptorMessage() }

func (*AcceptorGreeting) acceptorMessage() {}
func (*VoteResponse) acceptorMessage()     {}
func (*AppendResponse) acceptorMessage()   {}

func checkVersion(v Version) error {
	if v != V2 && v != V3 {
		return fmt.Errorf("unsupported proposer-acceptor protocol version %d (supported: 2, 3)", v)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Decoding proposer messages (acceptor side). Trailing bytes are tolerated, as
// Neon's acceptor does, except inside AppendRequest where the WAL length is exact.

// DecodeProposerMessage parses one CopyData payload sent by a proposer.
func DecodeProposerMessage(v Version, b []byte) (ProposerMessage, error) {
	if err := checkVersion(v); err != nil {
		return nil, err
	}
	if v == V2 {
		return decodeProposerV2(b)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("proposer message: %w: missing tag", errShort)
	}
	tag, body := b[0], b[1:]
	switch tag {
	case TagGreeting:
		r := newReader(body, binary.BigEndian, "ProposerGreeting")
		var m ProposerGreeting
		tenant, timeline := r.cstring("tenant_id"), r.cstring("timeline_id")
		m.Mconf = r.mconf()
		m.PgVersion = r.u32("pg_version")
		m.SystemID = r.u64("system_id")
		m.WalSegSize = r.u32("wal_seg_size")
		if r.err != nil {
			return nil, r.err
		}
		var err error
		if m.TenantID, err = id.Parse(tenant); err != nil {
			return nil, fmt.Errorf("ProposerGreeting: tenant_id: %w", err)
		}
		if m.TimelineID, err = id.Parse(timeline); err != nil {
			return nil, fmt.Errorf("ProposerGreeting: timeline_id: %w", err)
		}
		return &m, nil
	case TagVote:
		r := newReader(body, binary.BigEndian, "VoteRequest")
		m := VoteRequest{Generation: Generation(r.u32("generation")), Term: Term(r.u64("term"))}
		return &m, r.err
	case TagElected:
		r := newReader(body, binary.BigEndian, "ProposerElected")
		var m ProposerElected
		m.Generation = Generation(r.u32("generation"))
		m.Term = Term(r.u64("term"))
		m.StartStreamingAt = lsn.LSN(r.u64("start_streaming_at"))
		m.TermHistory = r.termHistory()
		return &m, r.err
	case TagAppend:
		r := newReader(body, binary.BigEndian, "AppendRequest")
		var m AppendRequest
		m.Generation = Generation(r.u32("generation"))
		m.Term = Term(r.u64("term"))
		r.appendBody(&m)
		return &m, r.err
	default:
		return nil, fmt.Errorf("unknown proposer-acceptor message tag %q", tag)
	}
}

func decodeProposerV2(b []byte) (ProposerMessage, error) {
	r := newReader(b, binary.LittleEndian, "proposer message")
	// The tag is a u64 only to avoid C struct padding; its low byte is the tag.
	tag := byte(r.u64("tag"))
	if r.err != nil {
		return nil, r.err
	}
	switch tag {
	case TagGreeting:
		r.what = "ProposerGreeting"
		var m ProposerGreeting
		_ = r.u32("protocol_version") // always 2; the version comes from START_WAL_PUSH
		m.PgVersion = r.u32("pg_version")
		copy(m.ProposerID[:], r.take(16, "proposer_id"))
		m.SystemID = r.u64("system_id")
		copy(m.TimelineID[:], r.take(16, "timeline_id"))
		copy(m.TenantID[:], r.take(16, "tenant_id"))
		m.PgTimeline = r.u32("pg_timeline")
		m.WalSegSize = r.u32("wal_seg_size")
		return &m, r.err
	case TagVote:
		r.what = "VoteRequest"
		m := VoteRequest{Term: Term(r.u64("term"))}
		r.take(16, "proposer_id")
		return &m, r.err
	case TagElected:
		r.what = "ProposerElected"
		var m ProposerElected
		m.Term = Term(r.u64("term"))
		m.StartStreamingAt = lsn.LSN(r.u64("start_streaming_at"))
		m.TermHistory = r.termHistory()
		m.TimelineStartLSN = lsn.LSN(r.u64("timeline_start_lsn"))
		return &m, r.err
	case TagAppend:
		r.what = "AppendRequest"
		var m AppendRequest
		m.Term = Term(r.u64("term"))
		_ = r.u64("epoch_start_lsn") // unused by the protocol
		r.appendBodyV2(&m)
		return &m, r.err
	default:
		return nil, fmt.Errorf("unknown proposer-acceptor message tag %q", tag)
	}
}

// appendBody reads the LSNs and the WAL of a v3 AppendRequest.
func (r *reader) appendBody(m *AppendRequest) {
	m.BeginLSN = lsn.LSN(r.u64("begin_lsn"))
	m.EndLSN = lsn.LSN(r.u64("end_lsn"))
	m.CommitLSN = lsn.LSN(r.u64("commit_lsn"))
	m.TruncateLSN = lsn.LSN(r.u64("truncate_lsn"))
	r.appendWAL(m)
}

func (r *reader) appendBodyV2(m *AppendRequest) {
	m.BeginLSN = lsn.LSN(r.u64("begin_lsn"))
	m.EndLSN = lsn.LSN(r.u64("end_lsn"))
	m.CommitLSN = lsn.LSN(r.u64("commit_lsn"))
	m.TruncateLSN = lsn.LSN(r.u64("truncate_lsn"))
	r.take(16, "proposer_id")
	r.appendWAL(m)
}

func (r *reader) appendWAL(m *AppendRequest) {
	if r.err != nil {
		return
	}
	if m.EndLSN < m.BeginLSN {
		r.fail("end_lsn %v is before begin_lsn %v", m.EndLSN, m.BeginLSN)
		return
	}
	n := uint64(m.EndLSN - m.BeginLSN)
	if n > MaxWALPerAppend {
		r.fail("carries %d bytes of WAL, more than the maximum %d", n, MaxWALPerAppend)
		return
	}
	m.WAL = r.take(int(n), "WAL")
}

func (r *reader) mconf() Configuration {
	c := Configuration{Generation: Generation(r.u32("generation"))}
	c.Members = r.members("members")
	if r.err == nil && c.Generation != 0 && len(c.Members) == 0 {
		r.fail("generation %d with an empty member set", c.Generation)
	}
	if nm := r.members("new_members"); len(nm) > 0 {
		c.NewMembers = nm
	}
	if r.err == nil {
		if err := c.Validate(); err != nil {
			r.fail("%v", err)
		}
	}
	return c
}

func (r *reader) members(field string) []SafekeeperID {
	// node_id u64 + at least the host's NUL + port u16.
	n := r.count(field+" count", 11)
	if n == 0 {
		return nil
	}
	out := make([]SafekeeperID, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var m SafekeeperID
		m.ID = id.NodeID(r.u64(field + " node_id"))
		m.Host = r.cstring(field + " host")
		m.PgPort = r.u16(field + " pg_port")
		out = append(out, m)
	}
	return out
}

func (r *reader) termHistory() TermHistory {
	n := r.count("term history length", 16)
	if r.err != nil {
		return nil
	}
	h := make(TermHistory, n)
	for i := range h {
		h[i].Term = Term(r.u64("term history term"))
		h[i].LSN = lsn.LSN(r.u64("term history lsn"))
	}
	return h
}

// ---------------------------------------------------------------------------------------------
// Encoding acceptor messages (acceptor side): exact bytes, nothing extra (SK §2.1).

// AppendAcceptorMessage appends the encoding of m to dst.
func AppendAcceptorMessage(dst []byte, v Version, m AcceptorMessage) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v == V2 {
		return appendAcceptorV2(dst, m)
	}
	be := binary.BigEndian
	switch m := m.(type) {
	case *AcceptorGreeting:
		dst = append(dst, TagGreeting)
		dst = putU64(dst, be, uint64(m.NodeID))
		dst = appendMconf(dst, m.Mconf)
		dst = putU64(dst, be, uint64(m.Term))
	case *VoteResponse:
		dst = append(dst, TagVote)
		dst = putU32(dst, be, uint32(m.Generation))
		dst = putU64(dst, be, uint64(m.Term))
		dst = append(dst, boolByte(m.VoteGiven))
		dst = putU64(dst, be, uint64(m.FlushLSN))
		dst = putU64(dst, be, uint64(m.TruncateLSN))
		dst = appendTermHistory(dst, be, m.TermHistory)
	case *AppendResponse:
		dst = append(dst, TagAppend)
		dst = putU32(dst, be, uint32(m.Generation))
		dst = putU64(dst, be, uint64(m.Term))
		dst = putU64(dst, be, uint64(m.FlushLSN))
		dst = putU64(dst, be, uint64(m.CommitLSN))
		dst = appendHSFeedback(dst, be, m.HSFeedback)
		if m.PageserverFeedback != nil {
			dst = m.PageserverFeedback.Append(dst)
		}
	default:
		return dst, fmt.Errorf("unknown acceptor message %T", m)
	}
	return dst, nil
}

func appendAcceptorV2(dst []byte, m AcceptorMessage) ([]byte, error) {
	le := binary.LittleEndian
	switch m := m.(type) {
	case *AcceptorGreeting:
		// v2 had no mconf and put the term before the node id.
		dst = putU64(dst, le, TagGreeting)
		dst = putU64(dst, le, uint64(m.Term))
		dst = putU64(dst, le, uint64(m.NodeID))
	case *VoteResponse:
		dst = putU64(dst, le, TagVote)
		dst = putU64(dst, le, uint64(m.Term))
		dst = putU64(dst, le, uint64(boolByte(m.VoteGiven)))
		dst = putU64(dst, le, uint64(m.FlushLSN))
		dst = putU64(dst, le, uint64(m.TruncateLSN))
		dst = appendTermHistory(dst, le, m.TermHistory)
		dst = putU64(dst, le, 0) // formerly timeline_start_lsn
	case *AppendResponse:
		dst = putU64(dst, le, TagAppend)
		dst = putU64(dst, le, uint64(m.Term))
		dst = putU64(dst, le, uint64(m.FlushLSN))
		dst = putU64(dst, le, uint64(m.CommitLSN))
		dst = appendHSFeedback(dst, le, m.HSFeedback)
		if m.PageserverFeedback != nil {
			dst = m.PageserverFeedback.Append(dst) // big-endian in v2 too
		}
	default:
		return dst, fmt.Errorf("unknown acceptor message %T", m)
	}
	return dst, nil
}

func appendHSFeedback(dst []byte, o binary.AppendByteOrder, f HotStandbyFeedback) []byte {
	dst = putU64(dst, o, uint64(f.TS))
	dst = putU64(dst, o, f.Xmin)
	return putU64(dst, o, f.CatalogXmin)
}

func appendMconf(dst []byte, c Configuration) []byte {
	be := binary.BigEndian
	dst = putU32(dst, be, uint32(c.Generation))
	for _, set := range [][]SafekeeperID{c.Members, c.NewMembers} {
		dst = putU32(dst, be, uint32(len(set)))
		for _, m := range set {
			dst = putU64(dst, be, uint64(m.ID))
			dst = putCString(dst, m.Host)
			dst = putU16(dst, be, m.PgPort)
		}
	}
	return dst
}

func appendTermHistory(dst []byte, o binary.AppendByteOrder, h TermHistory) []byte {
	dst = putU32(dst, o, uint32(len(h)))
	for _, e := range h {
		dst = putU64(dst, o, uint64(e.Term))
		dst = putU64(dst, o, uint64(e.LSN))
	}
	return dst
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
