package walservice

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pgtime"
	"strata.dev/libs/pq"
	"strata.dev/libs/replication"
	"strata.dev/safekeeper/timeline"
	"strata.dev/safekeeper/walstore"
)

// maxSendSize is MAX_SEND_SIZE: the most WAL one XLogData carries.
const maxSendSize = 16 * lsn.PageSize

// keepaliveInterval is how long a sender waits for new WAL before it sends a
// keepalive (and checks whether it should stop).
const keepaliveInterval = time.Second

// startReplication streams WAL to a replication client (SK §5): a
// pageserver, a standby, pg_receivewal, or a proposer recovering WAL.
func (s *Service) startReplication(ctx context.Context, sess *pq.Session, ttid id.TenantTimeline, q string) error {
	req, err := parseStartReplication(q)
	if err != nil {
		return pq.Errorf(pq.CodeSyntaxError, "%v", err)
	}
	t, err := s.timeline(ttid)
	if err != nil {
		return err
	}
	sender := t.AddSender(timeline.SenderInfo{
		ConnID: sess.ConnID(), Addr: sess.RemoteAddr().String(), AppName: sess.ApplicationName(),
		Recovery: req.term != nil, StartLSN: req.start,
	})
	defer sender.Remove()
	if s.Metrics != nil {
		s.Metrics.WALReaders.Inc()
		defer s.Metrics.WALReaders.Dec()
	}
	if err := sess.StartCopyBoth(); err != nil {
		return err
	}
	reader, err := t.NewWALReader(req.start)
	if err != nil {
		return pq.Errorf(pq.CodeInternalError, "%v", err)
	}
	defer reader.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDelete := context.AfterFunc(t.Context(), cancel)
	defer stopOnDelete()

	snd := &walSender{
		svc: s, sess: sess, t: t, sender: sender, reader: reader, req: req,
		log: s.Log.With().Str("timeline", ttid.String()).Uint32("conn", sess.ConnID()).Str("app", sess.ApplicationName()).Logger(),
	}
	repliesDone := make(chan error, 1)
	go func() {
		err := snd.readReplies()
		cancel()
		repliesDone <- err
	}()
	err = snd.run(ctx)
	if snd.clientDone.Load() {
		// The client ended the stream with CopyDone (pg_receivewal at
		// --endpos): answer like a walsender, CopyDone then
		// CommandComplete, and keep the session.
		<-repliesDone
		if err := sess.EndCopy(); err != nil {
			return err
		}
		return sess.WriteCommandComplete("START_STREAMING")
	}
	sess.InterruptRead()
	rerr := <-repliesDone
	if rerr != nil {
		// A client error (CopyFail) explains the end better than the
		// cancellation it caused.
		return rerr
	}
	if errors.Is(err, context.Canceled) {
		if t.Context().Err() != nil {
			return pq.Errorf(pq.CodeAdminShutdown, "timeline %s was deleted", ttid)
		}
		return nil
	}
	return err
}

type walSender struct {
	svc    *Service
	sess   *pq.Session
	t      *timeline.Timeline
	sender *timeline.Sender
	reader *walstore.Reader
	req    replicationRequest
	log    zerolog.Logger
	// clientDone is set when the client sent CopyDone.
	clientDone atomic.Bool
}

// endOf is the end of streamable WAL: the commit LSN for ordinary clients,
// the flush LSN for recovery (SK §5.1).
func (w *walSender) endOf(s timeline.Status) lsn.LSN {
	if w.req.term != nil {
		return s.FlushLSN
	}
	return s.CommitLSN
}

// checkTerm enforces recovery mode: WAL is only served while the acceptor is
// still in the requested term, so a proposer never recovers WAL a newer
// term has truncated.
func (w *walSender) checkTerm(s timeline.Status) error {
	if w.req.term == nil {
		return nil
	}
	if s.Term != *w.req.term {
		return pq.Errorf(pq.CodeInternalError, "failed to acquire term %d: safekeeper is in term %d", *w.req.term, s.Term)
	}
	return nil
}

func (w *walSender) run(ctx context.Context) error {
	pos := w.req.start
	buf := make([]byte, replication.XLogDataHeaderSize+maxSendSize)
	if err := w.checkTerm(w.t.Status()); err != nil {
		return err
	}
	for {
		st, changed := w.t.WatchStatus()
		end := w.endOf(st)
		if end <= pos {
			if err := w.wait(ctx, st, changed, end, pos); err != nil {
				return err
			}
			continue
		}
		chunkEnd := pos + maxSendSize
		if chunkEnd >= end {
			chunkEnd = end
		} else {
			chunkEnd = chunkEnd.PageStart()
		}
		w.reader.SetEnd(end)
		n, err := w.reader.Read(buf[replication.XLogDataHeaderSize : replication.XLogDataHeaderSize+int(chunkEnd-pos)])
		if err != nil {
			return pq.Errorf(pq.CodeInternalError, "read WAL at %v: %v", pos, err)
		}
		// A truncation needs a new term; checking after the read proves
		// the bytes read belong to the requested term.
		if err := w.checkTerm(w.t.Status()); err != nil {
			return err
		}
		replication.AppendXLogDataHeader(buf[:0], pos, end, pgtime.Now())
		if err := w.sess.WriteCopyData(buf[:replication.XLogDataHeaderSize+n]); err != nil {
			return err
		}
		if err := w.sess.Flush(); err != nil {
			return err
		}
		pos += lsn.LSN(n)
		w.sender.Sent(pos)
		if w.svc.Metrics != nil {
			w.svc.Metrics.SentWALBytes.Add(float64(n))
		}
	}
}

// wait blocks until more WAL is streamable. Every keepaliveInterval of
// silence it sends a keepalive and checks the stop rule of SK §5.7.
func (w *walSender) wait(ctx context.Context, st timeline.Status, changed <-chan struct{}, end, pos lsn.LSN) error {
	timer := time.NewTimer(keepaliveInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			st, changed = w.t.WatchStatus()
			if err := w.checkTerm(st); err != nil {
				return err
			}
			if w.endOf(st) > pos {
				return nil
			}
		case <-timer.C:
			st = w.t.Status()
			if w.shouldStop(st, pos) {
				return pq.Errorf(pq.CodeSuccessfulCompletion, "ending streaming to %q at %v, receiver is caughtup and there is no computes", w.sess.ApplicationName(), pos)
			}
			k := replication.Keepalive{WALEnd: w.endOf(st), SendTime: pgtime.Now(), ReplyRequested: true}
			if err := w.sess.WriteCopyData(k.Append(nil)); err != nil {
				return err
			}
			if err := w.sess.Flush(); err != nil {
				return err
			}
			timer.Reset(keepaliveInterval)
		}
	}
}

// shouldStop: a pageserver that has everything durable is let go when no
// proposer is connected, so idle timelines cost nothing (SK §5.7).
func (w *walSender) shouldStop(st timeline.Status, pos lsn.LSN) bool {
	if w.req.term != nil || w.t.Computes() > 0 {
		return false
	}
	info := w.sender.Info()
	if info.Kind != timeline.SenderPageserver {
		return false
	}
	// A client that has said nothing yet counts as a pageserver at 0; do not
	// drop it before it had a chance to speak.
	if info.PSFeedback.RemoteConsistentLSN == 0 && time.Since(info.Started) < 10*keepaliveInterval {
		return false
	}
	return st.CommitLSN == 0 || info.PSFeedback.RemoteConsistentLSN >= st.CommitLSN
}

// readReplies consumes the client's messages: standby replies, hot-standby
// feedback and pageserver feedback (SK §5.5).
func (w *walSender) readReplies() error {
	for {
		b, err := w.sess.ReadCopyData()
		if err != nil {
			if errors.Is(err, pq.ErrCopyDone) {
				w.clientDone.Store(true)
				return nil
			}
			if errors.Is(err, io.EOF) || errors.Is(err, pq.ErrReadInterrupted) {
				return nil
			}
			if errors.Is(err, pq.ErrCopyFail) {
				return pq.Errorf(pq.CodeSuccessfulCompletion, "%v", err)
			}
			return err
		}
		m, err := replication.DecodeClientMessage(b)
		if err != nil {
			return pq.Errorf(pq.CodeProtocolViolation, "%v", err)
		}
		switch m := m.(type) {
		case *replication.StandbyStatus:
			w.sender.StandbyReply(*m)
		case *replication.HotStandbyFeedback:
			w.sender.HotStandbyFeedback(*m)
		case *pamsg.PageserverFeedback:
			if w.svc.Metrics != nil {
				w.svc.Metrics.PSFeedbacks.Inc()
			}
			if err := w.sender.PageserverFeedback(*m); err != nil {
				return err
			}
		case nil:
			w.log.Debug().Msgf("ignoring replication message with tag %q", b[0])
		}
	}
}
