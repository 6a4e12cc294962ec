package walservice

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pq"
	"strata.dev/safekeeper/timeline"
)

// PushTuning sets when written WAL gets its fsync under a steady stream.
//
// WAL is flushed (and acknowledged) as soon as the queue of received
// messages runs dry, which gives group commit for free. Under a continuous
// stream the queue never runs dry; Neon then waits for a 1-second ticker
// (Neon #9690: a commit behind a bulk load waits up to a second). Strata
// also flushes once MaxUnflushedBytes have been written or the oldest
// unflushed append is MaxUnflushedDelay old, whichever comes first.
type PushTuning struct {
	MaxUnflushedBytes int
	MaxUnflushedDelay time.Duration
	// QueueLen is how many received messages may wait for the worker.
	QueueLen int
}

func (t PushTuning) withDefaults() PushTuning {
	if t.MaxUnflushedBytes <= 0 {
		t.MaxUnflushedBytes = 1 << 20
	}
	if t.MaxUnflushedDelay <= 0 {
		t.MaxUnflushedDelay = 5 * time.Millisecond
	}
	if t.QueueLen <= 0 {
		t.QueueLen = 256
	}
	return t
}

// walBufs recycles the buffers that carry AppendRequest WAL from the network
// reader to the worker.
var walBufs = sync.Pool{New: func() any { b := make([]byte, 0, pamsg.MaxWALPerAppend); return &b }}

// startWALPush runs the proposer–acceptor protocol (SK §2) for one proposer.
func (s *Service) startWALPush(ctx context.Context, sess *pq.Session, ttid id.TenantTimeline, q string) error {
	opts, err := parseStartWALPush(q)
	if err != nil {
		return pq.Errorf(pq.CodeSyntaxError, "%v", err)
	}
	if err := sess.StartCopyBoth(); err != nil {
		return err
	}
	b, err := sess.ReadCopyData()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	m, err := pamsg.DecodeProposerMessage(opts.version, b)
	if err != nil {
		return pq.Errorf(pq.CodeProtocolViolation, "%v", err)
	}
	greeting, ok := m.(*pamsg.ProposerGreeting)
	if !ok {
		return pq.Errorf(pq.CodeProtocolViolation, "the first message of START_WAL_PUSH must be a ProposerGreeting, got %T", m)
	}
	t, err := s.Registry.Get(ttid)
	if errors.Is(err, timeline.ErrNotFound) {
		if !opts.allowCreation {
			// Neon closes silently here; the proposer retries until the
			// timeline is created by whoever manages membership.
			s.Log.Info().Str("timeline", ttid.String()).Msg("START_WAL_PUSH for an unknown timeline without allow_timeline_creation; closing")
			return nil
		}
		t, err = s.Registry.Create(timeline.CreateRequest{
			TTID: ttid, PgVersion: greeting.PgVersion, SystemID: greeting.SystemID, WalSegSize: greeting.WalSegSize,
		})
		if errors.Is(err, timeline.ErrExists) {
			t, err = s.Registry.Get(ttid)
		}
	}
	if err != nil {
		return pq.Errorf(pq.CodeInternalError, "%v", err)
	}
	prop := t.AddProposer(timeline.ProposerInfo{
		ConnID: sess.ConnID(), Addr: sess.RemoteAddr().String(), AppName: sess.ApplicationName(), Version: opts.version,
	})
	defer prop.Remove()
	if s.Metrics != nil {
		s.Metrics.WALReceivers.Inc()
		defer s.Metrics.WALReceivers.Dec()
	}
	reply, err := t.Greeting(greeting)
	if err != nil {
		s.countMessage("error")
		return pq.Errorf(pq.CodeInternalError, "%v", err)
	}
	p := &pushSession{
		svc: s, sess: sess, t: t, prop: prop, version: opts.version,
		tuning: s.Push.withDefaults(),
		log:    s.Log.With().Str("timeline", ttid.String()).Uint32("conn", sess.ConnID()).Logger(),
	}
	return p.run(ctx, reply)
}

func (s *Service) countMessage(outcome string) {
	if s.Metrics != nil {
		s.Metrics.PAMessages.WithLabelValues(outcome).Inc()
	}
}

type pushSession struct {
	svc     *Service
	sess    *pq.Session
	t       *timeline.Timeline
	prop    *timeline.Proposer
	version pamsg.Version
	tuning  PushTuning
	log     zerolog.Logger

	readErr error // set by the reader before it closes its channel
}

// inbound is a decoded proposer message and, for appends, the pooled buffer
// holding its WAL, to be returned once the worker is done with it.
type inbound struct {
	msg pamsg.ProposerMessage
	buf *[]byte
	at  time.Time
}

// run drives the three goroutines of a session: the network reader (here
// started), the worker (this goroutine: consensus and disk) and the reply
// writer. Reading the network and writing the disk overlap, and so do
// fsync and reading the next messages.
func (p *pushSession) run(ctx context.Context, greeting *pamsg.AcceptorGreeting) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDelete := context.AfterFunc(p.t.Context(), cancel)
	defer stopOnDelete()

	replies := make(chan pamsg.AcceptorMessage, 16)
	writerDone := make(chan error, 1)
	go func() {
		err := p.writeLoop(ctx, replies)
		if err != nil {
			cancel()
		}
		writerDone <- err
	}()
	in := make(chan inbound, p.tuning.QueueLen)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.readLoop(ctx, in)
	}()

	err := p.send(ctx, replies, greeting)
	if err == nil {
		err = p.work(ctx, in, replies)
	}
	// Stop the reader, give back the buffers of whatever it queued, and let
	// the writer send what is left.
	p.sess.InterruptRead()
	cancel()
	<-readerDone
	for m := range in {
		putBuf(m.buf)
	}
	close(replies)
	werr := <-writerDone
	if err == nil && werr != nil && !errors.Is(werr, context.Canceled) {
		err = werr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		p.log.Info().Err(err).Msg("WAL push session ended")
	}
	if errors.Is(err, context.Canceled) && p.t.Context().Err() != nil {
		return pq.Errorf(pq.CodeAdminShutdown, "timeline %s was deleted", p.t.TTID)
	}
	return err
}

func putBuf(b *[]byte) {
	if b != nil {
		*b = (*b)[:0]
		walBufs.Put(b)
	}
}

// readLoop decodes CopyData messages into the worker's queue. WAL is copied
// out of the connection's buffer, which the next read reuses.
func (p *pushSession) readLoop(ctx context.Context, in chan<- inbound) {
	defer close(in)
	for {
		b, err := p.sess.ReadCopyData()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, pq.ErrReadInterrupted) {
				err = nil
			}
			p.readErr = err
			return
		}
		m, err := pamsg.DecodeProposerMessage(p.version, b)
		if err != nil {
			p.readErr = pq.Errorf(pq.CodeProtocolViolation, "%v", err)
			return
		}
		ib := inbound{msg: m, at: time.Now()}
		if a, ok := m.(*pamsg.AppendRequest); ok && len(a.WAL) > 0 {
			ib.buf = walBufs.Get().(*[]byte)
			*ib.buf = append((*ib.buf)[:0], a.WAL...)
			a.WAL = *ib.buf
			if p.svc.Metrics != nil {
				p.svc.Metrics.ReceivedWALBytes.Add(float64(len(a.WAL)))
			}
		}
		select {
		case in <- ib:
		case <-ctx.Done():
			putBuf(ib.buf)
			return
		}
	}
}

// work is the acceptor loop of SK §3.6 with Strata's flush rule (PushTuning).
func (p *pushSession) work(ctx context.Context, in <-chan inbound, replies chan<- pamsg.AcceptorMessage) error {
	var (
		dirty     bool
		unflushed int
		// firstWrite is when the oldest unflushed append was written: the
		// delay bound counts from there, not from arrival, or a backlog
		// (every queued message already old) would fsync every message.
		firstWrite time.Time
		// oldestArrival is when the oldest unacknowledged append arrived.
		oldestArrival time.Time
	)
	flush := func() error {
		r, err := p.t.FlushWAL()
		if err != nil {
			return pq.Errorf(pq.CodeInternalError, "%v", err)
		}
		if p.svc.Metrics != nil && !oldestArrival.IsZero() {
			p.svc.Metrics.AckLatency.Observe(time.Since(oldestArrival).Seconds())
		}
		dirty, unflushed, firstWrite, oldestArrival = false, 0, time.Time{}, time.Time{}
		return p.send(ctx, replies, r)
	}
	for {
		var ib inbound
		var ok bool
		if dirty {
			select {
			case ib, ok = <-in:
			default:
				// The queue ran dry: one fsync and one reply for the burst.
				if err := flush(); err != nil {
					return err
				}
				continue
			}
		} else {
			select {
			case ib, ok = <-in:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			if dirty {
				// WAL received before the disconnect must be durable and
				// visible to the next VoteRequest (Neon #9259).
				if _, err := p.t.FlushWAL(); err != nil {
					return pq.Errorf(pq.CodeInternalError, "%v", err)
				}
			}
			if ctx.Err() != nil && p.readErr == nil {
				return ctx.Err()
			}
			return p.readErr
		}
		if p.svc.Metrics != nil {
			p.svc.Metrics.QueueDepth.Observe(float64(len(in)))
		}
		switch m := ib.msg.(type) {
		case *pamsg.AppendRequest:
			r, err := p.t.Append(m)
			putBuf(ib.buf)
			if err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("append")
			if r != nil {
				if err := p.send(ctx, replies, r); err != nil {
					return err
				}
			}
			dirty = true
			unflushed += len(m.WAL)
			if firstWrite.IsZero() {
				firstWrite, oldestArrival = time.Now(), ib.at
			}
			if unflushed >= p.tuning.MaxUnflushedBytes || time.Since(firstWrite) >= p.tuning.MaxUnflushedDelay {
				if err := flush(); err != nil {
					return err
				}
			}
		case *pamsg.VoteRequest:
			r, err := p.t.Vote(m)
			if err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("vote")
			if err := p.send(ctx, replies, r); err != nil {
				return err
			}
		case *pamsg.ProposerElected:
			if err := p.t.Elected(m); err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("elected")
			p.prop.Streaming(m.Term)
		case *pamsg.ProposerGreeting:
			return pq.Errorf(pq.CodeProtocolViolation, "unexpected second ProposerGreeting")
		}
	}
}

// send queues a reply for the writer.
func (p *pushSession) send(ctx context.Context, replies chan<- pamsg.AcceptorMessage, r pamsg.AcceptorMessage) error {
	select {
	case replies <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeLoop encodes and sends replies. When a pageserver reports progress,
// the last AppendResponse is sent again carrying that feedback, so the
// proposer learns the pageserver's positions (SK §3.6).
func (p *pushSession) writeLoop(ctx context.Context, replies <-chan pamsg.AcceptorMessage) error {
	var (
		last    *pamsg.AppendResponse
		buf     []byte
		err     error
		fb, fch = p.t.WatchPageserverFeedback()
		seenSeq = fb.Seq
	)
	write := func(r pamsg.AcceptorMessage) error {
		buf, err = pamsg.AppendAcceptorMessage(buf[:0], p.version, r)
		if err != nil {
			return err
		}
		return p.sess.WriteCopyData(buf)
	}
	for {
		select {
		case r, ok := <-replies:
			if !ok {
				return p.sess.Flush()
			}
			for {
				if ar, isAppend := r.(*pamsg.AppendResponse); isAppend {
					cp := *ar
					last = &cp
				}
				if err := write(r); err != nil {
					return err
				}
				// Send whatever else is ready in the same flush.
				select {
				case r, ok = <-replies:
					if !ok {
						return p.sess.Flush()
					}
					continue
				default:
				}
				break
			}
			if err := p.sess.Flush(); err != nil {
				return err
			}
		case <-fch:
			fb, fch = p.t.WatchPageserverFeedback()
			if last == nil || fb.Seq == seenSeq {
				continue
			}
			seenSeq = fb.Seq
			r := *last
			f := fb.Feedback
			r.PageserverFeedback = &f
			if err := write(&r); err != nil {
				return err
			}
			if err := p.sess.Flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
