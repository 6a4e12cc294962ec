package walproposer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/replication"
	"strata.dev/libs/skclient"
)

// peerConn is the proposer's link to one safekeeper.
type peerConn struct {
	idx  int
	addr string
	// gen numbers connections; control messages of an old connection are dropped.
	gen     uint64
	control chan controlMsg
	// sent is the end of the WAL sent on the current connection while it
	// streams from the buffer; 0 otherwise. It keeps that WAL in the buffer.
	sent atomic.Uint64
	// link is the current streaming connection, for WAL's producer.
	link atomic.Pointer[link]
	// greeted is set once the current connection got an AcceptorGreeting.
	greeted atomic.Bool
	// refused holds the safekeeper's error if it turned our greeting down
	// on its last connection (guarded by Proposer.mu).
	refused error
}

type controlMsg struct {
	gen uint64
	msg pamsg.ProposerMessage
}

func (p *Proposer) skConfig(addr, app string) skclient.Config {
	return skclient.Config{Addr: addr, TTID: p.cfg.TTID, AppName: app, Token: p.cfg.Token, ConnectTimeout: 5 * time.Second}
}

// runPeer keeps a session with one safekeeper, reconnecting with backoff.
func (p *Proposer) runPeer(ctx context.Context, c *peerConn) {
	log := p.cfg.Log.With().Str("safekeeper", c.addr).Logger()
	delay := p.cfg.ReconnectDelay
	for ctx.Err() == nil {
		started := time.Now()
		c.greeted.Store(false)
		err := p.session(ctx, c)
		p.mu.Lock()
		c.gen++
		p.st.Disconnected(c.idx)
		p.hs[c.idx] = pamsg.HotStandbyFeedback{}
		p.noteRefusal(c, err)
		p.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		// A session that lasted resets the backoff; quick failures grow it.
		if time.Since(started) > 10*p.cfg.ReconnectDelay {
			delay = p.cfg.ReconnectDelay
		}
		log.Warn().Err(err).Dur("retry_in", delay).Msg("safekeeper connection ended")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, p.cfg.MaxReconnectDelay)
	}
}

// session runs one connection to a safekeeper until it fails.
func (p *Proposer) session(ctx context.Context, c *peerConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := skclient.DialPush(ctx, p.skConfig(c.addr, p.cfg.AppName), p.cfg.Version, p.cfg.AllowTimelineCreation)
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
	if rerr := <-recvErr; rerr != nil && !errors.Is(rerr, context.Canceled) {
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
			return errSuperseded
		}
		before := p.st.CommitLSN()
		switch m := m.(type) {
		case *pamsg.AcceptorGreeting:
			c.greeted.Store(true)
			c.refused = nil
			p.apply(p.st.Greeted(c.idx, *m))
		case *pamsg.VoteResponse:
			p.apply(p.st.Voted(c.idx, *m))
		case *pamsg.AppendResponse:
			p.hs[c.idx] = m.HSFeedback
			p.apply(p.st.Acked(c.idx, *m))
		}
		after := p.st.CommitLSN()
		p.mu.Unlock()
		if after > before && p.cfg.OnCommit != nil {
			p.cfg.OnCommit(after)
		}
		if _, ok := m.(*pamsg.AppendResponse); ok {
			p.acks.Update(func(n *uint64) bool { *n++; return true })
		}
	}
}

// noteRefusal records a safekeeper that turned the greeting down with an
// error (another cluster's system id, a wrong PostgreSQL version, a deleted
// timeline) rather than failing to connect. When a majority does, no
// election can succeed: stop with their reason. Called with p.mu held.
func (p *Proposer) noteRefusal(c *peerConn, err error) {
	var se *skclient.ServerError
	if c.greeted.Load() || !errors.As(err, &se) {
		return
	}
	c.refused = err
	n := 0
	for _, o := range p.conns {
		if o.refused != nil {
			n++
		}
	}
	if n >= p.st.Quorum() && p.fatal.Get() == nil {
		p.fatal.Set(fmt.Errorf("%d of %d safekeepers refuse this proposer: %w", n, len(p.conns), err))
	}
}

// send writes control messages and, once elected on this connection,
// streams WAL, commit LSNs and heartbeats.
func (p *Proposer) send(ctx context.Context, conn *skclient.PushConn, c *peerConn, gen uint64) error {
	for {
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
				return p.stream(ctx, conn, c, e.Term, e.StartStreamingAt)
			}
		}
	}
}

// stream sends WAL from pos on: from the WAL buffer, or, for WAL the buffer
// no longer holds, from another safekeeper (recover).
func (p *Proposer) stream(ctx context.Context, conn *skclient.PushConn, c *peerConn, term pamsg.Term, pos lsn.LSN) error {
	l := &link{p: p, c: c, conn: conn, term: term, pos: pos, poke: make(chan struct{}, 1)}
	l.commitTimer = time.AfterFunc(time.Hour, l.commitDue)
	l.commitTimer.Stop()
	c.link.Store(l)
	defer func() {
		c.link.Store(nil)
		l.mu.Lock()
		l.commitTimer.Stop()
		l.closed = true
		l.mu.Unlock()
		c.sent.Store(0)
	}()
	heartbeat := time.NewTimer(p.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	buf := make([]byte, pamsg.MaxWALPerAppend)

	// An empty append right after the election gets the first
	// acknowledgement (and the commit LSN moving) without waiting a
	// heartbeat interval.
	l.mu.Lock()
	err := l.sendEmptyLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		l.mu.Lock()
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return err
		}
		pos := l.pos
		if pos < p.wal.Start() {
			l.mu.Unlock()
			c.sent.Store(0)
			next, err := p.recover(ctx, conn, c, term, pos)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.pos = next
			l.mu.Unlock()
			continue
		}
		if end := p.wal.End(); end > pos {
			err := l.sendRangeLocked(buf, end)
			l.mu.Unlock()
			if err != nil {
				return err
			}
			heartbeat.Reset(p.cfg.HeartbeatInterval)
			continue
		}
		// Caught up: from now on whoever appends WAL sends it directly.
		l.live = true
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.poke:
		case <-heartbeat.C:
			l.mu.Lock()
			err := l.sendEmptyLocked()
			l.mu.Unlock()
			if err != nil {
				return err
			}
			heartbeat.Reset(p.cfg.HeartbeatInterval)
		}
		l.mu.Lock()
		l.live = false
		l.mu.Unlock()
	}
}

// link is one streaming connection to a safekeeper. Its stream goroutine
// owns it, but while that goroutine waits caught up (live), the goroutine
// that appends WAL to the buffer sends the new WAL itself (sendDirect): on
// the commit path that saves waking one goroutine per safekeeper per
// transaction. mu serializes every write to the connection.
type link struct {
	p    *Proposer
	c    *peerConn
	conn *skclient.PushConn
	term pamsg.Term

	mu          sync.Mutex
	pos         lsn.LSN // next LSN to send
	sentCommit  lsn.LSN
	live        bool  // the stream goroutine waits for WAL; others may send
	err         error // a failed direct send, for the stream goroutine to return
	closed      bool
	commitTimer *time.Timer
	poke        chan struct{}
	hdr         []byte
}

// directWriteTimeout bounds how long WAL's producer waits for one
// safekeeper's socket: a safekeeper too slow for that is disconnected and
// catches up later, instead of holding up the others and the primary.
const directWriteTimeout = 100 * time.Millisecond

func (l *link) wake() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

// append sends data (WAL at l.pos) in AppendRequests of at most
// MaxWALPerAppend bytes; with no data, one empty AppendRequest (a heartbeat
// that carries the commit LSN).
func (l *link) append(data []byte, commit lsn.LSN) error {
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), pamsg.MaxWALPerAppend)
		a := &pamsg.AppendRequest{Term: l.term, BeginLSN: l.pos, EndLSN: l.pos + lsn.LSN(n),
			CommitLSN: commit, TruncateLSN: l.p.truncateLSN(), WAL: data[:n]}
		if err := l.conn.SendAppend(a); err != nil {
			return err
		}
		l.pos = a.EndLSN
		data = data[n:]
	}
	l.sentCommit = commit
	l.c.sent.Store(uint64(l.pos))
	return nil
}

// sendRangeLocked sends buffered WAL from l.pos to end.
func (l *link) sendRangeLocked(buf []byte, end lsn.LSN) error {
	commit := l.p.commit.Get()
	for l.pos < end {
		n, err := l.p.wal.ReadAt(buf[:min(uint64(len(buf)), uint64(end-l.pos))], l.pos)
		if errors.Is(err, ErrTrimmed) {
			break // the loop recovers it from another safekeeper
		}
		if err != nil {
			return err
		}
		if err := l.append(buf[:n], commit); err != nil {
			return err
		}
	}
	if err := l.conn.Flush(); err != nil {
		return err
	}
	l.commitTimer.Reset(commitUpdateDelay)
	return nil
}

func (l *link) sendEmptyLocked() error {
	if err := l.append(nil, l.p.commit.Get()); err != nil {
		return err
	}
	return l.conn.Flush()
}

// sendDirect is called by WAL's producer after data was appended at old. If
// the stream goroutine waits caught up, the WAL goes out from here;
// otherwise the stream goroutine is woken to send it.
func (l *link) sendDirect(old lsn.LSN, data []byte) {
	if !l.mu.TryLock() {
		l.wake()
		return
	}
	defer l.mu.Unlock()
	if !l.live || l.pos != old || l.err != nil || l.closed {
		l.wake()
		return
	}
	_ = l.conn.SetWriteDeadline(time.Now().Add(directWriteTimeout))
	err := l.append(data, l.p.commit.Get())
	if err == nil {
		err = l.conn.Flush()
	}
	_ = l.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// A write cut short leaves a broken frame: this connection is done.
		l.err = fmt.Errorf("send WAL: %w", err)
		l.conn.Close()
		l.wake()
		return
	}
	l.commitTimer.Reset(commitUpdateDelay)
}

// commitDue runs commitUpdateDelay after WAL was sent: the commit LSN has
// usually moved since, and if no WAL carried it, it goes out alone.
func (l *link) commitDue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.err != nil {
		return
	}
	if l.p.commit.Get() > l.sentCommit {
		if err := l.sendEmptyLocked(); err != nil {
			l.err = err
			l.wake()
			return
		}
	}
	// WAL sent but not yet known committed: its commit follows soon.
	if l.sentCommit < l.pos {
		l.commitTimer.Reset(commitUpdateDelay)
	}
}

// commitUpdateDelay is how long a new commit LSN waits for WAL to ride on
// before it is sent alone. Nothing on the primary waits for it: commits wait
// for safekeeper flushes, which the proposer learns from their replies.
const commitUpdateDelay = 3 * time.Millisecond

// recover catches a safekeeper up from pos with WAL read from another
// safekeeper in recovery mode (START_REPLICATION ... (term='T'), SK §3.9
// step 7), until the WAL buffer covers the rest. It returns the new position.
func (p *Proposer) recover(ctx context.Context, conn *skclient.PushConn, c *peerConn, term pamsg.Term, pos lsn.LSN) (lsn.LSN, error) {
	log := p.cfg.Log.With().Str("safekeeper", c.addr).Logger()
	for pos < p.wal.Start() {
		src := p.recoverySource(c.idx, pos)
		if src == "" {
			// Nobody can serve it yet (the others are behind too): wait for acks.
			_, ch := p.acks.Watch()
			select {
			case <-ctx.Done():
				return pos, ctx.Err()
			case <-ch:
			case <-time.After(p.cfg.HeartbeatInterval):
			}
			continue
		}
		log.Info().Stringer("from", pos).Stringer("until", p.wal.Start()).Str("donor", src).Msg("recovering WAL from another safekeeper")
		next, err := p.recoverFrom(ctx, conn, src, term, pos)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errSendFailed) {
			log.Warn().Err(err).Str("donor", src).Msg("recovery from donor failed; trying again")
			select {
			case <-ctx.Done():
			case <-time.After(p.cfg.ReconnectDelay):
			}
		} else if err != nil {
			return next, err
		}
		pos = next
	}
	return pos, nil
}

// errSendFailed marks failures on the connection being caught up, which end
// its session, as opposed to failures of the donor, which are retried.
var errSendFailed = errors.New("sending to the safekeeper failed")

func (p *Proposer) recoverFrom(ctx context.Context, conn *skclient.PushConn, donor string, term pamsg.Term, pos lsn.LSN) (lsn.LSN, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := skclient.StartReplication(ctx, p.skConfig(donor, "wal_proposer_recovery"), pos, &term)
	if err != nil {
		return pos, err
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	for pos < p.wal.Start() {
		m, err := rc.Recv()
		if err != nil {
			return pos, err
		}
		x, ok := m.(*replication.XLogData)
		if !ok {
			continue
		}
		if x.WALStart != pos {
			return pos, fmt.Errorf("donor %s sent WAL at %v, expected %v", donor, x.WALStart, pos)
		}
		a := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos + lsn.LSN(len(x.Data)),
			CommitLSN: p.commit.Get(), TruncateLSN: p.truncateLSN(), WAL: x.Data}
		if err := conn.SendAppend(a); err != nil {
			return pos, fmt.Errorf("%w: %v", errSendFailed, err)
		}
		if err := conn.Flush(); err != nil {
			return pos, fmt.Errorf("%w: %v", errSendFailed, err)
		}
		pos = a.EndLSN
	}
	return pos, nil
}
