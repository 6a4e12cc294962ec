package walreceiver

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
)

// What a watch stream's outcome makes of a safekeeper: a TimelineInfo is a
// usable candidate with its commit and flush LSNs; NOT_FOUND is "no such
// timeline"; any other end of the stream is a failure that says why.
func TestWatchCandidate(t *testing.T) {
	for _, tc := range []struct {
		name          string
		info          *pb.TimelineInfo
		err           error
		commit, flush lsn.LSN
		noTimeline    bool
		errHas        string // "" = usable
	}{
		{name: "info", info: &pb.TimelineInfo{CommitLsn: 0x3000, FlushLsn: 0x3800}, commit: 0x3000, flush: 0x3800},
		{name: "info without commit", info: &pb.TimelineInfo{FlushLsn: 0x3800}, flush: 0x3800},
		{name: "not found", err: status.Error(codes.NotFound, "timeline x not found"), noTimeline: true, errHas: "timeline x not found"},
		{name: "deleted", err: status.Error(codes.NotFound, "timeline x was deleted"), noTimeline: true, errHas: "was deleted"},
		{name: "unavailable", err: status.Error(codes.Unavailable, "connection refused"), errHas: "WatchTimeline: rpc error: code = Unavailable desc = connection refused"},
		{name: "stream ended", err: io.EOF, errHas: "ended the stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := watchCandidate(2, tc.info, tc.err)
			if c.idx != 2 || c.commit != tc.commit || c.flush != tc.flush {
				t.Fatalf("candidate %+v, want idx 2 commit %v flush %v", c, tc.commit, tc.flush)
			}
			if tc.errHas == "" {
				if c.err != nil {
					t.Fatalf("error %v, want a usable candidate", c.err)
				}
				return
			}
			if c.err == nil || !strings.Contains(c.err.Error(), tc.errHas) || errors.Is(c.err, errNoTimeline) != tc.noTimeline {
				t.Fatalf("error %v, want one with %q (no timeline: %v)", c.err, tc.errHas, tc.noTimeline)
			}
			if c.usable() {
				t.Fatal("a failed candidate is usable")
			}
		})
	}
}

// A broken stream is reopened with the receiver's backoff; after NOT_FOUND
// no later than notFoundMax.
func TestWatchRetry(t *testing.T) {
	r := watchRetry{backoff: backoff{min: 100 * time.Millisecond, max: 15 * time.Second}, notFoundMax: time.Second}
	down := watchCandidate(0, nil, status.Error(codes.Unavailable, "refused")).err
	missing := watchCandidate(0, nil, status.Error(codes.NotFound, "no timeline")).err
	for _, tc := range []struct {
		n    int
		err  error
		want time.Duration
	}{
		{1, down, 100 * time.Millisecond},
		{2, down, 150 * time.Millisecond},
		{20, down, 15 * time.Second},
		{1, missing, 100 * time.Millisecond},
		{7, missing, time.Second}, // 1.14 s by the backoff
		{20, missing, time.Second},
	} {
		if got := r.delay(tc.n, tc.err); got != tc.want {
			t.Errorf("delay(%d, %v) = %v, want %v", tc.n, tc.err, got, tc.want)
		}
	}
}

// The watcher's state as the receiver sees it: nothing known at first
// (and no warning due), then each safekeeper's latest info; a change wakes
// waiters, a repeat does not; a failed stream makes its safekeeper
// unusable for pick until it delivers again.
func TestWatcherState(t *testing.T) {
	w := newWatcher(make([]pb.SafekeeperClient, 3), []string{"sk1", "sk2", "sk3"},
		id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}, watchRetry{}, zerolog.Nop())
	ctx := context.Background()
	all := []int{0, 1, 2}
	cands := w.observe(ctx, all)
	if !anyNotWatched(cands) {
		t.Fatalf("fresh watcher: %+v, want nothing known", cands)
	}
	if _, ok := pick(cands, 0, -1); ok {
		t.Fatal("picked a safekeeper nothing is known about")
	}

	info := func(commit, flush lsn.LSN) *pb.TimelineInfo {
		return &pb.TimelineInfo{CommitLsn: uint64(commit), FlushLsn: uint64(flush)}
	}
	woke := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := w.changed()
	w.set(watchCandidate(0, info(0x2000, 0x2000), nil))
	w.set(watchCandidate(1, info(0x3000, 0x3000), nil))
	w.set(watchCandidate(2, info(0x3000, 0x3400), nil))
	if !woke(ch) {
		t.Fatal("new state did not wake a waiter")
	}
	cands = w.observe(ctx, all)
	if anyNotWatched(cands) {
		t.Fatal("still nothing known")
	}
	if i, ok := pick(cands, 0, 1); !ok || cands[i].idx != 2 {
		t.Fatalf("picked %d of %+v, want safekeeper 3 (same commit, lower lag)", i, cands)
	}

	ch = w.changed()
	w.set(watchCandidate(2, info(0x3000, 0x3400), nil))
	if woke(ch) {
		t.Fatal("the same state again woke a waiter")
	}
	w.set(watchCandidate(2, nil, status.Error(codes.Unavailable, "connection reset")))
	if !woke(ch) {
		t.Fatal("a failure did not wake a waiter")
	}
	if w.commit(2) != 0 || w.commit(1) != 0x3000 {
		t.Fatalf("commit LSNs %v and %v, want 0 for the failed one", w.commit(2), w.commit(1))
	}
	// A subset, in the order asked.
	cands = w.observe(ctx, []int{2, 0})
	if cands[0].idx != 2 || cands[0].usable() || cands[1].idx != 0 || !cands[1].usable() {
		t.Fatalf("observe(2, 0) = %+v", cands)
	}
	cands = w.observe(ctx, all)
	if i, ok := pick(cands, 0, 2); !ok || cands[i].idx != 1 {
		t.Fatalf("after safekeeper 3 failed: picked %d of %+v, want safekeeper 2", i, cands)
	}
	w.set(watchCandidate(2, info(0x3800, 0x3800), nil))
	if i, ok := pick(w.observe(ctx, all), 0, 1); !ok || i != 2 {
		t.Fatalf("safekeeper 3 is back ahead, picked %d", i)
	}
}

// A gRPC client per safekeeper, in the same order, or none: anything else
// is refused before anything starts.
func TestRunRefusesMismatchedClients(t *testing.T) {
	r := New(Config{Safekeepers: []string{"127.0.0.1:1", "127.0.0.1:2"}, SafekeeperClients: make([]pb.SafekeeperClient, 1),
		TTID: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}, Log: zerolog.Nop()}, nil)
	err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "2 safekeepers and 1 gRPC clients") {
		t.Fatalf("Run = %v, want the mismatch refused", err)
	}
}
