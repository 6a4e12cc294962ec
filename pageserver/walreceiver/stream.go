// One connection: START_REPLICATION, then XLogData into the sink and
// feedback back (PS §2.2), while a monitor goroutine observes the other
// safekeepers and cancels the connection when a switching rule fires.
//
// The session checks that each XLogData starts exactly at the next
// expected byte, so the sink sees one contiguous range per connection.
// Feedback goes out when a keepalive asks for it, and after WAL once the
// messages that arrived together are all processed (or feedbackDelay after
// the last report, if they keep coming) and only if a position moved.
// While the session is behind the safekeeper's commit LSN (a catch-up),
// more WAL is surely on its way: feedback then goes out feedbackDelay apart,
// not after every socket read (a reply per read cost a tenth of the
// receiving goroutine's CPU re-ingesting a backlog).

package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pgtime"
	"strata.dev/libs/replication"
	"strata.dev/libs/skclient"
)

// feedbackDelay bounds how long changed positions wait for the end of a
// batch of messages before they are reported anyway.
const feedbackDelay = 100 * time.Millisecond

// errWALGap is returned (wrapped) when a safekeeper sends WAL that does not
// start at the next expected byte.
var errWALGap = errors.New("XLogData does not continue the stream")

// errSilent is returned (wrapped) when nothing arrived for WALConnectTimeout.
var errSilent = errors.New("no message from the safekeeper")

// replicationConn is what a session needs of *skclient.ReplicationConn.
type replicationConn interface {
	Recv() (replication.ServerMessage, error)
	Buffered() int
	SendPageserverFeedback(*pamsg.PageserverFeedback) error
	SendStandbyStatus(replication.StandbyStatus) error
	SetDeadline(time.Time) error
	Close() error
}

type endKind int

const (
	endStopped    endKind = iota // Run's context ended
	endSwitch                    // a switching rule picked another safekeeper
	endCaughtUp                  // the safekeeper ended the stream: "ending streaming"
	endFailed                    // the connection or the safekeeper failed
	endSinkFailed                // the sink refused WAL
)

// streamEnd is how and where a connection ended.
type streamEnd struct {
	kind endKind
	err  error
	pos  lsn.LSN // the next byte that was expected

	delivered bool    // the sink accepted WAL on this connection
	accepted  lsn.LSN // end of the last WAL the sink accepted
	failedEnd lsn.LSN // endSinkFailed: end of the WAL it refused

	next       int // endSwitch: the safekeeper to move to
	nextCommit lsn.LSN
}

// sinkError marks an error returned by Sink.WAL.
type sinkError struct {
	err error
	end lsn.LSN // end of the refused data
}

func (e *sinkError) Error() string { return fmt.Sprintf("sink: %v", e.err) }
func (e *sinkError) Unwrap() error { return e.err }

// stream runs one connection to safekeeper i, whose commit LSN was commit,
// from start.
func (r *Receiver) stream(ctx context.Context, i int, commit, start lsn.LSN) streamEnd {
	addr := r.sks[i].addr
	log := r.log.With().Str("safekeeper", addr).Logger()
	end := streamEnd{pos: start, next: -1}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	dctx, dcancel := context.WithTimeout(cctx, r.cfg.WALConnectTimeout)
	conn, err := skclient.StartReplication(dctx, r.skConfig(addr), start, nil)
	dcancel()
	if err != nil {
		if ctx.Err() != nil {
			end.kind = endStopped
			return end
		}
		end.kind, end.err = endFailed, fmt.Errorf("START_REPLICATION from %v: %w", start, err)
		return end
	}
	log.Info().Stringer("start", start).Stringer("commit_lsn", commit).Msg("streaming WAL")
	now := time.Now()
	r.mu.Lock()
	r.status.Safekeeper, r.status.CommitLSN, r.status.StreamLSN = addr, commit, start
	r.status.LastMessage, r.status.LastWAL = now, now
	if r.status.Connections > 0 {
		r.status.Reconnects++
	}
	r.status.Connections++
	r.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.monitor(cctx, cancel, i, conn)
	}()
	s := &session{
		conn: conn, sink: r.sink, reply: r.cfg.Reply, silence: r.cfg.WALConnectTimeout,
		pos: start, commit: commit, receiver: r, log: log,
	}
	err = s.run(cctx)
	cancel(errConnectionDone)
	wg.Wait() // the monitor has closed conn

	r.mu.Lock()
	r.status.Safekeeper = ""
	r.mu.Unlock()
	end.pos, end.delivered, end.accepted = s.pos, s.delivered, s.accepted
	var decision *switchDecision
	var sinkErr *sinkError
	switch cause := context.Cause(cctx); {
	case ctx.Err() != nil:
		end.kind = endStopped
	case errors.As(cause, &decision):
		end.kind, end.err, end.next, end.nextCommit = endSwitch, decision, decision.target, decision.commit
	case isEndingStreaming(err):
		end.kind, end.err = endCaughtUp, err
	case errors.As(err, &sinkErr):
		end.kind, end.err, end.failedEnd = endSinkFailed, err, sinkErr.end
	case errors.Is(err, errSilent):
		end.kind, end.err = endFailed, fmt.Errorf("%w at %v", err, s.pos)
	case errors.Is(err, io.EOF):
		end.kind, end.err = endFailed, fmt.Errorf("safekeeper closed the stream at %v", s.pos)
	default:
		end.kind, end.err = endFailed, fmt.Errorf("stream at %v: %w", s.pos, err)
	}
	return end
}

// errConnectionDone cancels the monitor when the session ended by itself.
var errConnectionDone = errors.New("connection ended")

// isEndingStreaming recognises the safekeeper's normal end of a stream to a
// caught-up pageserver (SK §5.7).
func isEndingStreaming(err error) bool {
	var se *skclient.ServerError
	return errors.As(err, &se) && strings.Contains(se.Message, "ending streaming")
}

// monitor observes the other safekeepers every StatusInterval (and, when
// watching, at every change) and cancels the connection when a switching
// rule fires. It owns closing conn when ctx ends, so the session's blocked
// read returns.
func (r *Receiver) monitor(ctx context.Context, cancel context.CancelCauseFunc, cur int, conn replicationConn) {
	defer conn.Close()
	addrs := make([]string, len(r.sks))
	for i, s := range r.sks {
		addrs[i] = s.addr
	}
	rules := switchRules{maxLag: r.cfg.MaxLSNWALLag, laggingTimeout: r.cfg.LaggingWALTimeout, addrs: addrs}
	tick := time.NewTicker(r.cfg.StatusInterval)
	defer tick.Stop()
	changed := r.obs.changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-changed:
		}
		changed = r.obs.changed()
		now := time.Now()
		var others []int
		for i := range r.sks {
			if i != cur && r.sks[i].backoff.ready(now) {
				others = append(others, i)
			}
		}
		cands := r.obs.observe(ctx, others)
		if ctx.Err() != nil {
			return
		}
		st := r.Status()
		p := progress{commit: st.CommitLSN, pos: st.StreamLSN, lastWAL: st.LastWAL}
		if d, ok := rules.check(time.Now(), p, cands); ok {
			cancel(d)
			return
		}
	}
}

// session is the message loop of one connection.
type session struct {
	conn     replicationConn
	sink     Sink
	reply    Reply
	silence  time.Duration
	receiver *Receiver // status updates; nil in unit tests
	log      zerolog.Logger
	// clock times feedback (nil: time.Now); tests step their own.
	clock func() time.Time

	pos       lsn.LSN // next byte expected
	commit    lsn.LSN // the safekeeper's commit LSN
	delivered bool
	accepted  lsn.LSN // end of the last WAL the sink accepted
	caughtUp  bool    // logged reaching the commit LSN

	sent       Positions // last reported
	sentAt     time.Time
	everSent   bool
	feedback   pamsg.PageserverFeedback
	feedbackNo uint64 // replies sent, for tests
}

// run reads and handles messages until the connection or the sink fails;
// it never returns nil.
func (s *session) run(ctx context.Context) error {
	if s.sentAt.IsZero() {
		// Nothing to report before the first batch ends.
		s.sentAt = s.now()
	}
	for {
		if err := s.conn.SetDeadline(time.Now().Add(s.silence)); err != nil {
			return err
		}
		m, err := s.conn.Recv()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w for %v (wal_connect_timeout)", errSilent, s.silence)
		}
		if err != nil {
			return err
		}
		replyNow, err := s.handle(ctx, s.now(), m)
		if err != nil {
			return err
		}
		if err := s.maybeReply(s.now(), replyNow); err != nil {
			return fmt.Errorf("send feedback: %w", err)
		}
	}
}

func (s *session) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// handle processes one message; replyNow is set when the safekeeper asked
// for a reply.
func (s *session) handle(ctx context.Context, now time.Time, m replication.ServerMessage) (replyNow bool, err error) {
	switch m := m.(type) {
	case *replication.XLogData:
		if m.WALStart != s.pos {
			return false, fmt.Errorf("%w: it starts at %v, expected %v", errWALGap, m.WALStart, s.pos)
		}
		s.commit = m.WALEnd
		if len(m.Data) > 0 {
			end := s.pos + lsn.LSN(len(m.Data))
			if err := s.sink.WAL(ctx, s.pos, m.Data); err != nil {
				return false, &sinkError{err: err, end: end}
			}
			s.pos, s.accepted, s.delivered = end, end, true
		}
		s.noteMessage(now, len(m.Data) > 0)
	case *replication.Keepalive:
		s.commit = m.WALEnd
		s.noteMessage(now, false)
		replyNow = m.ReplyRequested
	}
	if !s.caughtUp && s.pos >= s.commit {
		s.caughtUp = true
		s.log.Info().Stringer("lsn", s.pos).Msg("caught up with the safekeeper's commit LSN")
	}
	return replyNow, nil
}

func (s *session) noteMessage(now time.Time, wal bool) {
	r := s.receiver
	if r == nil {
		return
	}
	r.mu.Lock()
	r.status.CommitLSN, r.status.StreamLSN, r.status.LastMessage = s.commit, s.pos, now
	if wal {
		r.status.LastWAL = now
	}
	r.mu.Unlock()
}

// maybeReply sends feedback when asked, or when positions moved and the
// batch of messages that arrived together is processed while caught up
// (or the last report is feedbackDelay old).
func (s *session) maybeReply(now time.Time, force bool) error {
	batching := s.conn.Buffered() > 0 || s.pos < s.commit
	if !force && batching && now.Sub(s.sentAt) < feedbackDelay {
		return nil
	}
	var p Positions
	if s.receiver != nil {
		p = s.receiver.positions() // the sink's, with the logical size
	} else {
		p = s.sink.Positions()
	}
	if !force && s.everSent && p == s.sent {
		return nil
	}
	// The sink may have taken longer than the read deadline set before
	// the last Recv; the write gets a fresh one.
	if err := s.conn.SetDeadline(time.Now().Add(s.silence)); err != nil {
		return err
	}
	var err error
	switch s.reply {
	case ReplyStandbyStatus:
		err = s.conn.SendStandbyStatus(replication.StandbyStatus{
			WriteLSN: p.LastReceived, FlushLSN: p.DiskConsistent, ApplyLSN: p.RemoteConsistent, ReplyTime: pgtime.FromTime(now),
		})
	default:
		s.feedback = pamsg.PageserverFeedback{
			CurrentTimelineSize: p.TimelineSize, LastReceivedLSN: p.LastReceived,
			DiskConsistentLSN: p.DiskConsistent, RemoteConsistentLSN: p.RemoteConsistent, ReplyTime: now,
		}
		err = s.conn.SendPageserverFeedback(&s.feedback)
	}
	if err != nil {
		return err
	}
	s.sent, s.sentAt, s.everSent = p, now, true
	s.feedbackNo++
	return nil
}
