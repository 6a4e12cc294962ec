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
	"strata.dev/safekeeper/walstore"
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
}

func (t PushTuning) withDefaults() PushTuning {
	if t.MaxUnflushedBytes <= 0 {
		t.MaxUnflushedBytes = 1 << 20
	}
	if t.MaxUnflushedDelay <= 0 {
		t.MaxUnflushedDelay = 5 * time.Millisecond
	}
	return t
}

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

	wmu  sync.Mutex // serializes writes: the loop's replies and feedback relays
	buf  []byte
	last *pamsg.AppendResponse // the last AppendResponse sent, for relays
}

// run is the acceptor loop of SK §3.6. One goroutine reads the network and
// appends WAL, as pg_receivewal does, so the commit path has no goroutine
// handoffs: when the burst of messages that has arrived is consumed, it
// fsyncs and replies itself. Under a continuous stream, once
// MaxUnflushedBytes or MaxUnflushedDelay is reached, the fsync runs on a
// flusher goroutine while the loop keeps reading and writing: the network
// and the disk work concurrently, and the reply goes out when the fsync ends.
func (p *pushSession) run(ctx context.Context, greeting *pamsg.AcceptorGreeting) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDelete := context.AfterFunc(p.t.Context(), cancel)
	defer stopOnDelete()
	stopRead := context.AfterFunc(ctx, p.sess.InterruptRead)
	defer stopRead()
	if err := p.reply(greeting); err != nil {
		return err
	}
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		p.relayFeedback(ctx)
	}()
	jobs := make(chan flushJob, 1)
	results := make(chan flushResult, 1)
	go func() {
		for j := range jobs {
			results <- flushResult{flushJob: j, err: j.job()}
		}
	}()
	err := p.loop(ctx, jobs, results)
	close(jobs)
	cancel()
	<-relayDone
	if err != nil && !errors.Is(err, context.Canceled) {
		p.log.Info().Err(err).Msg("WAL push session ended")
	}
	if p.t.Context().Err() != nil {
		return pq.Errorf(pq.CodeAdminShutdown, "timeline %s was deleted", p.t.TTID)
	}
	return err
}

// When at least lingerBytes are unflushed and the input pauses, the loop
// waits up to lingerDelay for more before it fsyncs.
const (
	lingerBytes = 64 << 10
	lingerDelay = 200 * time.Microsecond
)

// flushJob is an fsync handed to the flusher goroutine.
type flushJob struct {
	job           func() error
	target        walstore.FlushTarget
	oldestArrival time.Time
	batch         int
}

type flushResult struct {
	flushJob
	err error
}

func (p *pushSession) loop(ctx context.Context, jobs chan<- flushJob, results <-chan flushResult) error {
	var (
		// owed: WAL or heartbeats arrived that no reply has covered yet.
		owed      bool
		unflushed int
		// firstWrite is when the oldest unflushed append was written: the
		// delay bound counts from there.
		firstWrite time.Time
		// oldestArrival is when the oldest unacknowledged append arrived.
		oldestArrival time.Time
		batch         int // messages since the last flush
		inflight      bool
	)
	observe := func(arrival time.Time, n int) {
		if m := p.svc.Metrics; m != nil && !arrival.IsZero() {
			m.AckLatency.Observe(time.Since(arrival).Seconds())
			m.BatchMessages.Observe(float64(n))
		}
	}
	// collect takes the flusher's result, waiting for it if wait is set.
	collect := func(wait bool) error {
		if !inflight {
			return nil
		}
		var res flushResult
		if wait {
			res = <-results
		} else {
			select {
			case res = <-results:
			default:
				return nil
			}
		}
		inflight = false
		if res.err != nil {
			return pq.Errorf(pq.CodeInternalError, "%v", res.err)
		}
		r, err := p.t.CompleteFlush(res.target)
		if err != nil {
			return pq.Errorf(pq.CodeInternalError, "%v", err)
		}
		observe(res.oldestArrival, res.batch)
		return p.reply(r)
	}
	// flushNow fsyncs on this goroutine and replies.
	flushNow := func() error {
		r, err := p.t.FlushWAL()
		if err != nil {
			return pq.Errorf(pq.CodeInternalError, "%v", err)
		}
		observe(oldestArrival, batch)
		owed, unflushed, firstWrite, oldestArrival, batch = false, 0, time.Time{}, time.Time{}, 0
		return p.reply(r)
	}
	for {
		// Never wait for the network while an fsync is in flight: its
		// reply is what the proposer may be waiting for.
		if inflight && !p.sess.InputPending() {
			if err := collect(true); err != nil {
				return err
			}
		}
		b, err := p.sess.ReadCopyData()
		now := time.Now()
		if err != nil {
			if cerr := collect(true); cerr != nil && err == nil {
				err = cerr
			}
			if owed {
				// WAL received before the disconnect must be durable and
				// visible to the next VoteRequest (Neon #9259).
				if _, ferr := p.t.FlushWAL(); ferr != nil {
					return pq.Errorf(pq.CodeInternalError, "%v", ferr)
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, pq.ErrReadInterrupted) {
				return nil
			}
			return err
		}
		m, err := pamsg.DecodeProposerMessage(p.version, b)
		if err != nil {
			return pq.Errorf(pq.CodeProtocolViolation, "%v", err)
		}
		batch++
		switch m := m.(type) {
		case *pamsg.AppendRequest:
			// m.WAL aliases the read buffer; the WAL store copies it.
			r, err := p.t.Append(m)
			if err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("append")
			if p.svc.Metrics != nil {
				p.svc.Metrics.ReceivedWALBytes.Add(float64(len(m.WAL)))
			}
			if r != nil {
				if err := p.reply(r); err != nil {
					return err
				}
			}
			owed = true
			unflushed += len(m.WAL)
			if firstWrite.IsZero() {
				firstWrite, oldestArrival = now, now
			}
		case *pamsg.VoteRequest:
			if err := collect(true); err != nil {
				return err
			}
			r, err := p.t.Vote(m)
			if err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("vote")
			if err := p.reply(r); err != nil {
				return err
			}
		case *pamsg.ProposerElected:
			if err := collect(true); err != nil {
				return err
			}
			if err := p.t.Elected(m); err != nil {
				p.svc.countMessage("error")
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			p.svc.countMessage("elected")
			p.prop.Streaming(m.Term)
		case *pamsg.ProposerGreeting:
			return pq.Errorf(pq.CodeProtocolViolation, "unexpected second ProposerGreeting")
		}
		if err := collect(false); err != nil {
			return err
		}
		if !owed {
			continue
		}
		bound := unflushed >= p.tuning.MaxUnflushedBytes || time.Since(firstWrite) >= p.tuning.MaxUnflushedDelay
		// Asked once: with nothing buffered it is an ioctl, on every message.
		pending := p.sess.InputPending()
		switch {
		case !pending && !bound && unflushed >= lingerBytes && p.sess.WaitInput(lingerDelay):
			// A stream relayed at its source's pace arrives in pieces that
			// each look like the end of a burst; a moment's wait saves an
			// fsync per piece. A commit after little WAL never waits.
			continue
		case !pending:
			// The burst is over: one fsync and one reply for it, here.
			if err := collect(true); err != nil {
				return err
			}
			if err := flushNow(); err != nil {
				return err
			}
		case !inflight && bound:
			// A continuous stream: fsync what is written while reading on.
			job, target, err := p.t.PrepareFlush()
			if err != nil {
				return pq.Errorf(pq.CodeInternalError, "%v", err)
			}
			if job == nil {
				continue // only heartbeats: the next idle moment replies
			}
			jobs <- flushJob{job: job, target: target, oldestArrival: oldestArrival, batch: batch}
			inflight = true
			owed, unflushed, firstWrite, oldestArrival, batch = false, 0, time.Time{}, time.Time{}, 0
		}
	}
}

// reply sends one acceptor message right away.
func (p *pushSession) reply(r pamsg.AcceptorMessage) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if ar, ok := r.(*pamsg.AppendResponse); ok {
		cp := *ar
		p.last = &cp
	}
	return p.writeLocked(r)
}

func (p *pushSession) writeLocked(r pamsg.AcceptorMessage) error {
	var err error
	p.buf, err = pamsg.AppendAcceptorMessage(p.buf[:0], p.version, r)
	if err != nil {
		return err
	}
	if err := p.sess.WriteCopyData(p.buf); err != nil {
		return err
	}
	return p.sess.Flush()
}

// relayFeedback sends the last AppendResponse again, carrying a
// pageserver's new feedback, so the proposer learns the pageserver's
// positions (SK §3.6).
func (p *pushSession) relayFeedback(ctx context.Context) {
	fb, ch := p.t.WatchPageserverFeedback()
	seen := fb.Seq
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		fb, ch = p.t.WatchPageserverFeedback()
		if fb.Seq == seen {
			continue
		}
		seen = fb.Seq
		p.wmu.Lock()
		if p.last != nil {
			r := *p.last
			f := fb.Feedback
			r.PageserverFeedback = &f
			if err := p.writeLocked(&r); err != nil {
				p.wmu.Unlock()
				return
			}
		}
		p.wmu.Unlock()
	}
}
