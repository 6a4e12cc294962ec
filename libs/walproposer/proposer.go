package walproposer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/watch"
)

// Config configures a Proposer.
type Config struct {
	Safekeepers []string // host:port of each safekeeper's libpq port
	TTID        id.TenantTimeline
	Version     pamsg.Version // default V3
	PgVersion   uint32        // PG_VERSION_NUM of the primary; 0 when unknown (sync mode)
	SystemID    uint64        // 0 when unknown (sync mode)
	WalSegSize  uint32
	// StartLSN is where WAL begins if no safekeeper has any (the basebackup
	// LSN of a new timeline); 0 means unknown.
	StartLSN lsn.LSN
	AppName  string
	Token    string
	// AllowTimelineCreation lets a greeting create the timeline on a safekeeper.
	AllowTimelineCreation bool
	// ReconnectDelay is the first pause before reconnecting to a safekeeper;
	// it doubles up to MaxReconnectDelay while attempts keep failing.
	ReconnectDelay    time.Duration // default 100 ms
	MaxReconnectDelay time.Duration // default 5 s
	// HeartbeatInterval is how often an idle stream sends an empty AppendRequest (default 1 s).
	HeartbeatInterval time.Duration
	// OnCommit, if set, is called with each new commit LSN by the goroutine
	// that learned it, before anyone else wakes: the walproposer tells the
	// primary from there, which keeps goroutine handoffs off the commit path.
	// It must not block for long or call back into the Proposer.
	OnCommit func(lsn.LSN)
	Log      zerolog.Logger
}

// Proposer drives State over real connections: one session per safekeeper
// (a sender and a receiver), reconnecting after failures, catching lagging
// safekeepers up from a donor safekeeper, and trimming the WAL buffer below
// the commit LSN so memory stays bounded.
type Proposer struct {
	cfg Config
	wal *WALBuffer

	mu      sync.Mutex
	st      *State
	conns   []*peerConn
	elected watch.Value[*TermElected]
	commit  watch.Value[lsn.LSN]
	fatal   watch.Value[error]
	// acks counts AppendResponses, so waiters on per-safekeeper state wake.
	acks watch.Value[uint64]
	// hs is the latest hot-standby feedback of each safekeeper.
	hs []pamsg.HotStandbyFeedback
}

// New returns a proposer that streams the WAL in wal.
func New(cfg Config, wal *WALBuffer) *Proposer {
	if cfg.Version == 0 {
		cfg.Version = pamsg.V3
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = 100 * time.Millisecond
	}
	if cfg.MaxReconnectDelay == 0 {
		cfg.MaxReconnectDelay = 5 * time.Second
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	p := &Proposer{cfg: cfg, wal: wal, st: NewState(len(cfg.Safekeepers), cfg.StartLSN), hs: make([]pamsg.HotStandbyFeedback, len(cfg.Safekeepers))}
	for i, a := range cfg.Safekeepers {
		p.conns = append(p.conns, &peerConn{idx: i, addr: a, control: make(chan controlMsg, 16)})
	}
	wal.mu.Lock()
	wal.onAppend = p.walAppended
	wal.mu.Unlock()
	return p
}

// walAppended hands new WAL to every safekeeper connection that waits
// caught up, from the producer's goroutine.
func (p *Proposer) walAppended(old lsn.LSN, data []byte) {
	for _, c := range p.conns {
		if l := c.link.Load(); l != nil {
			l.sendDirect(old, data)
		}
	}
}

// CommitLSN is the LSN a majority of safekeepers holds durably in our term.
func (p *Proposer) CommitLSN() lsn.LSN { return p.commit.Get() }

// WatchCommit returns the commit LSN and a channel closed when it moves.
func (p *Proposer) WatchCommit() (lsn.LSN, <-chan struct{}) { return p.commit.Watch() }

// Err is the error that stopped the proposer, if any.
func (p *Proposer) Err() error { return p.fatal.Get() }

// WaitCommit blocks until the commit LSN reaches l.
func (p *Proposer) WaitCommit(ctx context.Context, l lsn.LSN) (lsn.LSN, error) {
	return waitOr(p, ctx, &p.commit, func(c lsn.LSN) bool { return c >= l })
}

// WaitElected blocks until the election is won.
func (p *Proposer) WaitElected(ctx context.Context) (TermElected, error) {
	e, err := waitOr(p, ctx, &p.elected, func(e *TermElected) bool { return e != nil })
	if err != nil {
		return TermElected{}, err
	}
	return *e, nil
}

// waitOr waits on v, giving up when ctx ends or the proposer fails.
func waitOr[T any](p *Proposer, ctx context.Context, v *watch.Value[T], ok func(T) bool) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := p.onFatal(cancel)
	defer stop()
	r, err := v.Wait(ctx, ok)
	if ferr := p.fatal.Get(); ferr != nil {
		return r, ferr
	}
	return r, err
}

// onFatal calls f when the proposer fails; the returned func stops watching.
func (p *Proposer) onFatal(f func()) (stop func()) {
	wctx, cancel := context.WithCancel(context.Background())
	go func() {
		if _, err := p.fatal.Wait(wctx, func(e error) bool { return e != nil }); err == nil {
			f()
		}
	}()
	return cancel
}

// PeerStatus is what the proposer knows of one safekeeper.
type PeerStatus struct {
	Addr      string
	Streaming bool    // elected on its current connection
	FlushLSN  lsn.LSN // acknowledged in our term
	CommitLSN lsn.LSN // its persisted commit LSN
}

// Peers reports on every safekeeper, in configuration order.
func (p *Proposer) Peers() []PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PeerStatus, len(p.conns))
	for i, c := range p.conns {
		out[i] = PeerStatus{Addr: c.addr, Streaming: p.st.Streaming(i), FlushLSN: p.st.PeerFlushLSN(i), CommitLSN: p.st.PeerCommitLSN(i)}
	}
	return out
}

// PeerFlushLSN is what safekeeper i acknowledged in our term.
func (p *Proposer) PeerFlushLSN(i int) lsn.LSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.PeerFlushLSN(i)
}

// HotStandbyFeedback aggregates what the safekeepers relay from their
// standbys: the oldest non-zero xmins.
func (p *Proposer) HotStandbyFeedback() pamsg.HotStandbyFeedback {
	p.mu.Lock()
	defer p.mu.Unlock()
	var agg pamsg.HotStandbyFeedback
	for _, h := range p.hs {
		if h.Xmin != 0 && (agg.Xmin == 0 || h.Xmin < agg.Xmin) {
			agg.Xmin = h.Xmin
		}
		if h.CatalogXmin != 0 && (agg.CatalogXmin == 0 || h.CatalogXmin < agg.CatalogXmin) {
			agg.CatalogXmin = h.CatalogXmin
		}
		agg.TS = max(agg.TS, h.TS)
	}
	return agg
}

// Run streams until ctx ends or the proposer fails (another proposer took
// over), and returns that failure.
func (p *Proposer) Run(ctx context.Context) error {
	if len(p.conns) == 0 {
		return errors.New("no safekeepers configured")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := p.onFatal(cancel)
	defer stop()
	var wg sync.WaitGroup
	for _, c := range p.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.runPeer(ctx, c)
		}()
	}
	wg.Wait()
	if err := p.fatal.Get(); err != nil {
		return err
	}
	return ctx.Err()
}

// apply routes the state machine's actions. Called with p.mu held.
func (p *Proposer) apply(actions []Action) {
	for _, a := range actions {
		switch a := a.(type) {
		case SendVoteRequest:
			p.enqueue(a.Peer, &a.Msg)
		case SendElected:
			p.enqueue(a.Peer, &a.Msg)
		case TermElected:
			e := a
			p.elected.Set(&e)
			p.cfg.Log.Info().Uint64("term", uint64(a.Term)).Stringer("term_start_lsn", a.TermStartLSN).
				Str("donor", p.conns[a.Donor].addr).Msg("elected")
		case CommitLSNAdvanced:
			p.commit.Set(a.LSN)
			p.trim(a.LSN)
		case Fatal:
			p.cfg.Log.Error().Err(a.Err).Msg("proposer stops")
			p.fatal.Set(a.Err)
		}
	}
}

func (p *Proposer) enqueue(i int, m pamsg.ProposerMessage) {
	c := p.conns[i]
	select {
	case c.control <- controlMsg{gen: c.gen, msg: m}:
	default:
		// A full control queue means the connection is stuck; the
		// reconnect that follows starts the exchange over.
		p.cfg.Log.Warn().Str("safekeeper", c.addr).Msg("control queue full; dropping message")
	}
}

// maxBufferLag is how far below the commit LSN the WAL buffer keeps WAL for
// a connected safekeeper that is slow to take it; beyond that it is caught
// up from another safekeeper instead.
const maxBufferLag = 64 << 20

// trim drops buffered WAL that no connected safekeeper still needs: below
// the commit LSN and below what each streaming connection has been sent.
func (p *Proposer) trim(commit lsn.LSN) {
	floor := commit
	for _, c := range p.conns {
		if s := lsn.LSN(c.sent.Load()); s != 0 && s < floor {
			floor = s
		}
	}
	if commit-floor > maxBufferLag {
		floor = commit - maxBufferLag
	}
	p.wal.Trim(floor)
}

// recoverySource picks a safekeeper that can serve WAL from pos to peer i in
// recovery mode: one streaming in our term that acknowledged WAL beyond pos,
// or, below the term start, the election's donor. Returns "" if none.
func (p *Proposer) recoverySource(i int, pos lsn.LSN) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	best, bestFlush := "", lsn.LSN(0)
	for j, c := range p.conns {
		if j != i && p.st.Streaming(j) && p.st.PeerFlushLSN(j) > pos && p.st.PeerFlushLSN(j) > bestFlush {
			best, bestFlush = c.addr, p.st.PeerFlushLSN(j)
		}
	}
	if best == "" {
		if e := p.elected.Get(); e != nil && e.Donor != i && pos < e.TermStartLSN {
			best = p.conns[e.Donor].addr
		}
	}
	return best
}

func (p *Proposer) truncateLSN() lsn.LSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.TruncateLSN()
}

func (p *Proposer) term() pamsg.Term {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.Term()
}

// errSuperseded ends a session whose connection was replaced.
var errSuperseded = errors.New("connection superseded")

func wrapPeer(addr string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("safekeeper %s: %w", addr, err)
}
