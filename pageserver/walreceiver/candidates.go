// Asking the safekeepers how much WAL they have: TIMELINE_STATUS to each,
// concurrently, each bounded by statusTimeout. Neon's pageserver learns the
// same from the storage broker; a static list polled is enough here.

package walreceiver

import (
	"context"
	"errors"
	"sync"
	"time"

	"strata.dev/libs/skclient"
)

var errNoTimeline = errors.New("safekeeper does not have the timeline")

// poll asks the safekeepers at indexes idx for their commit LSN and returns
// one candidate per index, in the same order. Changes in a safekeeper's
// reachability are logged.
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
			_, commit, exists, err := skclient.TimelineStatus(pctx, r.skConfig(r.sks[i].addr))
			switch {
			case err != nil:
				cands[k].err = err
			case !exists:
				cands[k].err = errNoTimeline
			default:
				cands[k].commit = commit
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

// statusTimeout bounds one TIMELINE_STATUS: twice StatusInterval, at least
// 1 s, at most WALConnectTimeout. A frozen safekeeper (it accepts
// connections and answers nothing) then delays a round of polling, and with
// it a switch or a reconnect, by seconds rather than the 10 s connect timeout.
func (r *Receiver) statusTimeout() time.Duration {
	return min(max(2*r.cfg.StatusInterval, time.Second), r.cfg.WALConnectTimeout)
}
