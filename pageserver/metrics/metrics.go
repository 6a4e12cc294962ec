// Package metrics exports the pageserver's per-timeline state to
// Prometheus (names after Neon's, PS §9.3). Values are read from the
// timelines when scraped, so nothing on the ingest path updates metrics,
// and a deleted timeline's series go with it.
//
// The read path's histograms (pagestream, wait_lsn, basebackup) are the
// page service's (pageservice.Service.Collectors), the WAL-redo pool's
// are redo.Pool.Collectors.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/libs/id"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/tenant"
)

var timelineLabels = []string{"tenant_id", "timeline_id"}

func timelineDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, timelineLabels...), extra...), nil)
}

var (
	lastRecordLSN = timelineDesc("pageserver_last_record_lsn",
		"End of the last WAL record ingested.")
	diskConsistentLSN = timelineDesc("pageserver_disk_consistent_lsn",
		"LSN up to which everything is in layer files.")
	gcCutoffLSN = timelineDesc("pageserver_gc_cutoff_lsn",
		"Lowest LSN still readable.")
	safekeeperCommitLSN = timelineDesc("pageserver_walreceiver_commit_lsn",
		"Commit LSN of the safekeeper the timeline streams from, as it last said (0 before any).")
	ingestLag = timelineDesc("pageserver_wal_ingest_lag_bytes",
		"WAL the safekeeper has committed and this timeline has not ingested yet.")
	records = timelineDesc("pageserver_wal_ingest_records_received",
		"WAL records ingested since the pageserver started.")
	bytes = timelineDesc("pageserver_wal_ingest_bytes_received",
		"WAL bytes received from safekeepers since the pageserver started.")
	broken = timelineDesc("pageserver_timeline_broken",
		"1 if the timeline stopped ingesting after an error.")
	streaming = timelineDesc("pageserver_walreceiver_streaming",
		"1 while the timeline streams WAL from a safekeeper.")
	lastMessageAge = timelineDesc("pageserver_walreceiver_last_message_age_seconds",
		"Time since the safekeeper streamed from last sent anything (absent before the first message).")
	connections = timelineDesc("pageserver_walreceiver_started_connections_total",
		"WAL streams from safekeepers started since the pageserver started.")
	failures = timelineDesc("pageserver_walreceiver_failures_total",
		"WAL streams and connection attempts that ended in an error.")
	layerCount = timelineDesc("pageserver_layer_count",
		"Layers by kind (delta, image) and where they are (memory, disk).", "kind", "place")
	layerBytes = timelineDesc("pageserver_layer_bytes",
		"Bytes of layers by kind (delta, image) and where they are (memory, disk).", "kind", "place")
	residentSize = timelineDesc("pageserver_resident_physical_size",
		"Bytes of the timeline's layer files on local disk.")
	timelines = prometheus.NewDesc("pageserver_timelines",
		"Active timelines.", nil, nil)
)

// Register makes reg collect the timelines of m.
func Register(reg prometheus.Registerer, m *tenant.Manager) {
	reg.MustRegister(collector{m})
}

type collector struct{ m *tenant.Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lastRecordLSN, diskConsistentLSN, gcCutoffLSN, safekeeperCommitLSN, ingestLag,
		records, bytes, broken, streaming, lastMessageAge, connections, failures, layerCount, layerBytes, residentSize, timelines} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	all := c.m.List(id.TenantID{})
	ch <- prometheus.MustNewConstMetric(timelines, prometheus.GaugeValue, float64(len(all)))
	now := time.Now()
	for _, t := range all {
		ttid := t.ID()
		lv := []string{ttid.Tenant.String(), ttid.Timeline.String()}
		last, _ := t.LastRecordLSN()
		st := t.Status()
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv, extra...)...)
		}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
		}
		gauge(lastRecordLSN, float64(last))
		gauge(diskConsistentLSN, float64(t.DiskConsistentLSN()))
		gauge(gcCutoffLSN, float64(t.GCCutoff()))
		gauge(safekeeperCommitLSN, float64(st.Receiver.CommitLSN))
		lag := 0.0
		if c := st.Receiver.CommitLSN; c > last {
			lag = float64(c - last)
		}
		gauge(ingestLag, lag)
		counter(records, st.RecordsIngested)
		counter(bytes, st.BytesReceived)
		gauge(broken, boolValue(st.State == "Broken"))
		gauge(streaming, boolValue(st.Receiver.Safekeeper != ""))
		if !st.Receiver.LastMessage.IsZero() {
			gauge(lastMessageAge, now.Sub(st.Receiver.LastMessage).Seconds())
		}
		counter(connections, st.Receiver.Connections)
		counter(failures, st.Receiver.Failures)

		type group struct{ kind, place string }
		count, size := map[group]int{}, map[group]int64{}
		for _, g := range []group{{"delta", "memory"}, {"delta", "disk"}, {"image", "disk"}} {
			count[g] = 0
		}
		var resident int64
		for _, l := range t.Layers() {
			g := group{"delta", "disk"}
			if l.Kind == layer.KindImage {
				g.kind = "image"
			}
			if l.InMemory {
				g.place = "memory"
			} else {
				resident += l.Size
			}
			count[g]++
			size[g] += l.Size
		}
		for g, n := range count {
			gauge(layerCount, float64(n), g.kind, g.place)
			gauge(layerBytes, float64(size[g]), g.kind, g.place)
		}
		gauge(residentSize, float64(resident))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
