package pageservice

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the page service's Prometheus metrics, named after Neon's
// (PS §9.3) so that its dashboards and habits carry over. They are
// global, not per timeline: a latency histogram per timeline multiplies
// series by the timelines, and its series would outlive deleted timelines.
type metrics struct {
	// query is pageserver_smgr_query_seconds_global: the time of one
	// pagestream request, from decoding to the answer being buffered
	// (waiting for WAL included).
	query   *prometheus.HistogramVec
	started *prometheus.CounterVec
	results *prometheus.CounterVec

	waitLSN      prometheus.Histogram
	waitStarted  prometheus.Counter
	waitFinished prometheus.Counter

	basebackup prometheus.Histogram
	commands   *prometheus.CounterVec
}

// smgrQueryType is Neon's smgr_query_type label of a request tag.
var smgrQueryType = map[Tag]string{
	TagExists:         "get_rel_exists",
	TagNblocks:        "get_rel_size",
	TagGetPage:        "get_page_at_lsn",
	TagDBSize:         "get_db_size",
	TagGetSlruSegment: "get_slru_segment",
}

// commandLabels are the values of pageserver_compute_commands' label:
// bounded, whatever clients send.
var commandLabels = []string{"pagestream_v2", "pagestream_v3", "basebackup", "set", "unsupported"}

// queryBuckets span a cached page (tens of µs) to a request that waited
// for WAL up to the default wait_lsn_timeout (300 s).
var queryBuckets = []float64{
	10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6,
	0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
	1, 2, 5, 10, 30, 60, 300,
}

func newMetrics() *metrics {
	m := &metrics{
		query: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pageserver_smgr_query_seconds_global",
			Help:    "Time of one pagestream request, by request type (waiting for WAL included).",
			Buckets: queryBuckets,
		}, []string{"smgr_query_type"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pageserver_smgr_query_started_global_count",
			Help: "Pagestream requests started, by request type (minus the histogram's count: requests in flight).",
		}, []string{"smgr_query_type"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pageserver_pagestream_handler_results_total",
			Help: "Pagestream requests answered, by outcome (success, or error: a tag-103 answer).",
		}, []string{"outcome"}),
		waitLSN: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_wait_lsn_seconds",
			Help:    "Time a read waited for ingest to reach the LSN it needs (reads that had to wait only).",
			Buckets: queryBuckets,
		}),
		waitStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wait_lsn_started_count",
			Help: "Reads that started waiting for ingest.",
		}),
		waitFinished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pageserver_wait_lsn_finished_count",
			Help: "Reads that finished waiting for ingest, reached or not (timeouts included).",
		}),
		basebackup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pageserver_basebackup_query_seconds",
			Help:    "Time to send one complete basebackup (waiting for its LSN included).",
			Buckets: []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600},
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pageserver_compute_commands",
			Help: "Commands received on the libpq port, by command.",
		}, []string{"command"}),
	}
	// Every series exists from the start, so a dashboard shows 0, not "no
	// data", before the first request of a kind.
	for _, q := range smgrQueryType {
		m.query.WithLabelValues(q)
		m.started.WithLabelValues(q)
	}
	for _, o := range []string{"success", "error"} {
		m.results.WithLabelValues(o)
	}
	for _, c := range commandLabels {
		m.commands.WithLabelValues(c)
	}
	return m
}

// metrics returns the service's metrics, made on first use: a Service
// is built as a struct literal.
func (s *Service) metrics() *metrics {
	s.metricsOnce.Do(func() { s.m = newMetrics() })
	return s.m
}

// Collectors returns the page service's metrics for registration (the
// daemon registers them next to the WAL-redo pool's).
func (s *Service) Collectors() []prometheus.Collector {
	m := s.metrics()
	return []prometheus.Collector{m.query, m.started, m.results, m.waitLSN, m.waitStarted, m.waitFinished, m.basebackup, m.commands}
}

// queryStarted counts a request and returns the function that observes
// its time and outcome.
func (m *metrics) queryStarted(tag Tag) func(err error) {
	q, ok := smgrQueryType[tag]
	if !ok {
		q = "other" // DecodeRequest lets no other tag through
	}
	m.started.WithLabelValues(q).Inc()
	start := time.Now()
	return func(err error) {
		m.query.WithLabelValues(q).Observe(time.Since(start).Seconds())
		outcome := "success"
		if err != nil {
			outcome = "error"
		}
		m.results.WithLabelValues(outcome).Inc()
	}
}

// waitStartedAt counts a wait for ingest and returns the function that
// observes its time.
func (m *metrics) waitStartedAt() func() {
	m.waitStarted.Inc()
	start := time.Now()
	return func() {
		m.waitFinished.Inc()
		m.waitLSN.Observe(time.Since(start).Seconds())
	}
}

// command counts a command of the libpq port under a bounded label.
func (m *metrics) command(cmd string) {
	for _, c := range commandLabels {
		if c == cmd {
			m.commands.WithLabelValues(c).Inc()
			return
		}
	}
	m.commands.WithLabelValues("unsupported").Inc()
}
