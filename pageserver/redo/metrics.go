package redo

import "github.com/prometheus/client_golang/prometheus"

// metrics are the pool's Prometheus metrics, named after Neon's (PS §9.3).
type metrics struct {
	seconds      prometheus.Histogram
	records      prometheus.Histogram
	bytes        prometheus.Histogram
	spawnSeconds prometheus.Histogram
	spawns       prometheus.Counter
	failures     prometheus.Counter
	native       prometheus.Counter
	goApplied    prometheus.Counter
	replayed     prometheus.Counter
	processes    func() float64
}

func newMetrics() *metrics {
	return &metrics{
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_wal_redo_seconds",
			Help:    "Time of one request to a WAL redo process, as its caller saw it.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 18), // 10 µs to 1.3 s
		}),
		records: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_wal_redo_records_histogram",
			Help:    "WAL records per request to a WAL redo process.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		bytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_wal_redo_bytes_histogram",
			Help:    "Bytes per request to a WAL redo process.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 10),
		}),
		spawnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_wal_redo_process_launch_duration",
			Help:    "Time to start a WAL redo process, template copy included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 10),
		}),
		spawns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wal_redo_process_launches_total",
			Help: "WAL redo processes started.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wal_redo_process_failures_total",
			Help: "WAL redo requests or process starts that failed (the process was killed and replaced).",
		}),
		native: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wal_redo_native_total",
			Help: "Pages rebuilt entirely in Go (images and pageserver records), with no redo process.",
		}),
		goApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wal_redo_go_records_total",
			Help: "PostgreSQL records (the common heap and btree ones) applied in Go instead of by a redo process.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_replayed_wal_records_total",
			Help: "WAL records applied to rebuild pages, by redo processes and in Go.",
		}),
	}
}

func (m *metrics) observe(records, bytes int) {
	m.records.Observe(float64(records))
	m.bytes.Observe(float64(bytes))
}

// Collectors returns the pool's metrics for registration.
func (p *Pool) Collectors() []prometheus.Collector {
	m := p.metrics
	return []prometheus.Collector{m.seconds, m.records, m.bytes, m.spawnSeconds, m.spawns, m.failures, m.native, m.goApplied, m.replayed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pageserver_wal_redo_processes",
			Help: "WAL redo processes running.",
		}, m.processes)}
}
