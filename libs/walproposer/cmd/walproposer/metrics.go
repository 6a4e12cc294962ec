package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walproposer"
)

// metrics are the walproposer's Prometheus metrics.
type metrics struct {
	receivedBytes prometheus.Counter
	commitLatency prometheus.Histogram
	primaryUp     prometheus.Gauge
}

func newMetrics(r prometheus.Registerer, prop *walproposer.Proposer, buf *walproposer.WALBuffer) *metrics {
	m := &metrics{
		receivedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walproposer_received_wal_bytes_total", Help: "WAL bytes received from the primary.",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "walproposer_commit_latency_seconds",
			Help:    "Time from receiving WAL from the primary to a safekeeper majority having it durable (what a synchronous commit waits for).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		primaryUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "walproposer_primary_connected", Help: "1 while streaming from the primary.",
		}),
	}
	r.MustRegister(m.receivedBytes, m.commitLatency, m.primaryUp, &proposerCollector{prop: prop, buf: buf})
	return m
}

var (
	descCommit   = prometheus.NewDesc("walproposer_commit_lsn", "LSN a safekeeper majority holds durably (reported to the primary as flushed).", nil, nil)
	descReceived = prometheus.NewDesc("walproposer_received_lsn", "End of the WAL received from the primary.", nil, nil)
	descLag      = prometheus.NewDesc("walproposer_commit_lag_bytes", "WAL received from the primary that a safekeeper majority does not hold yet (what commits wait for).", nil, nil)
	descSKFlush  = prometheus.NewDesc("walproposer_safekeeper_flush_lsn", "LSN the safekeeper acknowledged as durable in this term.", []string{"safekeeper"}, nil)
	descSKLag    = prometheus.NewDesc("walproposer_safekeeper_lag_bytes", "WAL received from the primary that the safekeeper has not acknowledged.", []string{"safekeeper"}, nil)
	descSKUp     = prometheus.NewDesc("walproposer_safekeeper_streaming", "1 while the safekeeper is connected and elected on.", []string{"safekeeper"}, nil)
)

// proposerCollector reports positions at scrape time.
type proposerCollector struct {
	prop *walproposer.Proposer
	buf  *walproposer.WALBuffer
}

func (c *proposerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommit, descReceived, descLag, descSKFlush, descSKLag, descSKUp} {
		ch <- d
	}
}

func (c *proposerCollector) Collect(ch chan<- prometheus.Metric) {
	received := c.buf.End()
	commit := c.prop.CommitLSN()
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(commit))
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.GaugeValue, float64(received))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(received.Sub(commit)))
	for _, p := range c.prop.Peers() {
		up := 0.0
		if p.Streaming {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descSKFlush, prometheus.GaugeValue, float64(p.FlushLSN), p.Addr)
		ch <- prometheus.MustNewConstMetric(descSKLag, prometheus.GaugeValue, float64(received.Sub(p.FlushLSN)), p.Addr)
		ch <- prometheus.MustNewConstMetric(descSKUp, prometheus.GaugeValue, up, p.Addr)
	}
}

// latencyTracker measures how long received WAL waits for the quorum: it
// remembers when each chunk arrived and observes the delay when the commit
// LSN passes the chunk's end.
type latencyTracker struct {
	mu       sync.Mutex
	arrivals []arrival
	observe  func(time.Duration)
}

type arrival struct {
	end lsn.LSN
	at  time.Time
}

// maxArrivals bounds the memory of a tracker behind a stalled quorum; the
// oldest arrivals are dropped first (their samples are lost, not skewed).
const maxArrivals = 1 << 16

func (l *latencyTracker) setObserver(f func(time.Duration)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observe = f
}

func (l *latencyTracker) received(end lsn.LSN) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.arrivals) >= maxArrivals {
		l.arrivals = append(l.arrivals[:0], l.arrivals[len(l.arrivals)/2:]...)
	}
	l.arrivals = append(l.arrivals, arrival{end: end, at: time.Now()})
}

func (l *latencyTracker) committed(c lsn.LSN) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for n < len(l.arrivals) && l.arrivals[n].end <= c {
		if l.observe != nil {
			l.observe(now.Sub(l.arrivals[n].at))
		}
		n++
	}
	l.arrivals = append(l.arrivals[:0], l.arrivals[n:]...)
}

// trackingSink is the WAL buffer as the primary's stream sees it: it also
// counts bytes and records arrivals for the latency histogram.
type trackingSink struct {
	buf *walproposer.WALBuffer
	lat *latencyTracker
	m   *metrics
}

func (s *trackingSink) End() lsn.LSN { return s.buf.End() }

func (s *trackingSink) Append(p []byte) {
	s.buf.Append(p)
	s.lat.received(s.buf.End())
	s.m.receivedBytes.Add(float64(len(p)))
}
