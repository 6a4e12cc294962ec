// Package timeline is one timeline on a safekeeper: its acceptor state
// machine, its WAL store, the WAL senders and proposers connected to it, and
// the background upkeep (lazy control-file persists, WAL removal). It is the
// point where the network-facing code meets the pure consensus code.
//
// Concurrency: every consensus step and WAL write happens under Timeline.mu,
// one at a time, whichever connection it comes from (SK §3.6). Readers do not
// take that lock: they watch a published Status snapshot, which is replaced
// after every step that changed something.
package timeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/watch"
	"strata.dev/safekeeper/acceptor"
	"strata.dev/safekeeper/control"
	"strata.dev/safekeeper/walstore"
)

// ErrDeleted is returned for operations on a deleted timeline.
var ErrDeleted = errors.New("timeline is deleted")

// Status is a consistent snapshot of a timeline's positions.
type Status struct {
	Term        pamsg.Term
	LastLogTerm pamsg.Term
	// TermHistory is the full adopted history (it may reach past FlushLSN).
	TermHistory pamsg.TermHistory
	Mconf       pamsg.Configuration
	Server      control.ServerInfo
	// FlushLSN is the end of the last durable complete record (never below
	// TimelineStartLSN).
	FlushLSN lsn.LSN
	// WriteLSN is the end of the bytes written, durable or not.
	WriteLSN lsn.LSN
	// CommitLSN is the in-memory commit LSN; PersistedCommitLSN the control file's.
	CommitLSN          lsn.LSN
	PersistedCommitLSN lsn.LSN
	BackupLSN          lsn.LSN
	PeerHorizonLSN     lsn.LSN
	// RemoteConsistentLSN is the highest LSN a pageserver reported durable.
	RemoteConsistentLSN lsn.LSN
	TimelineStartLSN    lsn.LSN
	LocalStartLSN       lsn.LSN
	TermStartLSN        lsn.LSN
}

// Config is what every timeline of a safekeeper shares.
type Config struct {
	NodeID id.NodeID
	// NoSync disables fsync (tests only).
	NoSync bool
	// ControlFileSaveInterval bounds how long in-memory LSNs stay unpersisted.
	ControlFileSaveInterval time.Duration
	// Observer receives WAL write and flush timings; may be nil.
	Observer walstore.Observer
	// Prealloc is how new WAL segment files get their disk blocks.
	Prealloc walstore.Prealloc
	// RawIO makes WAL writes and flushes cheaper while the disk is fast
	// (walstore.RawIO); nil: ordinary system calls.
	RawIO *walstore.RawIO
	// WALCacheSize is how many bytes of each timeline's latest WAL are kept
	// in memory for WAL senders (walstore.Recent); 0: none.
	WALCacheSize int
}

// Timeline is one timeline on this safekeeper.
type Timeline struct {
	TTID id.TenantTimeline
	dir  string
	cfg  *Config

	mu      sync.Mutex
	acc     *acceptor.Acceptor
	store   *walstore.Store
	deleted bool

	status watch.Value[Status]
	// psFeedback is the last pageserver feedback and a counter that moves
	// with every new report, relayed by proposer connections (SK §3.6).
	psFeedback watch.Value[FeedbackEvent]

	senders   registry[SenderInfo]
	proposers registry[ProposerInfo]
	computes  atomic.Int32 // START_WAL_PUSH sessions

	ctx    context.Context // cancelled on deletion: ends every connection
	cancel context.CancelFunc

	removal removalState
}

// FeedbackEvent is a pageserver feedback report and its sequence number.
type FeedbackEvent struct {
	Seq      uint64
	Feedback pamsg.PageserverFeedback
}

// open builds a Timeline from its directory and persisted state.
func open(dir string, ttid id.TenantTimeline, state *control.State, cfg *Config) (*Timeline, error) {
	if state.Tenant != ttid.Tenant || state.Timeline != ttid.Timeline {
		return nil, fmt.Errorf("control file in %s belongs to %s/%s", dir, state.Tenant, state.Timeline)
	}
	if state.Server.WalSegSize == 0 {
		return nil, fmt.Errorf("control file in %s has WAL segment size 0", dir)
	}
	// The WAL is decoded from a durable record boundary: the persisted commit
	// LSN, or where this safekeeper's WAL begins if that is later.
	var start lsn.LSN
	if state.CommitLSN != 0 {
		start = max(state.CommitLSN, state.LocalStartLSN)
	}
	store, err := walstore.Open(walstore.Options{
		Dir: dir, SegSize: uint64(state.Server.WalSegSize), PgVersion: state.Server.PgVersion,
		SystemID: state.Server.SystemID, NoSync: cfg.NoSync, Observer: cfg.Observer, Prealloc: cfg.Prealloc,
		RawIO: cfg.RawIO, RecentSize: cfg.WALCacheSize,
	}, start)
	if err != nil {
		return nil, fmt.Errorf("open WAL of timeline %s: %w", ttid, err)
	}
	if start != 0 && store.FlushRecordLSN() < state.CommitLSN {
		store.Close()
		return nil, fmt.Errorf("timeline %s: WAL ends at %v, before the persisted commit_lsn %v: WAL files are missing or damaged",
			ttid, store.FlushRecordLSN(), state.CommitLSN)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Timeline{
		TTID: ttid, dir: dir, cfg: cfg, store: store,
		acc:    acceptor.New(cfg.NodeID, state, store, &fileControl{dir: dir, noSync: cfg.NoSync}),
		ctx:    ctx,
		cancel: cancel,
	}
	t.publishLocked()
	return t, nil
}

// fileControl persists control files in the timeline directory.
type fileControl struct {
	dir    string
	noSync bool
}

func (c *fileControl) Persist(s *control.State) error { return control.Persist(c.dir, s, c.noSync) }

// Dir is the timeline directory.
func (t *Timeline) Dir() string { return t.dir }

// Context is cancelled when the timeline is deleted.
func (t *Timeline) Context() context.Context { return t.ctx }

// Status returns the latest published snapshot.
func (t *Timeline) Status() Status { return t.status.Get() }

// WatchStatus returns the snapshot and a channel closed when it changes.
func (t *Timeline) WatchStatus() (Status, <-chan struct{}) { return t.status.Watch() }

// WaitStatus blocks until ok holds for the snapshot or ctx ends.
func (t *Timeline) WaitStatus(ctx context.Context, ok func(Status) bool) (Status, error) {
	return t.status.Wait(ctx, ok)
}

// publishLocked replaces the status snapshot if anything in it changed.
func (t *Timeline) publishLocked() {
	a := t.acc
	p := a.Persisted()
	s := Status{
		Term:                a.Term(),
		LastLogTerm:         a.LastLogTerm(),
		TermHistory:         p.AcceptorState.TermHistory,
		Mconf:               p.Mconf,
		Server:              p.Server,
		FlushLSN:            a.FlushLSN(),
		WriteLSN:            t.store.WriteLSN(),
		CommitLSN:           a.CommitLSN(),
		PersistedCommitLSN:  a.PersistedCommitLSN(),
		BackupLSN:           a.BackupLSN(),
		PeerHorizonLSN:      a.PeerHorizonLSN(),
		RemoteConsistentLSN: a.RemoteConsistentLSN(),
		TimelineStartLSN:    p.TimelineStartLSN,
		LocalStartLSN:       p.LocalStartLSN,
		TermStartLSN:        a.TermStartLSN(),
	}
	t.status.Update(func(old *Status) bool {
		if sameStatus(old, &s) {
			return false
		}
		*old = s
		return true
	})
}

func sameStatus(a, b *Status) bool {
	if a.Term != b.Term || a.LastLogTerm != b.LastLogTerm || a.FlushLSN != b.FlushLSN || a.WriteLSN != b.WriteLSN ||
		a.CommitLSN != b.CommitLSN || a.PersistedCommitLSN != b.PersistedCommitLSN || a.BackupLSN != b.BackupLSN ||
		a.PeerHorizonLSN != b.PeerHorizonLSN || a.RemoteConsistentLSN != b.RemoteConsistentLSN ||
		a.TimelineStartLSN != b.TimelineStartLSN || a.LocalStartLSN != b.LocalStartLSN ||
		a.TermStartLSN != b.TermStartLSN || a.Mconf.Generation != b.Mconf.Generation || a.Server != b.Server ||
		len(a.TermHistory) != len(b.TermHistory) {
		return false
	}
	for i := range a.TermHistory {
		if a.TermHistory[i] != b.TermHistory[i] {
			return false
		}
	}
	return true
}

// do runs f on the acceptor under the lock and publishes what changed.
func (t *Timeline) do(f func(a *acceptor.Acceptor) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deleted {
		return ErrDeleted
	}
	err := f(t.acc)
	t.publishLocked()
	return err
}

// Greeting processes a ProposerGreeting.
func (t *Timeline) Greeting(m *pamsg.ProposerGreeting) (r *pamsg.AcceptorGreeting, err error) {
	err = t.do(func(a *acceptor.Acceptor) error { r, err = a.Greeting(m); return err })
	return r, err
}

// Vote processes a VoteRequest.
func (t *Timeline) Vote(m *pamsg.VoteRequest) (r *pamsg.VoteResponse, err error) {
	err = t.do(func(a *acceptor.Acceptor) error { r, err = a.Vote(m); return err })
	return r, err
}

// Elected processes a ProposerElected.
func (t *Timeline) Elected(m *pamsg.ProposerElected) error {
	return t.do(func(a *acceptor.Acceptor) error { return a.Elected(m) })
}

// Append processes an AppendRequest without fsync (NoFlushAppendRequest).
// A reply comes back only when a completed segment moved the flush LSN.
func (t *Timeline) Append(m *pamsg.AppendRequest) (r *pamsg.AppendResponse, err error) {
	err = t.do(func(a *acceptor.Acceptor) error { r, err = a.Append(m, false); return err })
	if r != nil {
		r.HSFeedback = t.hotStandbyFeedback()
	}
	return r, err
}

// FlushWAL makes all written WAL durable and returns the AppendResponse to send.
func (t *Timeline) FlushWAL() (r *pamsg.AppendResponse, err error) {
	err = t.do(func(a *acceptor.Acceptor) error { r, err = a.FlushWAL(); return err })
	if r != nil {
		r.HSFeedback = t.hotStandbyFeedback()
	}
	return r, err
}

// PrepareFlush starts an asynchronous flush: run job (off the lock, on any
// goroutine, while more WAL is appended), then call CompleteFlush with the
// target. A nil job means everything written is durable already.
func (t *Timeline) PrepareFlush() (job func() error, target walstore.FlushTarget, err error) {
	err = t.do(func(*acceptor.Acceptor) error {
		job, target, err = t.store.PrepareFlush()
		return err
	})
	return job, target, err
}

// CompleteFlush records a finished asynchronous flush and returns the
// AppendResponse that reports it.
func (t *Timeline) CompleteFlush(target walstore.FlushTarget) (r *pamsg.AppendResponse, err error) {
	err = t.do(func(a *acceptor.Acceptor) error {
		t.store.CompleteFlush(target)
		r = a.FlushedResponse()
		return nil
	})
	if r != nil {
		r.HSFeedback = t.hotStandbyFeedback()
	}
	return r, err
}

// RecordPageserverFeedback takes a report of pageserver node: its
// remote-consistent LSN becomes part of the WAL removal horizon (removal.go),
// and the report is relayed to connected proposers. Node 0 is a report that
// does not say whose it is (a libpq 'z' message, sent only by the pageserver
// streaming from this safekeeper): it moves the persisted LSN only, as the
// pageserver also reports to every safekeeper with its id over gRPC.
func (t *Timeline) RecordPageserverFeedback(node uint64, f pamsg.PageserverFeedback) error {
	err := t.do(func(a *acceptor.Acceptor) error {
		a.AdvanceRemoteConsistentLSN(f.RemoteConsistentLSN)
		return nil
	})
	if err != nil {
		return err
	}
	if node != 0 {
		t.removal.reported(node, f.RemoteConsistentLSN, time.Now())
	}
	t.psFeedback.Update(func(e *FeedbackEvent) bool {
		e.Seq++
		e.Feedback = f
		return true
	})
	return nil
}

// WatchPageserverFeedback returns the last report and a channel closed at the next.
func (t *Timeline) WatchPageserverFeedback() (FeedbackEvent, <-chan struct{}) {
	return t.psFeedback.Watch()
}

// Upkeep persists lagging in-memory LSNs when due (SK §3.7) and frees the
// memory of the latest WAL once no WAL sender reads it.
func (t *Timeline) Upkeep(now time.Time) error {
	t.store.Recent().ReleaseIdle(now)
	return t.do(func(a *acceptor.Acceptor) error {
		return a.MaybePersist(now, t.cfg.ControlFileSaveInterval)
	})
}

// Checkpoint persists the control file now.
func (t *Timeline) Checkpoint() error {
	return t.do(func(a *acceptor.Acceptor) error { return a.Persist() })
}

// ControlState returns a copy of the persisted control-file state.
func (t *Timeline) ControlState() *control.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acc.State()
}

// NewWALReader returns a reader of this timeline's WAL positioned at start.
func (t *Timeline) NewWALReader(start lsn.LSN) (*walstore.Reader, error) {
	s := t.Status()
	return walstore.NewReader(walstore.ReaderOptions{
		Dir: t.dir, SegSize: uint64(s.Server.WalSegSize), PgVersion: s.Server.PgVersion, SystemID: s.Server.SystemID,
		TimelineStartLSN: s.TimelineStartLSN, LocalStartLSN: s.LocalStartLSN, Recent: t.store.Recent(),
	}, start)
}

// Computes is the number of connected START_WAL_PUSH sessions.
func (t *Timeline) Computes() int { return int(t.computes.Load()) }

// close marks the timeline deleted, ends its connections and closes its files.
func (t *Timeline) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deleted {
		return nil
	}
	t.deleted = true
	t.cancel()
	return t.store.Close()
}
