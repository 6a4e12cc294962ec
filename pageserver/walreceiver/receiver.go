// Package walreceiver streams one timeline's WAL from a safekeeper into the
// pageserver (PS §2.1–§2.2).
//
// The pageserver speaks the vanilla physical replication protocol: it
// learns every configured safekeeper's commit and flush LSNs (from their
// gRPC WatchTimeline streams when it has their gRPC clients, else by
// polling TIMELINE_STATUS), streams with START_REPLICATION from the one
// that has the most WAL, and hands the raw bytes to a Sink (the ingest
// code), which decodes records itself. After each batch of messages, and
// whenever a keepalive asks, it reports the sink's positions back in Neon's
// 'z' PageserverFeedback message; with gRPC clients it also reports them to
// every safekeeper with ReportPageserverFeedback, every ReportInterval and
// when a durable position advances. A safekeeper removes WAL below the
// remote-consistent LSN reported to it.
//
// Guarantees:
//   - Between two Begin calls the sink receives one contiguous byte range:
//     every WAL call starts exactly where the previous one ended, and the
//     first starts at the sink's last_record_lsn aligned up to 8 and moved
//     past a page header it falls on. A safekeeper that sends WAL anywhere
//     else is dropped.
//   - Only committed WAL is streamed (the safekeeper's committed mode).
//   - The safekeeper streamed from has the highest commit LSN, then the
//     highest flush LSN (the lowest lag), of those usable: reachable, with
//     the timeline, and (watching) with an open WatchTimeline stream.
//   - No safekeeper is told a remote-consistent LSN above the sink's.
//   - A connection ends, and the next one starts with Begin, when the
//     safekeeper fails or goes silent for WALConnectTimeout, when the sink
//     refuses WAL, or when a switching rule of SK §7.4 picks another
//     safekeeper: another is ahead by MaxLSNWALLag, or has WAL that this
//     connection has not delivered for LaggingWALTimeout.
//   - Failed safekeepers are retried with exponential backoff (BackoffMin
//     ×1.5 up to BackoffMax, reset once a connection to it delivered WAL); a
//     sink that keeps failing at the same place is retried with the same
//     backoff, reset once it gets past that place.
//   - Run returns only after every goroutine it started has ended.
//
// Files: receiver.go (configuration and the connect–stream–reconnect loop),
// stream.go (one connection), policy.go (choosing, switching and backoff as
// pure functions), candidates.go (what the receiver knows of the
// safekeepers; polling them), watch.go (WatchTimeline streams), report.go
// (ReportPageserverFeedback), dial.go (the gRPC connections).
package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/skclient"
	pb "strata.dev/proto/safekeeper/v1"
)

// Positions are what the pageserver reports back (PS §2.2 feedback).
type Positions struct {
	LastReceived     lsn.LSN // ps_writelsn: end of the last ingested record
	DiskConsistent   lsn.LSN // ps_flushlsn
	RemoteConsistent lsn.LSN // ps_applylsn: safekeepers may remove WAL below it
	TimelineSize     uint64  // current_timeline_size (bytes)
}

// Sink consumes the stream. Its methods are called from one goroutine at a
// time.
type Sink interface {
	// Begin is called before every connection streams; the sink resets its
	// WAL decoder and returns the LSN to stream from (its last_record_lsn;
	// the receiver normalizes and aligns it as PS §2.1 says, and the first
	// WAL call tells where the bytes really start). An error (e.g.
	// last_record_lsn == 0) stops Run.
	Begin() (lsn.LSN, error)
	// WAL receives the next contiguous bytes, starting exactly where the
	// previous call ended. data is valid only during the call. An error
	// ends this connection (the receiver logs it and reconnects, calling
	// Begin again). ctx ends when the connection is given up.
	WAL(ctx context.Context, start lsn.LSN, data []byte) error
	// Positions is read after WAL calls (at least once per batch of
	// messages), on keepalives asking for a reply, and (with gRPC clients)
	// every 100 ms from another goroutine, concurrently with the other
	// methods. It must be cheap.
	Positions() Positions
}

// Reply is the message a receiver reports its positions with.
type Reply int

const (
	// ReplyPageserverFeedback is Neon's 'z' message carrying all four
	// positions. Only safekeepers understand it.
	ReplyPageserverFeedback Reply = iota
	// ReplyStandbyStatus is the standard 'r' standby status update (write =
	// LastReceived, flush = DiskConsistent, apply = RemoteConsistent). A
	// vanilla PostgreSQL walsender needs it: it disconnects on 'z' (PS §12
	// item 17). A safekeeper then treats the receiver as a standby.
	ReplyStandbyStatus
)

// Defaults of Config (PS §2.1, SK §7.4).
const (
	DefaultMaxLSNWALLag      = 1 << 30
	DefaultLaggingWALTimeout = 10 * time.Second
	DefaultWALConnectTimeout = 10 * time.Second
	DefaultStatusInterval    = time.Second
	DefaultBackoffMin        = 100 * time.Millisecond
	DefaultBackoffMax        = 15 * time.Second
	DefaultReportInterval    = time.Second
)

// Config says where a timeline's WAL is and how to follow it.
type Config struct {
	Safekeepers []string // host:port of each safekeeper's libpq port
	// SafekeeperClients are the same safekeepers' gRPC clients, in the same
	// order (see Dial). With them the receiver watches the safekeepers
	// (WatchTimeline) instead of polling TIMELINE_STATUS, and reports its
	// positions to each (ReportPageserverFeedback). Empty: none.
	SafekeeperClients []pb.SafekeeperClient
	TTID              id.TenantTimeline
	Token             string // JWT for the safekeepers, if they require auth
	NodeID            uint64 // the pageserver's id: application_name pageserver-<id>
	// AppName overrides application_name.
	AppName string
	// SegmentSize is the timeline's WAL segment size (default 16 MiB); the
	// start point skips a long page header at segment starts.
	SegmentSize uint64

	// Switching rules of PS §2.1: switch when another safekeeper's commit
	// LSN is ahead of the connected one's by MaxLSNWALLag (default 1 GiB);
	// when another has WAL this connection has not delivered for
	// LaggingWALTimeout (default 10 s); when the connection is silent for
	// WALConnectTimeout (default 10 s, also the connect timeout).
	MaxLSNWALLag      uint64
	LaggingWALTimeout time.Duration
	WALConnectTimeout time.Duration
	// StatusInterval is how often the other safekeepers' commit LSNs are
	// polled while streaming, and all of them while waiting (default 1 s).
	// Watching, it is how often the switching rules are evaluated besides
	// every change, and the longest wait before a safekeeper that said
	// NOT_FOUND is watched again.
	StatusInterval time.Duration
	// ReportInterval is how often positions are reported over gRPC when no
	// durable position advanced (default 1 s).
	ReportInterval time.Duration
	// Reconnect backoff bounds (defaults 100 ms and 15 s; ×1.5 per failure).
	BackoffMin time.Duration
	BackoffMax time.Duration

	// LogicalSize, if set, is the timeline's logical size at an LSN (bytes
	// of every relation fork): reported as current_timeline_size when the
	// sink's Positions leave it 0. It is computed at the disk-consistent
	// LSN from the reporting goroutine, at most every sizeInterval.
	LogicalSize func(ctx context.Context, at lsn.LSN) (uint64, error)

	// Reply is the feedback message sent (default 'z').
	Reply Reply
	Log   zerolog.Logger
}

// Status is a snapshot of a receiver, for metrics and status APIs.
type Status struct {
	// Safekeeper is the address streamed from; "" while not streaming.
	Safekeeper string
	// CommitLSN is that safekeeper's commit LSN (wal_end of its last message).
	CommitLSN lsn.LSN
	// StreamLSN is the next WAL byte expected from it.
	StreamLSN lsn.LSN
	// LastMessage is when it last sent anything; LastWAL when it last sent WAL.
	LastMessage time.Time
	LastWAL     time.Time
	// LastError is why the last connection or attempt failed (nil before
	// any failure), and LastErrorTime when.
	LastError     error
	LastErrorTime time.Time
	// Connections counts streams started; Reconnects those after the first.
	Connections uint64
	Reconnects  uint64
	// Failures counts connections and attempts that ended in an error.
	Failures uint64
}

// Receiver follows one timeline. Create it with New and call Run once.
type Receiver struct {
	cfg  Config
	sink Sink
	log  zerolog.Logger

	// obs is what the safekeepers have: watch, or a poller without gRPC.
	obs   observer
	watch *watcher // nil without gRPC clients

	// sks is used by Run's goroutine, and by a connection's monitor only
	// while Run waits for that connection.
	sks  []skState
	prev int // index of the safekeeper streamed from last, -1 if none
	// sinkRetry delays the next Begin after the sink refused WAL; it is
	// reset once the sink accepts WAL beyond sinkFailedEnd, the end of the
	// data it refused.
	sinkRetry     backoffState
	sinkFailedEnd lsn.LSN
	// settleBy: until then choose waits for every watch stream's first
	// word, so that the first pick is not whichever answered first.
	settleBy time.Time

	// size is the last LogicalSize computed; 0 before.
	size atomic.Uint64

	mu     sync.Mutex
	status Status
}

// skState is what the receiver remembers about one safekeeper.
type skState struct {
	addr    string
	backoff backoffState
	pollErr string // last TIMELINE_STATUS failure, to log changes only
}

// New returns a receiver that streams cfg.TTID into sink.
func New(cfg Config, sink Sink) *Receiver {
	if cfg.SegmentSize == 0 {
		cfg.SegmentSize = lsn.DefaultSegmentSize
	}
	if cfg.MaxLSNWALLag == 0 {
		cfg.MaxLSNWALLag = DefaultMaxLSNWALLag
	}
	if cfg.LaggingWALTimeout <= 0 {
		cfg.LaggingWALTimeout = DefaultLaggingWALTimeout
	}
	if cfg.WALConnectTimeout <= 0 {
		cfg.WALConnectTimeout = DefaultWALConnectTimeout
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	cfg.BackoffMin, cfg.BackoffMax = backoffBounds(cfg.BackoffMin, cfg.BackoffMax)
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	if cfg.AppName == "" {
		cfg.AppName = fmt.Sprintf("pageserver-%d", cfg.NodeID)
	}
	r := &Receiver{
		cfg: cfg, sink: sink, prev: -1,
		log: cfg.Log.With().Str("timeline", cfg.TTID.String()).Logger(),
	}
	for _, a := range cfg.Safekeepers {
		r.sks = append(r.sks, skState{addr: a})
	}
	r.obs = poller{r}
	if len(cfg.SafekeeperClients) > 0 {
		r.watch = newWatcher(cfg.SafekeeperClients, cfg.Safekeepers, cfg.TTID,
			watchRetry{backoff: r.backoff(), notFoundMax: cfg.StatusInterval}, r.log)
		r.obs = r.watch
	}
	return r
}

// backoffBounds are the reconnect backoff bounds with their defaults
// (Config.BackoffMin and BackoffMax; Dial's).
func backoffBounds(lo, hi time.Duration) (time.Duration, time.Duration) {
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi < lo {
		hi = max(DefaultBackoffMax, lo)
	}
	return lo, hi
}

// positions are the sink's positions, with the last logical size
// computed if the sink gives none.
func (r *Receiver) positions() Positions {
	p := r.sink.Positions()
	if p.TimelineSize == 0 {
		p.TimelineSize = r.size.Load()
	}
	return p
}

// Status returns a snapshot of the receiver's state.
func (r *Receiver) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Receiver) backoff() backoff {
	return backoff{min: r.cfg.BackoffMin, max: r.cfg.BackoffMax}
}

func (r *Receiver) skConfig(addr string) skclient.Config {
	return skclient.Config{
		Addr: addr, TTID: r.cfg.TTID, AppName: r.cfg.AppName, Token: r.cfg.Token,
		ConnectTimeout: r.cfg.WALConnectTimeout,
	}
}

// Run streams until ctx ends (it then returns ctx.Err()) or Begin fails.
func (r *Receiver) Run(ctx context.Context) error {
	if len(r.sks) == 0 {
		return errors.New("walreceiver: no safekeepers configured")
	}
	if n := len(r.cfg.SafekeeperClients); n > 0 && n != len(r.sks) {
		return fmt.Errorf("walreceiver: %d safekeepers and %d gRPC clients: want one client per safekeeper, in the same order", len(r.sks), n)
	}
	if r.watch != nil {
		// Watching and reporting run as long as Run does.
		var wg sync.WaitGroup
		bg, stop := context.WithCancel(ctx)
		defer func() {
			stop()
			wg.Wait()
		}()
		r.watch.start(bg, &wg)
		r.startReporting(bg, &wg)
		r.settleBy = time.Now().Add(r.statusTimeout())
	}
	next := -1             // a switching rule's choice for the next connection
	var beyond lsn.LSN     // after a caught-up end: connect only for WAL beyond this
	var nextCommit lsn.LSN // commit LSN of next when it was chosen
	for {
		if err := sleepUntil(ctx, r.sinkRetry.retryAt, nil); err != nil {
			return err
		}
		i, commit, err := r.choose(ctx, next, nextCommit, beyond)
		if err != nil {
			return err
		}
		next, beyond = -1, 0
		last, err := r.sink.Begin()
		if err != nil {
			return fmt.Errorf("walreceiver %s: begin: %w", r.cfg.TTID, err)
		}
		if last == lsn.Invalid {
			return fmt.Errorf("walreceiver %s: no previous WAL position (last_record_lsn 0)", r.cfg.TTID)
		}
		start := startPoint(last, r.cfg.SegmentSize)
		end := r.stream(ctx, i, commit, start)

		now := time.Now()
		sk := &r.sks[i]
		log := r.log.With().Str("safekeeper", sk.addr).Stringer("lsn", end.pos).Logger()
		if end.delivered {
			// SK §7.4: a connection that processed WAL resets the backoff.
			sk.backoff.reset()
		}
		if r.sinkRetry.failures > 0 && end.accepted > r.sinkFailedEnd {
			r.sinkRetry.reset()
		}
		r.prev = i
		switch end.kind {
		case endStopped:
			return ctx.Err()
		case endSwitch:
			log.Info().Str("to", r.sks[end.next].addr).Msgf("switching safekeeper: %s", end.err.Error())
			next, nextCommit = end.next, end.nextCommit
		case endCaughtUp:
			log.Info().Msgf("safekeeper ended the stream, the pageserver is caught up: %v", end.err)
			beyond = end.pos
		case endSinkFailed:
			d := r.sinkRetry.fail(now, r.backoff())
			r.sinkFailedEnd = end.failedEnd
			r.noteFailure(now, end.err)
			log.Warn().Err(end.err).Dur("retry_in", d).Msg("WAL ingest failed; reconnecting")
		case endFailed:
			d := sk.backoff.fail(now, r.backoff())
			r.noteFailure(now, end.err)
			log.Warn().Err(end.err).Dur("retry_in", d).Msg("streaming from safekeeper failed")
		}
	}
}

func (r *Receiver) noteFailure(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.LastError, r.status.LastErrorTime = err, now
	r.status.Failures++
}

// choose returns the safekeeper to stream from next and its commit LSN: the
// one a switching rule picked if it is still usable, else the best one
// (pick) with a commit LSN above beyond. It waits until there is one,
// observing the safekeepers every StatusInterval and at every change.
func (r *Receiver) choose(ctx context.Context, next int, nextCommit, beyond lsn.LSN) (int, lsn.LSN, error) {
	if next >= 0 && r.sks[next].backoff.ready(time.Now()) {
		return next, nextCommit, nil
	}
	waiting := false
	for {
		now := time.Now()
		var ask []int
		for i := range r.sks {
			if r.sks[i].backoff.ready(now) {
				ask = append(ask, i)
			}
		}
		changed := r.obs.changed()
		cands := r.obs.observe(ctx, ask)
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		unsettled := now.Before(r.settleBy) && anyNotWatched(cands)
		if i, ok := pick(cands, beyond, r.prev); ok && !unsettled {
			return cands[i].idx, cands[i].commit, nil
		}
		if !waiting && beyond == 0 && !unsettled {
			// Worth a line once: nobody can serve the timeline right now.
			r.log.Warn().Msgf("no safekeeper to stream from: %s", describe(r.sks, cands, now))
			waiting = true
		}
		wake := now.Add(r.cfg.StatusInterval)
		if unsettled {
			wake = r.settleBy
		}
		if len(ask) == 0 {
			// Everyone is in backoff: wait for the first to come out.
			wake = r.sks[0].backoff.retryAt
			for _, s := range r.sks[1:] {
				wake = minTime(wake, s.backoff.retryAt)
			}
		}
		if err := sleepUntil(ctx, wake, changed); err != nil {
			return 0, 0, err
		}
	}
}

// anyNotWatched reports whether a candidate has not been heard from yet.
func anyNotWatched(cands []candidate) bool {
	for _, c := range cands {
		if errors.Is(c.err, errNotWatched) {
			return true
		}
	}
	return false
}

// sleepUntil waits until t, until wake is closed (nil: never), or until
// ctx ends.
func sleepUntil(ctx context.Context, t time.Time, wake <-chan struct{}) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	case <-wake:
		return nil
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
