// Package walproposer is the proposer side of the safekeeper consensus
// (SK §3.9): it campaigns for a term, reconciles the safekeepers' WAL at the
// highest common point, streams WAL to them and computes the commit LSN — the
// position a majority holds durably in the current term.
//
// The consensus rules live in State, a pure state machine in the style of
// etcd's raft: events go in (a safekeeper greeted, voted, acknowledged,
// disconnected) and actions come out (send this vote request, send this
// ProposerElected and stream from here, the commit LSN moved, give up).
// Proposer (proposer.go) is the I/O around it: connections, reconnects,
// streaming and heartbeats.
package walproposer

import (
	"errors"
	"fmt"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// ErrHigherTerm means another proposer holds a higher term: this one must stop.
var ErrHigherTerm = errors.New("another proposer holds a higher term")

// Phase is where the proposer is in its term.
type Phase int

const (
	// Greeting: waiting for a majority of greetings.
	Greeting Phase = iota
	// Campaigning: vote requests sent, waiting for a majority of votes.
	Campaigning
	// Elected: the term is ours; safekeepers are being reconciled and streamed to.
	Elected
)

func (p Phase) String() string {
	return [...]string{"greeting", "campaigning", "elected"}[p]
}

// peerPhase is where one safekeeper connection is.
type peerPhase int

const (
	peerOffline   peerPhase = iota
	peerGreeted             // greeting received
	peerVoting              // vote request sent
	peerVoted               // vote response received
	peerStreaming           // ProposerElected sent
)

type peer struct {
	phase    peerPhase
	greeting pamsg.AcceptorGreeting
	vote     pamsg.VoteResponse
	// flush is the last flush LSN this safekeeper acknowledged in our term
	// on its current connection.
	flush lsn.LSN
	// lastFlush is the last flush LSN it acknowledged in our term on any
	// connection; 0 if it never did. It survives disconnects, so a lagging
	// safekeeper that is down keeps holding the peer horizon back.
	lastFlush lsn.LSN
	commit    lsn.LSN // its persisted commit LSN, from AppendResponses
}

// Action is something the I/O layer must do.
type Action interface{ action() }

// SendVoteRequest: send Msg to safekeeper Peer.
type SendVoteRequest struct {
	Peer int
	Msg  pamsg.VoteRequest
}

// SendElected: send Msg to safekeeper Peer, then stream WAL to it from
// Msg.StartStreamingAt.
type SendElected struct {
	Peer int
	Msg  pamsg.ProposerElected
}

// TermElected reports that the election was won: WAL continues at
// TermStartLSN and the donor holds everything before it.
type TermElected struct {
	Term         pamsg.Term
	TermStartLSN lsn.LSN
	History      pamsg.TermHistory
	// Donor is the safekeeper with the most advanced WAL.
	Donor int
	// TruncateLSN is the highest peer horizon the voters reported.
	TruncateLSN lsn.LSN
}

// CommitLSNAdvanced: a majority now holds WAL up to LSN in this term.
type CommitLSNAdvanced struct{ LSN lsn.LSN }

// Fatal: the proposer must stop (another proposer won, or a safekeeper
// belongs to another cluster).
type Fatal struct{ Err error }

func (SendVoteRequest) action()   {}
func (SendElected) action()       {}
func (TermElected) action()       {}
func (CommitLSNAdvanced) action() {}
func (Fatal) action()             {}

// State is the proposer's consensus state over n safekeepers.
type State struct {
	peers      []peer
	quorum     int
	generation pamsg.Generation
	// startLSN is where WAL begins when no safekeeper has any: the
	// basebackup LSN of the compute (SK §3.9 step 4).
	startLSN lsn.LSN

	phase        Phase
	term         pamsg.Term
	history      pamsg.TermHistory
	termStartLSN lsn.LSN
	donor        int
	truncateLSN  lsn.LSN
	commitLSN    lsn.LSN
	fatal        error
}

// NewState returns the state of a proposer over n safekeepers whose WAL, if
// brand new, starts at startLSN.
func NewState(n int, startLSN lsn.LSN) *State {
	return &State{peers: make([]peer, n), quorum: n/2 + 1, startLSN: startLSN}
}

// Phase is the current phase.
func (s *State) Phase() Phase { return s.phase }

// Term is the term being campaigned for or held (0 before campaigning).
func (s *State) Term() pamsg.Term { return s.term }

// TermStartLSN is where the elected term's WAL begins.
func (s *State) TermStartLSN() lsn.LSN { return s.termStartLSN }

// History is the elected term history.
func (s *State) History() pamsg.TermHistory { return s.history }

// CommitLSN is the quorum-acknowledged LSN in this term.
func (s *State) CommitLSN() lsn.LSN { return s.commitLSN }

// TruncateLSN is the peer horizon sent with AppendRequests.
func (s *State) TruncateLSN() lsn.LSN { return s.truncateLSN }

// Quorum is the number of safekeepers that make a majority.
func (s *State) Quorum() int { return s.quorum }

// PeerFlushLSN is what safekeeper i last acknowledged in this term.
func (s *State) PeerFlushLSN(i int) lsn.LSN { return s.peers[i].flush }

// PeerCommitLSN is safekeeper i's persisted commit LSN as last reported.
func (s *State) PeerCommitLSN(i int) lsn.LSN { return s.peers[i].commit }

// Streaming reports whether safekeeper i was sent ProposerElected on its current connection.
func (s *State) Streaming(i int) bool { return s.peers[i].phase == peerStreaming }

// Err is the fatal error, if any.
func (s *State) Err() error { return s.fatal }

func (s *State) fail(err error) []Action {
	if s.fatal == nil {
		s.fatal = err
	}
	return []Action{Fatal{Err: s.fatal}}
}

func (s *State) count(min peerPhase) int {
	n := 0
	for _, p := range s.peers {
		if p.phase >= min {
			n++
		}
	}
	return n
}

// Greeted handles safekeeper i's AcceptorGreeting.
func (s *State) Greeted(i int, g pamsg.AcceptorGreeting) []Action {
	if s.fatal != nil {
		return nil
	}
	p := &s.peers[i]
	p.greeting, p.phase, p.flush = g, peerGreeted, 0
	switch s.phase {
	case Greeting:
		if s.count(peerGreeted) < s.quorum {
			return nil
		}
		// Campaign one term above every term a majority has seen.
		var maxTerm pamsg.Term
		for _, q := range s.peers {
			if q.phase >= peerGreeted {
				maxTerm = max(maxTerm, q.greeting.Term)
			}
		}
		s.term = maxTerm + 1
		s.phase = Campaigning
		var out []Action
		for j := range s.peers {
			if s.peers[j].phase == peerGreeted {
				s.peers[j].phase = peerVoting
				out = append(out, SendVoteRequest{Peer: j, Msg: pamsg.VoteRequest{Generation: s.generation, Term: s.term}})
			}
		}
		return out
	default:
		if g.Term > s.term {
			return s.fail(fmt.Errorf("%w: safekeeper %d is in term %d, above our term %d", ErrHigherTerm, g.NodeID, g.Term, s.term))
		}
		p.phase = peerVoting
		return []Action{SendVoteRequest{Peer: i, Msg: pamsg.VoteRequest{Generation: s.generation, Term: s.term}}}
	}
}

// Voted handles safekeeper i's VoteResponse.
func (s *State) Voted(i int, v pamsg.VoteResponse) []Action {
	if s.fatal != nil {
		return nil
	}
	p := &s.peers[i]
	if p.phase != peerVoting {
		return s.fail(fmt.Errorf("safekeeper %d sent a VoteResponse it was not asked for", i))
	}
	if v.Term > s.term {
		return s.fail(fmt.Errorf("%w: safekeeper %d answered our vote request for term %d with term %d", ErrHigherTerm, p.greeting.NodeID, s.term, v.Term))
	}
	if !v.VoteGiven && s.phase == Campaigning {
		return s.fail(fmt.Errorf("%w: safekeeper %d refused its vote for term %d", ErrHigherTerm, p.greeting.NodeID, s.term))
	}
	p.vote, p.phase = v, peerVoted
	switch s.phase {
	case Campaigning:
		if s.count(peerVoted) < s.quorum {
			return nil
		}
		return s.elect()
	case Elected:
		if len(s.history) == 0 {
			return nil // an empty timeline: nothing to send
		}
		return s.sendElected(i)
	}
	return nil
}

// elect runs when a majority voted: pick the most advanced voter as donor,
// start the term at its end of WAL, and reconcile every voter.
func (s *State) elect() []Action {
	donor := -1
	allEmpty := true
	for j, q := range s.peers {
		if q.phase != peerVoted {
			continue
		}
		if q.vote.FlushLSN != 0 {
			allEmpty = false
		}
		s.truncateLSN = max(s.truncateLSN, q.vote.TruncateLSN)
		if donor < 0 || moreAdvanced(q.vote, s.peers[donor].vote) {
			donor = j
		}
	}
	s.donor = donor
	d := s.peers[donor].vote
	if allEmpty && s.startLSN == 0 {
		// No WAL anywhere and no start point: nothing to reconcile. Only
		// --sync-safekeepers can use this outcome (its answer is 0/0).
		s.phase = Elected
		return []Action{TermElected{Term: s.term, Donor: donor}}
	}
	if allEmpty {
		// A brand-new timeline starts at the compute's basebackup LSN.
		s.termStartLSN, s.truncateLSN = s.startLSN, s.startLSN
		s.history = pamsg.TermHistory{{Term: s.term, LSN: s.startLSN}}
	} else {
		s.termStartLSN = d.FlushLSN
		s.history = append(d.TermHistory.Clone(), pamsg.TermSwitch{Term: s.term, LSN: s.termStartLSN})
	}
	if err := s.history.Validate(); err != nil {
		return s.fail(fmt.Errorf("donor safekeeper %d: %w", s.peers[donor].greeting.NodeID, err))
	}
	s.phase = Elected
	out := []Action{TermElected{Term: s.term, TermStartLSN: s.termStartLSN, History: s.history.Clone(), Donor: donor, TruncateLSN: s.truncateLSN}}
	for j := range s.peers {
		if s.peers[j].phase == peerVoted {
			out = append(out, s.sendElected(j)...)
		}
	}
	return out
}

// moreAdvanced orders voters by (last log term, flush LSN).
func moreAdvanced(a, b pamsg.VoteResponse) bool {
	at, bt := a.TermHistory.LastTerm(), b.TermHistory.LastTerm()
	if at != bt {
		return at > bt
	}
	return a.FlushLSN > b.FlushLSN
}

func (s *State) sendElected(i int) []Action {
	p := &s.peers[i]
	v := p.vote
	start, err := pamsg.StartStreamingAt(s.history, v.TermHistory.UpTo(v.FlushLSN), v.FlushLSN)
	if err != nil {
		return s.fail(fmt.Errorf("safekeeper %d: %w", p.greeting.NodeID, err))
	}
	p.phase = peerStreaming
	p.flush = 0
	return []Action{SendElected{Peer: i, Msg: pamsg.ProposerElected{
		Generation: s.generation, Term: s.term, StartStreamingAt: start,
		TermHistory: s.history.Clone(), TimelineStartLSN: s.history[0].LSN,
	}}}
}

// Acked handles safekeeper i's AppendResponse.
func (s *State) Acked(i int, r pamsg.AppendResponse) []Action {
	if s.fatal != nil {
		return nil
	}
	p := &s.peers[i]
	if r.Term > s.term {
		return s.fail(fmt.Errorf("%w: safekeeper %d moved to term %d (ours is %d): another proposer is running", ErrHigherTerm, p.greeting.NodeID, r.Term, s.term))
	}
	if p.phase != peerStreaming || r.Term != s.term {
		return nil
	}
	p.flush = max(p.flush, r.FlushLSN)
	p.lastFlush = p.flush
	p.commit = max(p.commit, r.CommitLSN)
	return s.advanceCommit()
}

// advanceCommit recomputes the commit LSN: the quorum-th highest flush LSN,
// counting only safekeepers that hold our term's start — WAL of earlier
// terms is committed only together with the current term's start (the Raft
// rule; SK §3.9 step 8).
func (s *State) advanceCommit() []Action {
	flushes := make([]lsn.LSN, 0, len(s.peers))
	for _, q := range s.peers {
		f := q.flush
		if q.phase != peerStreaming || f < s.termStartLSN {
			f = 0
		}
		flushes = append(flushes, f)
	}
	slices.SortFunc(flushes, func(a, b lsn.LSN) int {
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})
	c := flushes[s.quorum-1]
	if c < s.termStartLSN || c <= s.commitLSN {
		return nil
	}
	s.commitLSN = c
	s.advanceTruncateLSN()
	return []Action{CommitLSNAdvanced{LSN: c}}
}

// advanceTruncateLSN moves the peer horizon (truncate_lsn) to what every
// safekeeper, connected or not, has acknowledged, and the commit LSN: no
// safekeeper needs WAL below it to catch up. A safekeeper never heard from
// in this term holds it still, as in Neon's walproposer; safekeepers use it
// to bound WAL removal, so a lagging one can always be caught up from its
// peers.
func (s *State) advanceTruncateLSN() {
	h := s.commitLSN
	for _, q := range s.peers {
		h = min(h, q.lastFlush)
	}
	s.truncateLSN = max(s.truncateLSN, h)
}

// Disconnected forgets safekeeper i's connection; it greets again when it returns.
func (s *State) Disconnected(i int) {
	s.peers[i].phase = peerOffline
	s.peers[i].flush = 0
}
