package walproposer

import (
	"context"
	"errors"
	"fmt"
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
		p.mu.Unlock()
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
	var (
		sentCommit lsn.LSN
		buf        = make([]byte, pamsg.MaxWALPerAppend)
		heartbeat  = time.NewTimer(p.cfg.HeartbeatInterval)
	)
	defer heartbeat.Stop()
	defer c.sent.Store(0)
	// An empty append right after the election gets the first
	// acknowledgement (and the commit LSN moving) without waiting a
	// heartbeat interval.
	first := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos, CommitLSN: p.commit.Get(), TruncateLSN: p.truncateLSN()}
	if err := conn.SendAppend(first); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return err
	}
	for {
		if pos < p.wal.Start() {
			c.sent.Store(0)
			var err error
			if pos, err = p.recover(ctx, conn, c, term, pos); err != nil {
				return err
			}
			continue
		}
		end, walCh := p.wal.Watch()
		commit, commitCh := p.commit.Watch()
		if end > pos || commit > sentCommit {
			// Send everything available, then flush once.
			for end > pos || commit > sentCommit {
				n := 0
				if end > pos {
					var err error
					n, err = p.wal.ReadAt(buf[:min(uint64(len(buf)), uint64(end-pos))], pos)
					if errors.Is(err, ErrTrimmed) {
						break // recover from another safekeeper
					}
					if err != nil {
						return err
					}
				}
				a := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos + lsn.LSN(n),
					CommitLSN: commit, TruncateLSN: p.truncateLSN(), WAL: buf[:n]}
				if err := conn.SendAppend(a); err != nil {
					return err
				}
				pos += lsn.LSN(n)
				c.sent.Store(uint64(pos))
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
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-walCh:
		case <-commitCh:
		case <-heartbeat.C:
			a := &pamsg.AppendRequest{Term: term, BeginLSN: pos, EndLSN: pos, CommitLSN: p.commit.Get(), TruncateLSN: p.truncateLSN()}
			if err := conn.SendAppend(a); err != nil {
				return err
			}
			if err := conn.Flush(); err != nil {
				return err
			}
			heartbeat.Reset(p.cfg.HeartbeatInterval)
		}
	}
}

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
