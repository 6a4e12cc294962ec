// Package metrics exports the pageserver's per-timeline state to
// Prometheus (names after Neon's, PS §9.3). Values are read from the
// timelines when scraped, so nothing on the ingest path updates metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/libs/id"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/tenant"
)

var timelineLabels = []string{"tenant_id", "timeline_id"}

var (
	lastRecordLSN = prometheus.NewDesc("pageserver_last_record_lsn",
		"End of the last WAL record ingested.", timelineLabels, nil)
	diskConsistentLSN = prometheus.NewDesc("pageserver_disk_consistent_lsn",
		"LSN up to which everything is in layer files.", timelineLabels, nil)
	ingestLag = prometheus.NewDesc("pageserver_wal_ingest_lag_bytes",
		"WAL the safekeeper has committed and this timeline has not ingested yet.", timelineLabels, nil)
	records = prometheus.NewDesc("pageserver_wal_ingest_records_total",
		"WAL records ingested since the pageserver started.", timelineLabels, nil)
	bytes = prometheus.NewDesc("pageserver_wal_ingest_bytes_received_total",
		"WAL bytes received since the pageserver started.", timelineLabels, nil)
	broken = prometheus.NewDesc("pageserver_timeline_broken",
		"1 if the timeline stopped ingesting after an error.", timelineLabels, nil)
	layerCount = prometheus.NewDesc("pageserver_layer_count",
		"Layers by kind (delta, image) and where they are (memory, disk).", append(timelineLabels, "kind", "place"), nil)
	layerBytes = prometheus.NewDesc("pageserver_layer_bytes",
		"Bytes of layers by kind (delta, image) and where they are (memory, disk).", append(timelineLabels, "kind", "place"), nil)
	timelines = prometheus.NewDesc("pageserver_timelines",
		"Active timelines.", nil, nil)
)

// Register makes reg collect the timelines of m.
func Register(reg prometheus.Registerer, m *tenant.Manager) {
	reg.MustRegister(collector{m})
}

type collector struct{ m *tenant.Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lastRecordLSN, diskConsistentLSN, ingestLag, records, bytes, broken, layerCount, layerBytes, timelines} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	all := c.m.List(id.TenantID{})
	ch <- prometheus.MustNewConstMetric(timelines, prometheus.GaugeValue, float64(len(all)))
	for _, t := range all {
		ttid := t.ID()
		lv := []string{ttid.Tenant.String(), ttid.Timeline.String()}
		last, _ := t.LastRecordLSN()
		st := t.Status()
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv, extra...)...)
		}
		gauge(lastRecordLSN, float64(last))
		gauge(diskConsistentLSN, float64(t.DiskConsistentLSN()))
		lag := 0.0
		if c := st.Receiver.CommitLSN; c > last {
			lag = float64(c - last)
		}
		gauge(ingestLag, lag)
		ch <- prometheus.MustNewConstMetric(records, prometheus.CounterValue, float64(st.RecordsIngested), lv...)
		ch <- prometheus.MustNewConstMetric(bytes, prometheus.CounterValue, float64(st.BytesReceived), lv...)
		b := 0.0
		if st.State == "Broken" {
			b = 1
		}
		gauge(broken, b)
		type group struct{ kind, place string }
		count, size := map[group]int{}, map[group]int64{}
		for _, g := range []group{{"delta", "memory"}, {"delta", "disk"}, {"image", "disk"}} {
			count[g] = 0
		}
		for _, l := range t.Layers() {
			g := group{"delta", "disk"}
			if l.Kind == layer.KindImage {
				g.kind = "image"
			}
			if l.InMemory {
				g.place = "memory"
			}
			count[g]++
			size[g] += l.Size
		}
		for g, n := range count {
			gauge(layerCount, float64(n), g.kind, g.place)
			gauge(layerBytes, float64(size[g]), g.kind, g.place)
		}
	}
}
