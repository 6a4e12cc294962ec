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

// sizeInterval is the shortest time between two Config.LogicalSize
// computations: one reads every database and relation directory.
const sizeInterval = 10 * time.Second

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
		var sized sizeState
		for {
			now := time.Now()
			if r.cfg.LogicalSize != nil {
				r.updateSize(ctx, now, &sized)
			}
			p := r.positions()
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

// sizeState is when and where the logical size was last computed.
type sizeState struct {
	at   lsn.LSN
	when time.Time
	err  string // the last error logged
}

// due reports whether the size must be computed at the disk-consistent LSN
// dcl: it moved since the last time, and that was sizeInterval ago.
func (s sizeState) due(now time.Time, dcl lsn.LSN) bool {
	return dcl != lsn.Invalid && dcl != s.at && (s.when.IsZero() || now.Sub(s.when) >= sizeInterval)
}

// updateSize recomputes the logical size when it is due.
func (r *Receiver) updateSize(ctx context.Context, now time.Time, s *sizeState) {
	dcl := r.sink.Positions().DiskConsistent
	if !s.due(now, dcl) {
		return
	}
	s.at, s.when = dcl, now
	n, err := r.cfg.LogicalSize(ctx, dcl)
	if err != nil {
		if ctx.Err() == nil && err.Error() != s.err {
			r.log.Warn().Err(err).Msg("logical size for the safekeepers")
			s.err = err.Error()
		}
		return
	}
	s.err = ""
	r.size.Store(n)
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
	retry := reportRetry
	var (
		failed Positions        // the last report that failed
		again  <-chan time.Time // when to send it again; nil: nothing failed
	)
	for {
		var p Positions
		select {
		case <-ctx.Done():
			return
		case p = <-box: // newer positions replace a failed report
		case <-again:
			p = failed
		}
		again = nil
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
			// Again soon, doubling up to ReportInterval while it keeps
			// failing.
			failed, again = p, time.After(retry)
			retry = min(2*retry, r.cfg.ReportInterval)
		} else {
			retry = reportRetry
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

// reportRetry is how soon a failed report is first sent again. Until a report
// lands, the safekeeper does not hold WAL back for this pageserver: one
// that has just created the timeline (it answered NotFound a moment ago)
// would otherwise wait for the next due report, up to ReportInterval, and
// meanwhile remove WAL another pageserver's reports let go.
const reportRetry = 50 * time.Millisecond
