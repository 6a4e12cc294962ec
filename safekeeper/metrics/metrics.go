// Package metrics defines the safekeeper's Prometheus metrics (SK §7.5),
// keeping Neon's names where operators know them. Per-timeline gauges are
// computed when scraped, from the timelines themselves, so they can never go
// stale.
package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/safekeeper/timeline"
)

// Metrics are the event counters and histograms the daemon updates.
type Metrics struct {
	WriteWALBytes    prometheus.Histogram
	WriteWALSeconds  prometheus.Histogram
	FlushWALSeconds  prometheus.Histogram
	ReceivedWALBytes prometheus.Counter
	SentWALBytes     prometheus.Counter
	QueriesReceived  *prometheus.CounterVec
	QueriesFinished  *prometheus.CounterVec
	PAMessages       *prometheus.CounterVec
	WALReceivers     prometheus.Gauge
	WALReaders       prometheus.Gauge
	PSFeedbacks      prometheus.Counter
	// BatchMessages is how many proposer messages one fsync covered.
	BatchMessages prometheus.Histogram
	// AckLatency is how long an AppendRequest waited for the flush that acked it.
	AckLatency prometheus.Histogram
}

// New creates the metrics and registers them on r.
func New(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		WriteWALBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_write_wal_bytes", Help: "Bytes written to WAL in one append.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 10),
		}),
		WriteWALSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_write_wal_seconds", Help: "Time spent handing one append to the WAL store.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
		}),
		FlushWALSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_flush_wal_seconds", Help: "Time spent in fdatasync of WAL.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 3, 12),
		}),
		ReceivedWALBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safekeeper_received_wal_bytes_total", Help: "WAL bytes received from proposers.",
		}),
		SentWALBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safekeeper_sent_wal_bytes_total", Help: "WAL bytes sent to replication clients.",
		}),
		QueriesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safekeeper_pg_queries_received_total", Help: "Commands received on the libpq port.",
		}, []string{"query"}),
		QueriesFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safekeeper_pg_queries_finished_total", Help: "Commands finished on the libpq port.",
		}, []string{"query"}),
		PAMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "safekeeper_proposer_acceptor_messages_total", Help: "Proposer messages processed, by outcome.",
		}, []string{"outcome"}),
		WALReceivers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safekeeper_wal_receivers", Help: "Connected START_WAL_PUSH sessions.",
		}),
		WALReaders: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "safekeeper_wal_readers", Help: "Connected START_REPLICATION sessions.",
		}),
		PSFeedbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safekeeper_received_ps_feedbacks_total", Help: "Pageserver feedback reports received.",
		}),
		BatchMessages: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_wal_receiver_batch_messages", Help: "Proposer messages covered by one fsync and reply.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 1024},
		}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_append_ack_seconds", Help: "Time from receiving an AppendRequest to sending the AppendResponse that covers it.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 3, 12),
		}),
	}
	r.MustRegister(m.WriteWALBytes, m.WriteWALSeconds, m.FlushWALSeconds, m.ReceivedWALBytes, m.SentWALBytes,
		m.QueriesReceived, m.QueriesFinished, m.PAMessages, m.WALReceivers, m.WALReaders, m.PSFeedbacks,
		m.BatchMessages, m.AckLatency)
	return m
}

// RegisterTimelines registers the per-timeline gauges, computed from reg at scrape time.
func RegisterTimelines(r prometheus.Registerer, reg *timeline.Registry) {
	r.MustRegister(&timelineCollector{reg: reg})
}

// WALWritten implements walstore.Observer.
func (m *Metrics) WALWritten(bytes int, d time.Duration) {
	m.WriteWALBytes.Observe(float64(bytes))
	m.WriteWALSeconds.Observe(d.Seconds())
}

// WALFlushed implements walstore.Observer.
func (m *Metrics) WALFlushed(d time.Duration) { m.FlushWALSeconds.Observe(d.Seconds()) }

// QueryLabel maps a command to a low-cardinality label.
func QueryLabel(q string) string {
	q = strings.TrimSpace(strings.ToUpper(q))
	for _, c := range []string{"START_WAL_PUSH", "START_REPLICATION", "IDENTIFY_SYSTEM", "TIMELINE_STATUS", "TIMELINE_HISTORY", "SHOW"} {
		if strings.HasPrefix(q, c) {
			return strings.ToLower(c)
		}
	}
	return "other"
}

var ttLabels = []string{"tenant_id", "timeline_id"}

var (
	descCommit     = prometheus.NewDesc("safekeeper_commit_lsn", "In-memory commit LSN.", ttLabels, nil)
	descFlush      = prometheus.NewDesc("safekeeper_flush_lsn", "End of the last durable WAL record.", ttLabels, nil)
	descBackup     = prometheus.NewDesc("safekeeper_backup_lsn", "Backup LSN.", ttLabels, nil)
	descEpochStart = prometheus.NewDesc("safekeeper_epoch_start_lsn", "Start LSN of the current term.", ttLabels, nil)
	descPeerHor    = prometheus.NewDesc("safekeeper_peer_horizon_lsn", "Peer horizon LSN.", ttLabels, nil)
	descRemote     = prometheus.NewDesc("safekeeper_remote_consistent_lsn", "Pageserver's remote-consistent LSN.", ttLabels, nil)
	descTerm       = prometheus.NewDesc("safekeeper_acceptor_term", "Acceptor term.", ttLabels, nil)
	descComputes   = prometheus.NewDesc("safekeeper_connected_computes", "Connected proposers.", ttLabels, nil)
	descDisk       = prometheus.NewDesc("safekeeper_disk_usage_bytes", "Bytes of WAL and control files on disk.", ttLabels, nil)
	descRemoved    = prometheus.NewDesc("safekeeper_removed_wal_segments_total", "WAL segments removed since start.", ttLabels, nil)
	descHorizon    = prometheus.NewDesc("safekeeper_wal_removal_horizon_lsn",
		"LSN below which no consumer needs the WAL (SK §4.6): segments wholly below it are removed.", ttLabels, nil)
	descWrite     = prometheus.NewDesc("safekeeper_write_lsn", "End of the WAL written, durable or not.", ttLabels, nil)
	descReaders   = prometheus.NewDesc("safekeeper_timeline_wal_readers", "Connected START_REPLICATION sessions of the timeline.", ttLabels, nil)
	descPSRecv    = prometheus.NewDesc("safekeeper_ps_last_received_lsn", "Last received LSN in the latest pageserver feedback.", ttLabels, nil)
	descPSDisk    = prometheus.NewDesc("safekeeper_ps_disk_consistent_lsn", "Disk-consistent LSN in the latest pageserver feedback.", ttLabels, nil)
	descPSTime    = prometheus.NewDesc("safekeeper_feedback_last_time_seconds", "Reply time of the latest pageserver feedback (Unix seconds; absent before any).", ttLabels, nil)
	descPSCount   = prometheus.NewDesc("safekeeper_ps_feedback_count_total", "Pageserver feedback reports taken since start.", ttLabels, nil)
	descTimelines = prometheus.NewDesc("safekeeper_timelines", "Loaded timelines.", nil, nil)
	descActive    = prometheus.NewDesc("safekeeper_active_timelines", "Timelines with a connected proposer or WAL reader.", nil, nil)
)

// timelineCollector reports per-timeline gauges at scrape time.
type timelineCollector struct{ reg *timeline.Registry }

func (c *timelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommit, descFlush, descBackup, descEpochStart, descPeerHor, descRemote,
		descTerm, descComputes, descDisk, descRemoved, descHorizon, descWrite, descReaders, descPSRecv, descPSDisk, descPSTime,
		descPSCount, descTimelines, descActive} {
		ch <- d
	}
}

func (c *timelineCollector) Collect(ch chan<- prometheus.Metric) {
	tls := c.reg.List()
	ch <- prometheus.MustNewConstMetric(descTimelines, prometheus.GaugeValue, float64(len(tls)))
	active := 0
	for _, t := range tls {
		s := t.Status()
		l := []string{t.TTID.Tenant.String(), t.TTID.Timeline.String()}
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		g(descCommit, float64(s.CommitLSN))
		g(descFlush, float64(s.FlushLSN))
		g(descBackup, float64(s.BackupLSN))
		g(descEpochStart, float64(s.TermStartLSN))
		g(descPeerHor, float64(s.PeerHorizonLSN))
		g(descRemote, float64(s.RemoteConsistentLSN))
		g(descTerm, float64(s.Term))
		computes := t.Computes()
		g(descComputes, float64(computes))
		g(descDisk, float64(dirSize(t.Dir())))
		ch <- prometheus.MustNewConstMetric(descRemoved, prometheus.CounterValue, float64(t.RemovedSegments()), l...)
		g(descHorizon, float64(t.RemovalHorizon()))
		g(descWrite, float64(s.WriteLSN))
		readers := len(t.Senders())
		g(descReaders, float64(readers))
		if computes > 0 || readers > 0 {
			active++
		}
		fb, _ := t.WatchPageserverFeedback()
		g(descPSRecv, float64(fb.Feedback.LastReceivedLSN))
		g(descPSDisk, float64(fb.Feedback.DiskConsistentLSN))
		if !fb.Feedback.ReplyTime.IsZero() {
			g(descPSTime, float64(fb.Feedback.ReplyTime.UnixNano())/1e9)
		}
		ch <- prometheus.MustNewConstMetric(descPSCount, prometheus.CounterValue, float64(fb.Seq), l...)
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(active))
}

func dirSize(dir string) int64 {
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
