// Reporting the pageserver's positions with ReportPageserverFeedback to
// every safekeeper that has a gRPC client (SK §4.6), not only in 'z'
// messages to the one streamed from: each safekeeper removes WAL below the
// remote-consistent LSN it was told, so each must be told.
//
// The sink's positions are looked at every positionsCheck; they are
// reported every ReportInterval, and at once when a durable position
// advanced. Each safekeeper has its own sender goroutine and a mailbox
// holding the latest positions, so one that hangs delays no other and
// gets only the newest report when it answers again. The remote-consistent
// LSN sent is what the sink says is durable, never more; to a safekeeper
// whose commit LSN (from its watch stream) is lower it is lowered to that,
// which the safekeeper accepts: a lower report only keeps more WAL.

package walreceiver

import (
	"context"
	"sync"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
)

// positionsCheck is how often the sink's positions are looked at.
const positionsCheck = 100 * time.Millisecond

// reportState is what was last given to the senders, and when.
type reportState struct {
	p  Positions
	at time.Time // zero before the first report
}

// due reports whether p must be reported at now: the first time, when a
// durable position advanced, and interval after the last report.
func (s reportState) due(now time.Time, p Positions, interval time.Duration) bool {
	return s.at.IsZero() || p.DiskConsistent > s.p.DiskConsistent || p.RemoteConsistent > s.p.RemoteConsistent ||
		now.Sub(s.at) >= interval
}

// feedbackRequest is the report of p to a safekeeper whose commit LSN is
// commit (0: unknown).
func feedbackRequest(ttid id.TenantTimeline, node uint64, p Positions, commit lsn.LSN) *pb.ReportPageserverFeedbackRequest {
	rcl := p.RemoteConsistent
	if commit != lsn.Invalid {
		rcl = min(rcl, commit)
	}
	return &pb.ReportPageserverFeedbackRequest{
		TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), PageserverId: node,
		LastReceivedLsn: uint64(p.LastReceived), DiskConsistentLsn: uint64(p.DiskConsistent),
		RemoteConsistentLsn: uint64(rcl), CurrentTimelineSize: p.TimelineSize,
	}
}

// startReporting runs the position check and one sender per safekeeper
// until ctx ends; wg counts the goroutines.
func (r *Receiver) startReporting(ctx context.Context, wg *sync.WaitGroup) {
	boxes := make([]chan Positions, len(r.cfg.SafekeeperClients))
	for i := range boxes {
		boxes[i] = make(chan Positions, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendReports(ctx, i, boxes[i])
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(positionsCheck)
		defer tick.Stop()
		var st reportState
		for {
			p, now := r.sink.Positions(), time.Now()
			if st.due(now, p, r.cfg.ReportInterval) {
				st = reportState{p: p, at: now}
				for _, box := range boxes {
					post(box, p)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// post puts p in box, replacing what it holds.
func post(box chan Positions, p Positions) {
	for {
		select {
		case box <- p:
			return
		default:
		}
		select {
		case <-box:
		default:
		}
	}
}

// sendReports reports what arrives in box to safekeeper i until ctx ends,
// logging when its answer changes between success and an error.
func (r *Receiver) sendReports(ctx context.Context, i int, box chan Positions) {
	addr := r.sks[i].addr
	logged := ""
	for {
		var p Positions
		select {
		case <-ctx.Done():
			return
		case p = <-box:
		}
		req := feedbackRequest(r.cfg.TTID, r.cfg.NodeID, p, r.watch.commit(i))
		rctx, cancel := context.WithTimeout(ctx, r.statusTimeout())
		_, err := r.cfg.SafekeeperClients[i].ReportPageserverFeedback(rctx, req)
		cancel()
		if ctx.Err() != nil {
			return
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg == logged {
			continue
		}
		if err != nil {
			r.log.Warn().Str("safekeeper", addr).Err(err).Msg("ReportPageserverFeedback failed")
		} else {
			r.log.Info().Str("safekeeper", addr).Stringer("remote_consistent_lsn", lsn.LSN(req.RemoteConsistentLsn)).
				Msg("reporting positions to the safekeeper")
		}
		logged = msg
	}
}
