// Package acceptor is the safekeeper's half of the proposer–acceptor
// consensus (SK §3) as a pure state machine: proposer messages go in, replies
// come out, and the only side effects go through two narrow interfaces, the
// WAL store and the control-file store. Sockets, timers and goroutines live
// elsewhere (the connection loop in package walservice), which is what lets
// the tests drive it message by message and "reboot" it at will.
//
// Invariants (SK §3.12), checked by the tests:
//   - a vote is granted only for a term strictly higher than any seen, and the
//     new term is durable before the reply leaves;
//   - commit_lsn never decreases and never exceeds flush_lsn;
//   - WAL is never truncated below commit_lsn;
//   - flush_lsn reported in a reply is durable and a record boundary;
//   - the commit_lsn in AppendResponses is the persisted one.
//
// An Acceptor is not safe for concurrent use; the timeline serializes calls.
package acceptor

import (
	"errors"
	"fmt"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/safekeeper/control"
)

// WAL is the WAL store the acceptor drives (SK §4.3–§4.4).
type WAL interface {
	// WriteLSN is the end of the bytes written so far (durable or not).
	WriteLSN() lsn.LSN
	// FlushRecordLSN is the end of the last complete record that is durable.
	FlushRecordLSN() lsn.LSN
	// Write appends data at start, which must equal WriteLSN unless nothing was written yet.
	Write(start lsn.LSN, data []byte) error
	// Flush makes everything written durable.
	Flush() error
	// Truncate removes everything from end on, durably.
	Truncate(end lsn.LSN) error
	// InitializeFirstSegment lays down the synthetic headers of the segment
	// holding start, so that WAL tools can parse it (SK §4.4.4).
	InitializeFirstSegment(start lsn.LSN) error
}

// ControlStore makes a state durable (SK §4.1 write procedure). On error the
// state must be treated as not persisted.
type ControlStore interface {
	Persist(s *control.State) error
}

// ErrFatal marks broken invariants: the connection must be dropped and the
// condition investigated, never papered over.
var ErrFatal = errors.New("safekeeper invariant violated")

// Acceptor is the consensus state of one timeline on one safekeeper.
type Acceptor struct {
	node id.NodeID
	wal  WAL
	ctrl ControlStore

	// persisted is exactly what the control file holds.
	persisted *control.State
	// In-memory LSNs: updated eagerly, persisted lazily (SK §3.1).
	commitLSN           lsn.LSN
	backupLSN           lsn.LSN
	peerHorizonLSN      lsn.LSN
	remoteConsistentLSN lsn.LSN
	// termStartLSN is where the current elected term begins; 0 after a restart.
	termStartLSN lsn.LSN
	lastPersist  time.Time
}

// New builds an acceptor from the persisted state of a timeline and its WAL
// store (already positioned at the end of its WAL).
func New(node id.NodeID, state *control.State, wal WAL, ctrl ControlStore) *Acceptor {
	return &Acceptor{
		node:                node,
		wal:                 wal,
		ctrl:                ctrl,
		persisted:           state.Clone(),
		commitLSN:           state.CommitLSN,
		backupLSN:           state.BackupLSN,
		peerHorizonLSN:      state.PeerHorizonLSN,
		remoteConsistentLSN: state.RemoteConsistentLSN,
	}
}

// State returns a copy of the persisted state.
func (a *Acceptor) State() *control.State { return a.persisted.Clone() }

// Persisted returns the persisted state without copying it. The caller must
// not modify it; it stays valid (and unchanged) after later changes, which
// replace the state instead of editing it.
func (a *Acceptor) Persisted() *control.State { return a.persisted }

// Term is the current term.
func (a *Acceptor) Term() pamsg.Term { return a.persisted.AcceptorState.Term }

// FlushLSN is flush_lsn as consensus sees it: the durable record end, but
// never below the timeline start, so commit_lsn ≤ flush_lsn holds before any
// WAL exists (SK §3.1).
func (a *Acceptor) FlushLSN() lsn.LSN {
	return max(a.wal.FlushRecordLSN(), a.persisted.TimelineStartLSN)
}

// LastLogTerm is the term of the last WAL record this acceptor holds.
func (a *Acceptor) LastLogTerm() pamsg.Term {
	return a.persisted.AcceptorState.TermHistory.UpTo(a.FlushLSN()).LastTerm()
}

// CommitLSN is the in-memory commit LSN (ahead of or equal to the persisted one).
func (a *Acceptor) CommitLSN() lsn.LSN { return a.commitLSN }

// PersistedCommitLSN is the commit LSN in the control file.
func (a *Acceptor) PersistedCommitLSN() lsn.LSN { return a.persisted.CommitLSN }

// PeerHorizonLSN is the in-memory peer horizon ("truncate_lsn").
func (a *Acceptor) PeerHorizonLSN() lsn.LSN { return a.peerHorizonLSN }

// BackupLSN is the in-memory backup LSN.
func (a *Acceptor) BackupLSN() lsn.LSN { return a.backupLSN }

// RemoteConsistentLSN is the in-memory remote-consistent LSN reported by pageservers.
func (a *Acceptor) RemoteConsistentLSN() lsn.LSN { return a.remoteConsistentLSN }

// TermStartLSN is where the current elected term started (0 until an election is seen).
func (a *Acceptor) TermStartLSN() lsn.LSN { return a.termStartLSN }

// change applies f to a copy of the persisted state carrying the in-memory
// LSNs, persists it (unless nothing changed) and adopts it. This is Neon's
// start_change/finish_change pattern: the in-memory copy only moves once the
// disk has the new state.
func (a *Acceptor) change(f func(s *control.State)) error {
	s := a.persisted.Clone()
	s.CommitLSN = a.commitLSN
	s.BackupLSN = a.backupLSN
	s.PeerHorizonLSN = a.peerHorizonLSN
	s.RemoteConsistentLSN = a.remoteConsistentLSN
	f(s)
	if s.Equal(a.persisted) {
		return nil
	}
	if err := a.ctrl.Persist(s); err != nil {
		return fmt.Errorf("persist control file: %w", err)
	}
	a.persisted = s
	a.commitLSN = max(a.commitLSN, s.CommitLSN)
	a.backupLSN = max(a.backupLSN, s.BackupLSN)
	a.peerHorizonLSN = max(a.peerHorizonLSN, s.PeerHorizonLSN)
	a.remoteConsistentLSN = max(a.remoteConsistentLSN, s.RemoteConsistentLSN)
	a.lastPersist = time.Now()
	return nil
}

// Persist writes the in-memory LSNs to the control file now.
func (a *Acceptor) Persist() error { return a.change(func(*control.State) {}) }

// MaybePersist persists lagging in-memory LSNs when the last write is older
// than interval or the commit LSN ran a segment or more ahead of the
// persisted one (SK §3.7), which bounds how much WAL a restart must scan.
func (a *Acceptor) MaybePersist(now time.Time, interval time.Duration) error {
	p := a.persisted
	if a.commitLSN == p.CommitLSN && a.backupLSN == p.BackupLSN &&
		a.peerHorizonLSN == p.PeerHorizonLSN && a.remoteConsistentLSN == p.RemoteConsistentLSN {
		return nil
	}
	seg := uint64(p.Server.WalSegSize)
	if seg == 0 {
		seg = lsn.DefaultSegmentSize
	}
	if now.Sub(a.lastPersist) >= interval || a.commitLSN.Sub(p.CommitLSN) >= seg {
		return a.Persist()
	}
	return nil
}

// Process handles one proposer message the way the network path does, with
// AppendRequests flushed immediately. It returns nil when no reply is due.
func (a *Acceptor) Process(m pamsg.ProposerMessage) (pamsg.AcceptorMessage, error) {
	switch m := m.(type) {
	case *pamsg.ProposerGreeting:
		return nilIfNil(a.Greeting(m))
	case *pamsg.VoteRequest:
		return nilIfNil(a.Vote(m))
	case *pamsg.ProposerElected:
		return nil, a.Elected(m)
	case *pamsg.AppendRequest:
		return nilIfNil(a.Append(m, true))
	default:
		return nil, fmt.Errorf("unknown proposer message %T", m)
	}
}

// nilIfNil keeps a typed nil pointer from becoming a non-nil interface.
func nilIfNil[T any](r *T, err error) (pamsg.AcceptorMessage, error) {
	if r == nil {
		return nil, err
	}
	return any(r).(pamsg.AcceptorMessage), err
}

// Greeting checks that the proposer speaks about this timeline and server
// (SK §3.2) and answers with the current term.
func (a *Acceptor) Greeting(m *pamsg.ProposerGreeting) (*pamsg.AcceptorGreeting, error) {
	s := a.persisted
	if m.TenantID != s.Tenant || m.TimelineID != s.Timeline {
		return nil, fmt.Errorf("greeting for timeline %s/%s reached timeline %s/%s", m.TenantID, m.TimelineID, s.Tenant, s.Timeline)
	}
	if err := CheckPgVersion(m.PgVersion); err != nil {
		return nil, err
	}
	if m.PgVersion != 0 && s.Server.PgVersion != 0 && m.PgVersion/10000 != s.Server.PgVersion/10000 {
		return nil, fmt.Errorf("proposer runs PostgreSQL %d but timeline %s holds WAL of PostgreSQL %d",
			m.PgVersion/10000, s.Timeline, s.Server.PgVersion/10000)
	}
	if m.WalSegSize != s.Server.WalSegSize {
		return nil, fmt.Errorf("proposer uses WAL segments of %d bytes but timeline %s has %d", m.WalSegSize, s.Timeline, s.Server.WalSegSize)
	}
	// Neon silently adopts a different system id. Two clusters writing one
	// timeline is a disaster, so a known, different system id is refused.
	if m.SystemID != 0 && s.Server.SystemID != 0 && m.SystemID != s.Server.SystemID {
		return nil, fmt.Errorf("proposer's database system identifier %d differs from timeline %s's %d: refusing WAL from another cluster",
			m.SystemID, s.Timeline, s.Server.SystemID)
	}
	if m.Mconf.Generation > s.Mconf.Generation && !m.Mconf.Contains(a.node) {
		return nil, fmt.Errorf("refused to switch into membership configuration generation %d: safekeeper %d is not a member", m.Mconf.Generation, a.node)
	}
	err := a.change(func(n *control.State) {
		if m.SystemID != 0 && n.Server.SystemID == 0 {
			n.Server.SystemID = m.SystemID
			if m.PgVersion != 0 {
				n.Server.PgVersion = m.PgVersion
			}
		}
		if m.Mconf.Generation > n.Mconf.Generation {
			n.Mconf = m.Mconf.Clone()
		}
	})
	if err != nil {
		return nil, err
	}
	return &pamsg.AcceptorGreeting{NodeID: a.node, Mconf: a.persisted.Mconf.Clone(), Term: a.Term()}, nil
}

// CheckPgVersion accepts 0 (unknown, from --sync-safekeepers) and PostgreSQL 14–17.
func CheckPgVersion(v uint32) error {
	if v == 0 || (v >= 140000 && v < 180000) {
		return nil
	}
	return fmt.Errorf("unsupported PostgreSQL version number %d (want 14xxxx to 17xxxx)", v)
}

func (a *Acceptor) checkGeneration(g pamsg.Generation, what string) error {
	if g != a.persisted.Mconf.Generation {
		return fmt.Errorf("%s with membership generation %d, but this safekeeper is in generation %d", what, g, a.persisted.Mconf.Generation)
	}
	return nil
}

// Vote grants a vote for a strictly higher term, durably, before replying (SK §3.3).
func (a *Acceptor) Vote(m *pamsg.VoteRequest) (*pamsg.VoteResponse, error) {
	if err := a.checkGeneration(m.Generation, "VoteRequest"); err != nil {
		return nil, err
	}
	// WAL received on an earlier connection must be covered by the flush LSN
	// we report, or the new proposer could overlap or truncate it unknowingly.
	if err := a.wal.Flush(); err != nil {
		return nil, fmt.Errorf("flush WAL before voting: %w", err)
	}
	flush := a.FlushLSN()
	resp := &pamsg.VoteResponse{
		Generation:  a.persisted.Mconf.Generation,
		Term:        a.Term(),
		FlushLSN:    flush,
		TruncateLSN: a.peerHorizonLSN,
		TermHistory: a.persisted.AcceptorState.TermHistory.UpTo(flush).Clone(),
	}
	if a.Term() < m.Term {
		if err := a.change(func(s *control.State) { s.AcceptorState.Term = m.Term }); err != nil {
			return nil, fmt.Errorf("persist vote for term %d: %w", m.Term, err)
		}
		resp.Term = m.Term
		resp.VoteGiven = true
	}
	return resp, nil
}

// Elected adopts the elected proposer's term history and truncates the WAL
// at the highest common point (SK §3.4). It never replies.
func (a *Acceptor) Elected(m *pamsg.ProposerElected) error {
	if err := a.checkGeneration(m.Generation, "ProposerElected"); err != nil {
		return err
	}
	if len(m.TermHistory) == 0 {
		return fmt.Errorf("ProposerElected for term %d carries an empty term history", m.Term)
	}
	if err := m.TermHistory.Validate(); err != nil {
		return fmt.Errorf("ProposerElected for term %d: %w", m.Term, err)
	}
	if last := m.TermHistory.LastTerm(); last != m.Term {
		return fmt.Errorf("ProposerElected for term %d ends its history with term %d", m.Term, last)
	}
	if a.Term() > m.Term {
		// A stale proposer; the next AppendResponse tells it the higher term.
		return nil
	}
	if a.Term() < m.Term {
		if err := a.change(func(s *control.State) { s.AcceptorState.Term = m.Term }); err != nil {
			return err
		}
	}
	flush := a.FlushLSN()
	skHistory := a.persisted.AcceptorState.TermHistory.UpTo(flush)
	hcp, ok, err := pamsg.HighestCommonPoint(m.TermHistory, skHistory, flush)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFatal, err)
	}
	if !ok {
		hcp = m.TermHistory[0]
	}
	if hcp.LSN != m.StartStreamingAt {
		return fmt.Errorf("unexpected truncation point: proposer says %v, common point with our WAL is %v (term %d); a newer connection probably wrote WAL, reconnect",
			m.StartStreamingAt, hcp.LSN, hcp.Term)
	}
	if m.StartStreamingAt < a.commitLSN {
		return fmt.Errorf("%w: proposer of term %d would truncate WAL at %v, below commit_lsn %v", ErrFatal, m.Term, m.StartStreamingAt, a.commitLSN)
	}
	if a.wal.FlushRecordLSN() == 0 {
		if err := a.wal.InitializeFirstSegment(m.StartStreamingAt); err != nil {
			return fmt.Errorf("initialize first segment at %v: %w", m.StartStreamingAt, err)
		}
	}
	if err := a.wal.Truncate(m.StartStreamingAt); err != nil {
		return fmt.Errorf("truncate WAL at %v: %w", m.StartStreamingAt, err)
	}
	err = a.change(func(s *control.State) {
		if s.TimelineStartLSN == 0 {
			s.TimelineStartLSN = m.TermHistory[0].LSN
		}
		if s.PeerHorizonLSN == 0 {
			s.PeerHorizonLSN = s.TimelineStartLSN
		}
		if s.LocalStartLSN == 0 {
			s.LocalStartLSN = m.StartStreamingAt
		}
		s.CommitLSN = max(s.CommitLSN, s.TimelineStartLSN)
		s.BackupLSN = max(s.BackupLSN, s.TimelineStartLSN)
		s.RemoteConsistentLSN = max(s.RemoteConsistentLSN, s.TimelineStartLSN)
		s.AcceptorState.TermHistory = m.TermHistory.Clone()
	})
	if err != nil {
		return err
	}
	a.termStartLSN = m.TermHistory[len(m.TermHistory)-1].LSN
	return nil
}

// Append writes the WAL an AppendRequest carries (SK §3.5). With flush false
// (the NoFlushAppendRequest of the network path) nothing is fsync'd and a
// reply is returned only if flush_lsn moved, which happens when a segment
// was completed. With flush true the WAL is durable before the reply.
func (a *Acceptor) Append(m *pamsg.AppendRequest, flush bool) (*pamsg.AppendResponse, error) {
	if err := a.checkGeneration(m.Generation, "AppendRequest"); err != nil {
		return nil, err
	}
	if a.Term() < m.Term {
		return nil, fmt.Errorf("got AppendRequest of term %d before ProposerElected (current term %d)", m.Term, a.Term())
	}
	if a.Term() > m.Term {
		return &pamsg.AppendResponse{Generation: a.persisted.Mconf.Generation, Term: a.Term()}, nil
	}
	// Same term: this proposer must have been elected here, or its WAL would
	// land on top of a tail the election has not reconciled yet.
	if a.persisted.AcceptorState.TermHistory.LastTerm() != m.Term {
		return nil, fmt.Errorf("got AppendRequest of term %d before ProposerElected", m.Term)
	}
	flushBefore := a.FlushLSN()
	if len(m.WAL) > 0 {
		if err := a.wal.Write(m.BeginLSN, m.WAL); err != nil {
			return nil, err
		}
	}
	if flush {
		if err := a.wal.Flush(); err != nil {
			return nil, fmt.Errorf("flush WAL: %w", err)
		}
	}
	if m.CommitLSN != 0 {
		if err := a.updateCommitLSN(m.CommitLSN); err != nil {
			return nil, err
		}
	}
	a.peerHorizonLSN = max(a.peerHorizonLSN, m.TruncateLSN)
	if !flush && a.FlushLSN() == flushBefore {
		return nil, nil
	}
	return a.appendResponse(), nil
}

// FlushWAL makes everything written durable and reports it (SK §2.6).
func (a *Acceptor) FlushWAL() (*pamsg.AppendResponse, error) {
	if err := a.wal.Flush(); err != nil {
		return nil, fmt.Errorf("flush WAL: %w", err)
	}
	return a.appendResponse(), nil
}

// FlushedResponse is the AppendResponse to send after WAL was made durable
// outside FlushWAL (an asynchronous flush the caller completed).
func (a *Acceptor) FlushedResponse() *pamsg.AppendResponse { return a.appendResponse() }

func (a *Acceptor) appendResponse() *pamsg.AppendResponse {
	return &pamsg.AppendResponse{
		Generation: a.persisted.Mconf.Generation,
		Term:       a.Term(),
		FlushLSN:   a.FlushLSN(),
		CommitLSN:  a.persisted.CommitLSN,
	}
}

// UpdateCommitLSN advances the commit LSN from a candidate: the leader's
// commit LSN, or a peer's with the same last log term (SK §3.7).
func (a *Acceptor) UpdateCommitLSN(candidate lsn.LSN) error { return a.updateCommitLSN(candidate) }

func (a *Acceptor) updateCommitLSN(candidate lsn.LSN) error {
	candidate = max(candidate, a.commitLSN)
	// Never claim committed WAL we do not hold.
	next := min(candidate, a.FlushLSN())
	if next < a.commitLSN {
		return fmt.Errorf("%w: commit_lsn would go back from %v to %v (flush_lsn %v)", ErrFatal, a.commitLSN, next, a.FlushLSN())
	}
	a.commitLSN = next
	// --sync-safekeepers waits for a persisted commit_lsn at or past the
	// term start, so crossing it is persisted at once.
	if a.termStartLSN != 0 && next >= a.termStartLSN && a.persisted.CommitLSN < a.termStartLSN {
		return a.Persist()
	}
	return nil
}

// AdvanceRemoteConsistentLSN records a pageserver's remote-consistent LSN.
func (a *Acceptor) AdvanceRemoteConsistentLSN(l lsn.LSN) {
	a.remoteConsistentLSN = max(a.remoteConsistentLSN, l)
}

// AdvanceBackupLSN records that WAL up to l is in remote storage.
func (a *Acceptor) AdvanceBackupLSN(l lsn.LSN) { a.backupLSN = max(a.backupLSN, l) }

// AdvancePeerHorizonLSN records a peer horizon learned from peers.
func (a *Acceptor) AdvancePeerHorizonLSN(l lsn.LSN) { a.peerHorizonLSN = max(a.peerHorizonLSN, l) }
