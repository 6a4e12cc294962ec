package timeline

import (
	"sync"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/replication"
)

// SenderKind says what a WAL sender's client reported itself to be.
type SenderKind int

const (
	// SenderPageserver is a client that sends pageserver feedback ('z'), or
	// that has not said anything yet (SK §5.7 counts the initial state as a pageserver).
	SenderPageserver SenderKind = iota
	// SenderStandby is a client that sends standby status or hot-standby feedback.
	SenderStandby
)

func (k SenderKind) String() string {
	if k == SenderStandby {
		return "standby"
	}
	return "pageserver"
}

// SenderInfo describes one START_REPLICATION stream.
type SenderInfo struct {
	ID       uint64
	ConnID   uint32
	Addr     string
	AppName  string
	Started  time.Time
	Recovery bool // started with (term='N'): reads up to the flush LSN
	StartLSN lsn.LSN

	Kind       SenderKind
	PSFeedback pamsg.PageserverFeedback
	Reply      replication.StandbyStatus
	HSFeedback pamsg.HotStandbyFeedback
	// SentLSN is the end of the WAL sent so far.
	SentLSN lsn.LSN
}

// registry holds the records of connected clients of one kind, keyed by a
// number it assigns; the connection owning a record updates it through its
// handle while status readers list them.
type registry[T any] struct {
	mu     sync.Mutex
	nextID uint64
	m      map[uint64]*T
}

// add stores the record newRecord makes for the next id and returns that id.
func (r *registry[T]) add(newRecord func(id uint64) T) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[uint64]*T)
	}
	r.nextID++
	v := newRecord(r.nextID)
	r.m[r.nextID] = &v
	return r.nextID
}

func (r *registry[T]) update(id uint64, f func(*T)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[id]; ok {
		f(v)
	}
}

// remove reports whether the record was there.
func (r *registry[T]) remove(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[id]
	delete(r.m, id)
	return ok
}

func (r *registry[T]) get(id uint64) T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.m[id]; ok {
		return *v
	}
	var zero T
	return zero
}

func (r *registry[T]) list() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]T, 0, len(r.m))
	for _, v := range r.m {
		out = append(out, *v)
	}
	return out
}

// Sender is the handle a WAL sender uses to report on itself.
type Sender struct {
	t  *Timeline
	id uint64
}

// AddSender registers a WAL sender; call Remove on the handle when it ends.
func (t *Timeline) AddSender(info SenderInfo) *Sender {
	id := t.senders.add(func(id uint64) SenderInfo {
		info.ID, info.Started = id, time.Now()
		return info
	})
	return &Sender{t: t, id: id}
}

func (s *Sender) update(f func(i *SenderInfo)) { s.t.senders.update(s.id, f) }

// Remove unregisters the sender.
func (s *Sender) Remove() { s.t.senders.remove(s.id) }

// Sent records the end of the WAL sent.
func (s *Sender) Sent(end lsn.LSN) { s.update(func(i *SenderInfo) { i.SentLSN = end }) }

// StandbyReply records a standby status update.
func (s *Sender) StandbyReply(r replication.StandbyStatus) {
	s.update(func(i *SenderInfo) { i.Kind = SenderStandby; i.Reply = r })
}

// HotStandbyFeedback records a standby's xmin horizon.
func (s *Sender) HotStandbyFeedback(h replication.HotStandbyFeedback) {
	s.update(func(i *SenderInfo) { i.Kind = SenderStandby; i.HSFeedback = h.Full() })
}

// PageserverFeedback records a pageserver's report and hands it to the timeline.
func (s *Sender) PageserverFeedback(f pamsg.PageserverFeedback) error {
	s.update(func(i *SenderInfo) { i.Kind = SenderPageserver; i.PSFeedback = f })
	return s.t.RecordPageserverFeedback(0, f)
}

// Info returns the sender's current record.
func (s *Sender) Info() SenderInfo { return s.t.senders.get(s.id) }

// Senders lists the connected WAL senders.
func (t *Timeline) Senders() []SenderInfo { return t.senders.list() }

// hotStandbyFeedback aggregates the standbys' feedback for the proposer
// (SK §5.6): the lowest non-zero xmin and catalog xmin, the latest timestamp
// among those that contributed.
func (t *Timeline) hotStandbyFeedback() pamsg.HotStandbyFeedback {
	return aggregateHSFeedback(t.senders.list())
}

func aggregateHSFeedback(senders []SenderInfo) pamsg.HotStandbyFeedback {
	var agg pamsg.HotStandbyFeedback
	for _, s := range senders {
		if s.Kind != SenderStandby {
			continue
		}
		h := s.HSFeedback
		contributed := false
		if h.Xmin != 0 && (agg.Xmin == 0 || h.Xmin < agg.Xmin) {
			agg.Xmin = h.Xmin
			contributed = true
		}
		if h.CatalogXmin != 0 && (agg.CatalogXmin == 0 || h.CatalogXmin < agg.CatalogXmin) {
			agg.CatalogXmin = h.CatalogXmin
			contributed = true
		}
		if contributed && h.TS > agg.TS {
			agg.TS = h.TS
		}
	}
	return agg
}

// minReaderLSN is the lowest position a connected WAL sender's client has
// (0 if none): WAL a connected reader still needs is not removed.
func (t *Timeline) minReaderLSN() lsn.LSN {
	var m lsn.LSN
	for _, s := range t.senders.list() {
		pos := s.Reply.FlushLSN
		if s.Kind == SenderPageserver {
			pos = s.PSFeedback.LastReceivedLSN
		}
		if pos == 0 {
			pos = s.StartLSN
		}
		if pos != 0 && (m == 0 || pos < m) {
			m = pos
		}
	}
	return m
}

// ProposerState is where a START_WAL_PUSH session is in the protocol.
type ProposerState int

const (
	ProposerVoting ProposerState = iota
	ProposerStreaming
)

func (s ProposerState) String() string {
	if s == ProposerStreaming {
		return "Streaming"
	}
	return "Voting"
}

// ProposerInfo describes one connected proposer.
type ProposerInfo struct {
	ID      uint64
	ConnID  uint32
	Addr    string
	AppName string
	Version pamsg.Version
	Term    pamsg.Term
	State   ProposerState
	Started time.Time
}

// Proposer is the handle of a connected proposer session.
type Proposer struct {
	t  *Timeline
	id uint64
}

// AddProposer registers a START_WAL_PUSH session; call Remove when it ends.
func (t *Timeline) AddProposer(info ProposerInfo) *Proposer {
	id := t.proposers.add(func(id uint64) ProposerInfo {
		info.ID, info.Started = id, time.Now()
		return info
	})
	t.computes.Add(1)
	return &Proposer{t: t, id: id}
}

// Streaming marks the session elected in term.
func (p *Proposer) Streaming(term pamsg.Term) {
	p.t.proposers.update(p.id, func(i *ProposerInfo) { i.State, i.Term = ProposerStreaming, term })
}

// Remove unregisters the session.
func (p *Proposer) Remove() {
	if p.t.proposers.remove(p.id) {
		p.t.computes.Add(-1)
	}
}

// Proposers lists connected proposer sessions.
func (t *Timeline) Proposers() []ProposerInfo { return t.proposers.list() }
