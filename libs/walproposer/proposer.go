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
	"strata.dev/libs/skclient"
	"strata.dev/libs/watch"
)

// Config configures a Proposer.
type Config struct {
	Safekeepers []string // host:port of each safekeeper's libpq port
	TTID        id.TenantTimeline
	Version     pamsg.Version // default V3
	PgVersion   uint32        // PG_VERSION_NUM of the primary
	SystemID    uint64
	WalSegSize  uint32
	// StartLSN is where WAL begins if no safekeeper has any (the basebackup LSN).
	StartLSN lsn.LSN
	AppName  string
	Token    string
	// AllowTimelineCreation lets a greeting create the timeline on a safekeeper.
	AllowTimelineCreation bool
	// ReconnectDelay is the pause before reconnecting to a safekeeper (default 200 ms).
	ReconnectDelay time.Duration
	// HeartbeatInterval is how often an idle stream sends an empty AppendRequest (default 1 s).
	HeartbeatInterval time.Duration
	Log               zerolog.Logger
}

// Proposer drives State over real connections: one goroutine pair per
// safekeeper (sender, receiver), reconnecting after failures.
type Proposer struct {
	cfg Config
	wal *WALBuffer

	mu      sync.Mutex
	st      *State
	conns   []*peerConn
	elected watch.Value[*TermElected]
	commit  watch.Value[lsn.LSN]
	fatal   watch.Value[error]
}

// peerConn is the proposer's link to one safekeeper.
type peerConn struct {
	idx  int
	addr string
	// gen numbers connections; control messages of an old connection are dropped.
	gen     uint64
	control chan controlMsg
}

type controlMsg struct {
	gen uint64
	msg pamsg.ProposerMessage
}

// New returns a proposer that streams the WAL in wal.
func New(cfg Config, wal *WALBuffer) *Proposer {
	if cfg.Version == 0 {
		cfg.Version = pamsg.V3
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = 200 * time.Millisecond
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	p := &Proposer{cfg: cfg, wal: wal, st: NewState(len(cfg.Safekeepers), cfg.StartLSN)}
	for i, a := range cfg.Safekeepers {
		p.conns = append(p.conns, &peerConn{idx: i, addr: a, control: make(chan controlMsg, 16)})
	}
	return p
}

// CommitLSN is the LSN a majority of safekeepers holds durably in our term.
func (p *Proposer) CommitLSN() lsn.LSN { return p.commit.Get() }

// WaitCommit blocks until the commit LSN reaches l.
func (p *Proposer) WaitCommit(ctx context.Context, l lsn.LSN) (lsn.LSN, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := p.onFatal(cancel)
	defer stop()
	c, err := p.commit.Wait(ctx, func(c lsn.LSN) bool { return c >= l })
	if ferr := p.fatal.Get(); ferr != nil {
		return c, ferr
	}
	return c, err
}

// WaitElected blocks until the election is won.
func (p *Proposer) WaitElected(ctx context.Context) (TermElected, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := p.onFatal(cancel)
	defer stop()
	e, err := p.elected.Wait(ctx, func(e *TermElected) bool { return e != nil })
	if ferr := p.fatal.Get(); ferr != nil {
		return TermElected{}, ferr
	}
	if err != nil {
		return TermElected{}, err
	}
	return *e, nil
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

// PeerFlushLSN is what safekeeper i acknowledged in our term.
func (p *Proposer) PeerFlushLSN(i int) lsn.LSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.PeerFlushLSN(i)
}

// Run streams until ctx ends or the proposer fails (another proposer took
// over), and returns that failure.
func (p *Proposer) Run(ctx context.Context) error {
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
			p.cfg.Log.Info().Uint64("term", uint64(a.Term)).Stringer("term_start_lsn", a.TermStartLSN).Int("donor", a.Donor).Msg("elected")
		case CommitLSNAdvanced:
			p.commit.Set(a.LSN)
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

func (p *Proposer) runPeer(ctx context.Context, c *peerConn) {
	log := p.cfg.Log.With().Str("safekeeper", c.addr).Logger()
	for ctx.Err() == nil {
		err := p.session(ctx, c)
		p.mu.Lock()
		c.gen++
		p.st.Disconnected(c.idx)
		p.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		log.Info().Err(err).Msg("safekeeper connection ended; reconnecting")
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.cfg.ReconnectDelay):
		}
	}
}

// session runs one connection to a safekeeper until it fails.
func (p *Proposer) session(ctx context.Context, c *peerConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := skclient.DialPush(ctx, skclient.Config{
		Addr: c.addr, TTID: p.cfg.TTID, AppName: p.cfg.AppName, Token: p.cfg.Token, ConnectTimeout: 5 * time.Second,
	}, p.cfg.Version, p.cfg.AllowTimelineCreation)
	if err != nil {
		return err
	}
	defer conn.Close()
	stopClose := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopClose()

	p.mu.Lock()
	gen := c.gen
	p.mu.Unlock()
	// Drop control messages meant for an earlier connection.
	for drained := false; !drained; {
		select {
		case <-c.control:
		default:
			drained = true
		}
	}
	greeting := &pamsg.ProposerGreeting{
		TenantID: p.cfg.TTID.Tenant, TimelineID: p.cfg.TTID.Timeline,
		PgVersion: p.cfg.PgVersion, SystemID: p.cfg.SystemID, WalSegSize: p.cfg.WalSegSize, PgTimeline: 1,
	}
	if err := conn.Send(greeting); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		recvErr <- p.receive(conn, c, gen)
		cancel()
	}()
	err = p.send(ctx, conn, c, gen)
	cancel()
	conn.Close()
	if rerr := <-recvErr; rerr != nil {
		return rerr
	}
	return err
}

// receive feeds the safekeeper's replies into the state machine.
func (p *Proposer) receive(conn *skclient.PushConn, c *peerConn, gen uint64) error {
	for {
		m, err := conn.Receive()
		if err != nil {
			return err
		}
		p.mu.Lock()
		if c.gen != gen {
			p.mu.Unlock()
			return errors.New("connection superseded")
		}
		switch m := m.(type) {
		case *pamsg.AcceptorGreeting:
			p.apply(p.st.Greeted(c.idx, *m))
		case *pamsg.VoteResponse:
			p.apply(p.st.Voted(c.idx, *m))
		case *pamsg.AppendResponse:
			p.apply(p.st.Acked(c.idx, *m))
		}
		p.mu.Unlock()
	}
}

// send writes control messages and, once elected on this connection,
// streams WAL, commit LSNs and heartbeats.
func (p *Proposer) send(ctx context.Context, conn *skclient.PushConn, c *peerConn, gen uint64) error {
	var (
		streaming  bool
		pos        lsn.LSN
		term       pamsg.Term
		sentCommit lsn.LSN
		buf        = make([]byte, pamsg.MaxWALPerAppend)
		heartbeat  = time.NewTimer(p.cfg.HeartbeatInterval)
	)
	defer heartbeat.Stop()
	for {
		var walCh, commitCh <-chan struct{}
		var end, commit lsn.LSN
		if streaming {
			end, walCh = p.wal.Watch()
			commit, commitCh = p.commit.Watch()
			if end > pos || commit > sentCommit {
				// Send everything available, then flush once.
				for end > pos || commit > sentCommit {
					n := 0
					if end > pos {
						var err error
						n, err = p.wal.ReadAt(buf[:min(uint64(len(buf)), uint64(end-pos))], pos)
						if err != nil {
							return fmt.Errorf("safekeeper needs WAL from %v: %w", pos, err)
						}
					}
					a := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos + lsn.LSN(n),
						CommitLSN: commit, TruncateLSN: p.truncateLSN(), WAL: buf[:n]}
					if err := conn.SendAppend(a); err != nil {
						return err
					}
					pos += lsn.LSN(n)
					sentCommit = commit
					end = p.wal.End()
					commit = p.commit.Get()
				}
				if err := conn.Flush(); err != nil {
					return err
				}
				heartbeat.Reset(p.cfg.HeartbeatInterval)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cm := <-c.control:
			if cm.gen != gen {
				continue
			}
			if err := conn.Send(cm.msg); err != nil {
				return err
			}
			if err := conn.Flush(); err != nil {
				return err
			}
			if e, ok := cm.msg.(*pamsg.ProposerElected); ok {
				streaming, pos, term = true, e.StartStreamingAt, e.Term
			}
		case <-walCh:
		case <-commitCh:
		case <-heartbeat.C:
			if streaming {
				a := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos, CommitLSN: p.commit.Get(), TruncateLSN: p.truncateLSN()}
				if err := conn.SendAppend(a); err != nil {
					return err
				}
				if err := conn.Flush(); err != nil {
					return err
				}
			}
			heartbeat.Reset(p.cfg.HeartbeatInterval)
		}
	}
}

func (p *Proposer) truncateLSN() lsn.LSN {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.TruncateLSN()
}
