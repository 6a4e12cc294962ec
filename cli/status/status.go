// Package status is `strata status`: every daemon of the cluster (healthy,
// or down and why; version, uptime) and every timeline of its tenant as the
// pageserver and each safekeeper see it. Daemons are asked in parallel,
// each call with its own deadline, so one daemon that is down neither
// hides the others nor slows the report beyond one timeout.
package status

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"strata.dev/cli/client"
	"strata.dev/libs/lsn"
	pspb "strata.dev/proto/pageserver/v1"
	skpb "strata.dev/proto/safekeeper/v1"
)

// Report is what `strata status` prints. The JSON field names are stable
// (JSONHelp documents them).
type Report struct {
	TenantID  string     `json:"tenant_id"`
	Daemons   []Daemon   `json:"daemons"`
	Timelines []Timeline `json:"timelines"`
}

// Daemon is one daemon's state.
type Daemon struct {
	Kind       string `json:"kind"` // "pageserver" or "safekeeper"
	ID         uint64 `json:"id"`
	ListenPG   string `json:"listen_pg"`
	ListenGRPC string `json:"listen_grpc"`
	ListenHTTP string `json:"listen_http"`
	Healthy    bool   `json:"healthy"`
	// Down: the daemon did not answer at all (Error says why).
	Down  bool   `json:"down"`
	Error string `json:"error,omitempty"`
	// Version, StartedAt and UptimeSeconds come from its Status call.
	Version       string     `json:"version,omitempty"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	UptimeSeconds int64      `json:"uptime_seconds,omitempty"`
}

// Timeline is one timeline as every daemon sees it.
type Timeline struct {
	Name string `json:"name"` // "" if strata.toml has no name for it
	ID   string `json:"id"`
	// Pageserver is null when the pageserver lacks the timeline or is down.
	Pageserver *PageserverTimeline `json:"pageserver"`
	// Safekeepers lists the safekeepers that answered and have it.
	Safekeepers []SafekeeperTimeline `json:"safekeepers"`
}

// PageserverTimeline is the pageserver's view of a timeline.
type PageserverTimeline struct {
	State             string  `json:"state"`
	StateError        string  `json:"state_error,omitempty"`
	LastRecordLSN     lsn.LSN `json:"last_record_lsn"`
	DiskConsistentLSN lsn.LSN `json:"disk_consistent_lsn"`
	// WALSource is the safekeeper the walreceiver streams from ("" if none).
	WALSource string `json:"wal_source"`
	// WALSourceID is the id of that safekeeper in strata.toml (0: unknown).
	WALSourceID uint64 `json:"wal_source_id,omitempty"`
	// LagBytes is how far the last record is behind the highest commit LSN
	// known (from the safekeepers, or the walreceiver's own view).
	LagBytes         uint64     `json:"lag_bytes"`
	LastReceivedAt   *time.Time `json:"last_received_at,omitempty"`
	WALReceiverError string     `json:"walreceiver_error,omitempty"`
}

// SafekeeperTimeline is one safekeeper's view of a timeline.
type SafekeeperTimeline struct {
	ID        uint64  `json:"id"`
	CommitLSN lsn.LSN `json:"commit_lsn"`
	FlushLSN  lsn.LSN `json:"flush_lsn"`
}

// JSONHelp documents `strata status -o json`.
const JSONHelp = `JSON (-o json), one document:
  {"tenant_id",
   "daemons": [{"kind" ("pageserver"|"safekeeper"), "id", "listen_pg", "listen_grpc", "listen_http",
                "healthy", "down" (did not answer at all), "error" (if not healthy),
                "version", "started_at" (RFC 3339), "uptime_seconds"}],
   "timelines": [{"name" ("" if unnamed), "id",
                  "pageserver": null or {"state", "state_error", "last_record_lsn", "disk_consistent_lsn",
                                         "wal_source", "wal_source_id", "lag_bytes",
                                         "last_received_at", "walreceiver_error"},
                  "safekeepers": [{"id", "commit_lsn", "flush_lsn"}] (those that answered and have it)}]}
  LSNs are "X/Y" strings; fields that do not apply are left out.`

// Unhealthy returns the daemons that are not healthy.
func (r *Report) Unhealthy() []Daemon {
	var out []Daemon
	for _, d := range r.Daemons {
		if !d.Healthy {
			out = append(out, d)
		}
	}
	return out
}

// Collect asks every daemon of c, in parallel.
func Collect(ctx context.Context, c *client.Cluster) *Report {
	tenant := c.Tenant().String()
	var wg sync.WaitGroup
	var psTimelines []*pspb.TimelineInfo
	psDaemon := newDaemon(c.Pageserver.Daemon)
	wg.Go(func() {
		var sr *pspb.StatusResponse
		checkDaemon(ctx, c, &psDaemon, c.Pageserver.Health, func(ctx context.Context) (statusInfo, error) {
			var err error
			sr, err = c.Pageserver.API.Status(ctx, &pspb.StatusRequest{})
			if err != nil {
				return statusInfo{}, err
			}
			return statusInfo{sr.NodeId, sr.Version, sr.StartedUnixMs}, nil
		})
		if psDaemon.Down {
			return
		}
		var err error
		if psTimelines, err = c.PageserverTimelines(ctx); err != nil {
			psDaemon.fail(fmt.Errorf("list timelines: %w", err))
		}
	})
	skDaemons := make([]Daemon, len(c.Safekeepers))
	skTimelines := make([][]*skpb.TimelineInfo, len(c.Safekeepers))
	for i, sk := range c.Safekeepers {
		skDaemons[i] = newDaemon(sk.Daemon)
		wg.Go(func() {
			d := &skDaemons[i]
			checkDaemon(ctx, c, d, sk.Health, func(ctx context.Context) (statusInfo, error) {
				sr, err := sk.API.Status(ctx, &skpb.StatusRequest{})
				if err != nil {
					return statusInfo{}, err
				}
				return statusInfo{sr.NodeId, sr.Version, sr.StartedUnixMs}, nil
			})
			if d.Down {
				return
			}
			var err error
			if skTimelines[i], err = c.SafekeeperTimelines(ctx, sk); err != nil {
				d.fail(fmt.Errorf("list timelines: %w", err))
			}
		})
	}
	wg.Wait()

	r := &Report{TenantID: tenant, Daemons: append([]Daemon{psDaemon}, skDaemons...)}
	r.Timelines = mergeTimelines(c, psTimelines, skDaemons, skTimelines)
	return r
}

func newDaemon(d client.Daemon) Daemon {
	return Daemon{Kind: d.Kind, ID: d.ID, ListenPG: d.Config.ListenPG, ListenGRPC: d.Config.ListenGRPC, ListenHTTP: d.Config.ListenHTTP, Healthy: true}
}

func (d *Daemon) fail(err error) {
	d.Healthy = false
	if d.Error == "" {
		d.Error = err.Error()
	}
	if client.NotAnswering(err) {
		d.Down = true
	}
}

// statusInfo is what checkDaemon needs of either daemon's Status.
type statusInfo struct {
	nodeID    uint64
	version   string
	startedMs int64
}

// checkDaemon fills d from the standard health service and the daemon's
// Status call.
func checkDaemon(ctx context.Context, c *client.Cluster, d *Daemon, health healthpb.HealthClient, status func(context.Context) (statusInfo, error)) {
	which := client.Daemon{Kind: d.Kind, ID: d.ID, Addr: d.ListenGRPC}
	cctx, cancel := c.Call(ctx)
	defer cancel()
	hr, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		d.fail(c.Explain(which, err))
		return
	}
	if hr.Status != healthpb.HealthCheckResponse_SERVING {
		d.fail(fmt.Errorf("%s reports health %s", which, hr.Status))
	}
	si, err := status(cctx)
	if err != nil {
		d.fail(fmt.Errorf("status: %w", c.Explain(which, err)))
		return
	}
	d.Version = si.version
	if si.startedMs > 0 {
		started := time.UnixMilli(si.startedMs).UTC()
		d.StartedAt = &started
		d.UptimeSeconds = int64(time.Since(started).Seconds())
	}
	if si.nodeID != d.ID {
		d.fail(fmt.Errorf("%s answers as node %d, but strata.toml says %d: is the address right?", which, si.nodeID, d.ID))
	}
}

// mergeTimelines joins the daemons' views by timeline id, adding the names
// of strata.toml (and named timelines that no daemon has).
func mergeTimelines(c *client.Cluster, ps []*pspb.TimelineInfo, sks []Daemon, skTimelines [][]*skpb.TimelineInfo) []Timeline {
	byID := map[string]*Timeline{}
	get := func(tl string) *Timeline {
		t, ok := byID[tl]
		if !ok {
			t = &Timeline{ID: tl, Name: c.NameOf(tl), Safekeepers: []SafekeeperTimeline{}}
			byID[tl] = t
		}
		return t
	}
	for _, name := range c.File.TimelineNames() {
		get(c.File.Timelines[name])
	}
	for i, tis := range skTimelines {
		for _, ti := range tis {
			t := get(ti.TimelineId)
			t.Safekeepers = append(t.Safekeepers, SafekeeperTimeline{ID: sks[i].ID, CommitLSN: lsn.LSN(ti.CommitLsn), FlushLSN: lsn.LSN(ti.FlushLsn)})
		}
	}
	for _, ti := range ps {
		t := get(ti.TimelineId)
		p := &PageserverTimeline{
			State: ti.State, StateError: ti.StateError,
			LastRecordLSN: lsn.LSN(ti.LastRecordLsn), DiskConsistentLSN: lsn.LSN(ti.DiskConsistentLsn),
			WALSource: ti.WalSource, WALReceiverError: ti.WalreceiverLastError,
		}
		for _, sk := range c.File.Safekeepers {
			if ti.WalSource != "" && ti.WalSource == sk.ListenPG {
				p.WALSourceID = sk.ID
			}
		}
		if ti.LastReceivedUnixMs > 0 {
			at := time.UnixMilli(ti.LastReceivedUnixMs).UTC()
			p.LastReceivedAt = &at
		}
		commit := lsn.LSN(ti.SafekeeperCommitLsn)
		for _, s := range t.Safekeepers {
			commit = max(commit, s.CommitLSN)
		}
		p.LagBytes = commit.Sub(p.LastRecordLSN)
		t.Pageserver = p
	}
	out := make([]Timeline, 0, len(byID))
	for _, t := range byID {
		sort.Slice(t.Safekeepers, func(i, j int) bool { return t.Safekeepers[i].ID < t.Safekeepers[j].ID })
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return client.TimelineLess(out[i].Name, out[i].ID, out[j].Name, out[j].ID) })
	return out
}
