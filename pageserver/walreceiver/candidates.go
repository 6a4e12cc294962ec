// What the receiver knows of the safekeepers comes from an observer: with
// their gRPC clients, the WatchTimeline streams (watch.go); without, polling
// TIMELINE_STATUS on their libpq ports, here. Both hand the same candidates
// to the one copy of the choosing and switching policy (policy.go). Neon's
// pageserver learns the same from the storage broker.

package walreceiver

import (
	"context"
	"errors"
	"sync"
	"time"

	"strata.dev/libs/skclient"
)

// errNoTimeline: the safekeeper answered, and does not have the timeline.
var errNoTimeline = errors.New("safekeeper does not have the timeline")

// observer tells the receiver what each safekeeper has.
type observer interface {
	// observe returns one candidate per index in idx, in the same order.
	observe(ctx context.Context, idx []int) []candidate
	// changed returns a channel closed when what observe returns may have
	// changed; nil (never) for an observer that learns only when asked.
	// Take it before observe, so that no change falls in between.
	changed() <-chan struct{}
}

// poller asks the safekeepers with TIMELINE_STATUS, concurrently, each
// bounded by statusTimeout.
type poller struct{ r *Receiver }

func (p poller) observe(ctx context.Context, idx []int) []candidate { return p.r.poll(ctx, idx) }

func (poller) changed() <-chan struct{} { return nil }

// poll asks the safekeepers at indexes idx for their commit and flush LSNs
// and returns one candidate per index, in the same order. Changes in a
// safekeeper's reachability are logged.
func (r *Receiver) poll(ctx context.Context, idx []int) []candidate {
	cands := make([]candidate, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		cands[k].idx = i
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, r.statusTimeout())
			defer cancel()
			flush, commit, exists, err := skclient.TimelineStatus(pctx, r.skConfig(r.sks[i].addr))
			switch {
			case err != nil:
				cands[k].err = err
			case !exists:
				cands[k].err = errNoTimeline
			default:
				cands[k].commit, cands[k].flush = commit, flush
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// Failures caused by our own cancellation say nothing about the safekeepers.
		return cands
	}
	for _, c := range cands {
		sk := &r.sks[c.idx]
		msg := ""
		if c.err != nil {
			msg = c.err.Error()
		}
		if msg == sk.pollErr {
			continue
		}
		if msg != "" {
			r.log.Warn().Str("safekeeper", sk.addr).Err(c.err).Msg("TIMELINE_STATUS failed")
		} else {
			r.log.Info().Str("safekeeper", sk.addr).Stringer("commit_lsn", c.commit).Msg("safekeeper answers TIMELINE_STATUS again")
		}
		sk.pollErr = msg
	}
	return cands
}

// statusTimeout bounds one TIMELINE_STATUS or ReportPageserverFeedback:
// twice StatusInterval, at least 1 s, at most WALConnectTimeout. A frozen
// safekeeper (it accepts connections and answers nothing) then delays a
// round of polling, and with it a switch or a reconnect, by seconds rather
// than the 10 s connect timeout.
func (r *Receiver) statusTimeout() time.Duration {
	return min(max(2*r.cfg.StatusInterval, time.Second), r.cfg.WALConnectTimeout)
}
