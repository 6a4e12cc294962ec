// Following every safekeeper's WatchTimeline stream (proto/safekeeper/v1,
// DESIGN.md decision 7): one goroutine per safekeeper keeps the latest
// TimelineInfo it sent as that safekeeper's candidate, so choosing and the
// switching rules cost no round trip, and a change wakes the receiver at
// once. A safekeeper whose stream broke, or that answered NOT_FOUND, is
// unusable until a new stream delivers. Streams are reopened with the
// receiver's backoff, reset once a stream delivered; after NOT_FOUND at
// least every StatusInterval, because the timeline appears when a proposer
// first connects and that is no failure of the safekeeper.

package walreceiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
)

// errNotWatched: no WatchTimeline update has arrived from the safekeeper yet.
var errNotWatched = errors.New("no WatchTimeline update yet")

// watchInterval is the min_interval_ms asked for: how often at most a
// safekeeper sends its changing state.
const watchInterval = 100 * time.Millisecond

// watcher is the observer over WatchTimeline streams.
type watcher struct {
	clients []pb.SafekeeperClient
	req     *pb.WatchTimelineRequest
	addrs   []string // libpq addresses: how the log names safekeepers
	retry   watchRetry
	log     zerolog.Logger

	mu     sync.Mutex
	state  []candidate // the latest per safekeeper
	logged []string    // the error last logged per safekeeper, to log changes only
	notify chan struct{}
}

func newWatcher(clients []pb.SafekeeperClient, addrs []string, ttid id.TenantTimeline, retry watchRetry, log zerolog.Logger) *watcher {
	w := &watcher{
		clients: clients, addrs: addrs, retry: retry, log: log, notify: make(chan struct{}),
		req: &pb.WatchTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(),
			MinIntervalMs: uint32(watchInterval / time.Millisecond)},
	}
	for i := range clients {
		w.state = append(w.state, candidate{idx: i, err: errNotWatched})
		w.logged = append(w.logged, errNotWatched.Error())
	}
	return w
}

// start runs one goroutine per safekeeper until ctx ends; wg counts them.
func (w *watcher) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := range w.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.follow(ctx, i)
		}()
	}
}

func (w *watcher) observe(_ context.Context, idx []int) []candidate {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]candidate, len(idx))
	for k, i := range idx {
		out[k] = w.state[i]
	}
	return out
}

func (w *watcher) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

// commit is safekeeper i's last known commit LSN; 0 if it is not usable.
func (w *watcher) commit(i int) lsn.LSN {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.state[i]; c.err == nil {
		return c.commit
	}
	return 0
}

// follow keeps safekeeper i's stream open until ctx ends.
func (w *watcher) follow(ctx context.Context, i int) {
	failures := 0
	for {
		delivered, err := w.watchOnce(ctx, i)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			failures = 0
		}
		failures++
		c := watchCandidate(i, nil, err)
		w.set(c)
		if sleepUntil(ctx, time.Now().Add(w.retry.delay(failures, c.err)), nil) != nil {
			return
		}
	}
}

// watchOnce reads one stream until it fails; delivered says whether it
// sent anything.
func (w *watcher) watchOnce(ctx context.Context, i int) (delivered bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.clients[i].WatchTimeline(sctx, w.req)
	if err != nil {
		return false, err
	}
	for {
		info, err := stream.Recv()
		if err != nil {
			return delivered, err
		}
		delivered = true
		w.set(watchCandidate(i, info, nil))
	}
}

// set records a safekeeper's new state, wakes whoever waits for a change,
// and logs when its usability changed.
func (w *watcher) set(c candidate) {
	msg := ""
	if c.err != nil {
		msg = c.err.Error()
	}
	w.mu.Lock()
	old := w.state[c.idx]
	w.state[c.idx] = c
	if old.commit != c.commit || old.flush != c.flush || (old.err == nil) != (c.err == nil) {
		close(w.notify)
		w.notify = make(chan struct{})
	}
	prev := w.logged[c.idx]
	w.logged[c.idx] = msg
	w.mu.Unlock()
	switch {
	case msg == prev:
	case msg != "":
		w.log.Warn().Str("safekeeper", w.addrs[c.idx]).Err(c.err).Msg("safekeeper unusable")
	case prev != errNotWatched.Error():
		w.log.Info().Str("safekeeper", w.addrs[c.idx]).Stringer("commit_lsn", c.commit).Msg("WatchTimeline streams again")
	}
}

// watchCandidate is safekeeper i's candidate after its stream sent info,
// or failed with err.
func watchCandidate(i int, info *pb.TimelineInfo, err error) candidate {
	switch {
	case err == nil && info != nil:
		return candidate{idx: i, commit: lsn.LSN(info.CommitLsn), flush: lsn.LSN(info.FlushLsn)}
	case status.Code(err) == codes.NotFound:
		return candidate{idx: i, err: fmt.Errorf("%w: %s", errNoTimeline, status.Convert(err).Message())}
	case err == nil, errors.Is(err, io.EOF):
		return candidate{idx: i, err: errors.New("WatchTimeline: the safekeeper ended the stream")}
	}
	return candidate{idx: i, err: fmt.Errorf("WatchTimeline: %w", err)}
}

// watchRetry says when to reopen a stream.
type watchRetry struct {
	backoff     backoff
	notFoundMax time.Duration // the longest wait after NOT_FOUND
}

// delay is the wait after the n-th consecutive failure, which was err.
func (r watchRetry) delay(n int, err error) time.Duration {
	d := r.backoff.delay(n)
	if errors.Is(err, errNoTimeline) {
		d = min(d, r.notFoundMax)
	}
	return d
}
