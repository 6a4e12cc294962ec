package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pageservice"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// scrape is one /metrics page: every sample line's series ("name{labels}")
// and value.
type scrape map[string]float64

func scrapeMetrics(t *testing.T, who, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", who, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /metrics: %s, %v", who, resp.Status, err)
	}
	s := scrape{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("%s /metrics: bad line %q", who, line)
		}
		s[line[:i]] = v
	}
	return s
}

// names are the metric names of the samples.
func (s scrape) names() map[string]bool {
	out := map[string]bool{}
	for series := range s {
		name, _, _ := strings.Cut(series, "{")
		out[name] = true
	}
	return out
}

// sum adds the samples of name whose labels include every label=value
// of want (e.g. `smgr_query_type="get_page_at_lsn"`); ok is false if
// there are none.
func (s scrape) sum(name string, want ...string) (total float64, ok bool) {
	for series, v := range s {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for _, w := range want {
			match = match && strings.Contains(labels, w)
		}
		if match {
			total, ok = total+v, true
		}
	}
	return total, ok
}

// Every metric a dashboard panel queries is on the /metrics page of a
// real daemon: three safekeepers, a walproposer in front of an unmodified
// PostgreSQL 15 primary, and a pageserver following the safekeepers, after
// writes (pgbench), reads (pagestream: exists, nblocks, GetPage, a read
// that waits for WAL), a basebackup and a checkpoint. The values say the
// metrics measure what they name.
func TestDashboardMetricsExist(t *testing.T) {
	ctx := context.Background()
	primary := pgharness.New(t, pgharness.NoStart(),
		pgharness.WithConf("synchronous_standby_names", "walproposer"),
		pgharness.WithConf("synchronous_commit", "on"),
		pgharness.WithConf("wal_keep_size", "4GB"), // the walproposer starts at initdb's segment
		pgharness.WithConf("checkpoint_timeout", "1h"),
		pgharness.WithConf("autovacuum", "off"))
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	var sks []*daemons.Safekeeper
	for i := 1; i <= 3; i++ {
		sks = append(sks, daemons.StartSafekeeper(t, i, "--no-sync"))
	}
	// Small layers and quick compaction: layer files appear; a short
	// wait_lsn_timeout: the read ahead of ingest gives up quickly.
	ps := daemons.StartPageserver(t, append(daemons.SafekeeperArgs(sks),
		"--no-sync", "--checkpoint-distance", "1048576", "--compaction-period", "1s", "--wait-lsn-timeout", "2s")...)

	// The timeline starts as initdb left the primary's data directory.
	start := walcheck.LatestCheckpoint(t, primary)
	if err := ps.ImportBasebackup(ttid, bytes.NewReader(daemons.DataDirTar(t, primary.DataDir())), start, 0); err != nil {
		t.Fatalf("import: %v", err)
	}
	primary.Start(t)
	wp := daemons.NewWalproposer(t, "--pgconn", primary.ConnString("postgres"), "--safekeepers", strings.Join(daemons.PGAddrs(sks), ","),
		"--tenant-id", ttid.Tenant.String(), "--timeline-id", ttid.Timeline.String(),
		"--start-lsn", start.SegmentStart(primary.WALSegmentSize()).String(), "--reconnect-delay", "50ms", "--heartbeat-interval", "200ms")
	wp.Start()
	walcheck.WaitFor(t, "the walproposer to stream", 30*time.Second, func() (bool, string) {
		return daemons.Metric(wp.HTTPAddr, "walproposer_primary_connected") == 1, wp.Log()
	})

	// Writes: every commit returns once a safekeeper majority has it.
	primary.RunPgbench(t, "-i", "-s", "1", "-q")
	primary.RunPgbench(t, "-t", "100", "-c", "1", "-n")
	committed := lsn.LSN(daemons.Metric(wp.HTTPAddr, "walproposer_commit_lsn"))
	if committed <= start {
		t.Fatalf("walproposer_commit_lsn %s after pgbench, not past the start %s", committed, start)
	}
	ps.WaitLastRecord(t, ttid, committed, 2*time.Minute)
	if err := ps.Call("PUT", daemons.TimelinePath(ttid)+"/checkpoint", nil, nil); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}

	// Reads, as a compute makes them.
	var db, node int64
	primary.QueryRow(t, "SELECT oid::int8 FROM pg_database WHERE datname = 'postgres'").Scan(&db)
	primary.QueryRow(t, "SELECT pg_relation_filenode('pgbench_accounts')::int8").Scan(&node)
	rel := key.Rel{Spc: key.DefaultTablespace, DB: uint32(db), Rel: uint32(node), Fork: key.ForkMain}
	cl := ps.Pagestream(t, ttid, pageservice.V3)
	if ok, err := cl.Exists(rel, lsn.Invalid); err != nil || !ok {
		t.Fatalf("exists %s: %v, %v", rel, ok, err)
	}
	n, err := cl.Nblocks(rel, lsn.Invalid)
	if err != nil || n == 0 {
		t.Fatalf("nblocks %s: %d, %v", rel, n, err)
	}
	pages := min(n, 32)
	for blk := range pages {
		if _, err := cl.GetPage(rel, blk, lsn.Invalid); err != nil {
			t.Fatalf("getpage %s block %d: %v", rel, blk, err)
		}
	}
	// A read ahead of ingest waits for WAL, then times out (2 s).
	if _, err := cl.GetPage(rel, 0, committed+1<<30); !pageservice.IsRequestError(err) {
		t.Fatalf("getpage 1 GiB ahead of ingest: %v, want a tag-103 answer after waiting", err)
	}
	bbctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var tarball bytes.Buffer
	if err := ps.Basebackup(bbctx, &tarball, ttid); err != nil || tarball.Len() < 1<<20 {
		t.Fatalf("basebackup of %d bytes: %v", tarball.Len(), err)
	}
	// So does a basebackup ahead of ingest.
	if err := ps.Basebackup(bbctx, io.Discard, ttid, (committed + 1<<30).String()); err == nil {
		t.Fatal("a basebackup 1 GiB ahead of ingest succeeded")
	}

	// Scrape every daemon. Background work (ingest, feedback, compaction)
	// settles in the first scrapes: poll for the values that trail.
	var sk []scrape
	var wpm, psm scrape
	walcheck.WaitFor(t, "the pageserver's feedback to reach a safekeeper", time.Minute, func() (bool, string) {
		sk = nil
		fed := 0.0
		for i, s := range sks {
			sk = append(sk, scrapeMetrics(t, fmt.Sprintf("safekeeper %d", i+1), s.HTTPAddr))
			v, _ := sk[i].sum("safekeeper_ps_feedback_count_total")
			fed += v
		}
		return fed > 0, ps.Log()
	})
	wpm = scrapeMetrics(t, "walproposer", wp.HTTPAddr)
	psm = scrapeMetrics(t, "pageserver", ps.HTTPAddr)

	exported := map[string]string{}
	for i, s := range sk {
		for n := range s.names() {
			exported[n] = fmt.Sprintf("safekeeper %d", i+1)
		}
	}
	for n := range wpm.names() {
		exported[n] = "walproposer"
	}
	for n := range psm.names() {
		exported[n] = "pageserver"
	}
	var missing []string
	for _, n := range dashboardMetrics(t, loadDashboard(t)) {
		if exported[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		var all []string
		for n := range exported {
			all = append(all, n)
		}
		sort.Strings(all)
		t.Errorf("the dashboard queries metrics no daemon exports: %q\nexported: %q", missing, all)
	}

	tl := fmt.Sprintf(`tenant_id="%s",timeline_id="%s"`, ttid.Tenant, ttid.Timeline)
	type check struct {
		who    string
		s      scrape
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}
	atLeast := func(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
	getpage := `smgr_query_type="get_page_at_lsn"`
	checks := []check{
		{"pageserver", psm, "pageserver_last_record_lsn", []string{tl}, atLeast(float64(committed)), ">= the walproposer's commit LSN " + committed.String()},
		{"pageserver", psm, "pageserver_walreceiver_commit_lsn", []string{tl}, atLeast(float64(committed)), ">= " + committed.String()},
		{"pageserver", psm, "pageserver_wal_ingest_records_received", []string{tl}, atLeast(1000), ">= 1000 (pgbench)"},
		{"pageserver", psm, "pageserver_wal_ingest_bytes_received", []string{tl}, atLeast(float64(committed - start)), ">= the WAL written"},
		{"pageserver", psm, "pageserver_walreceiver_streaming", []string{tl}, atLeast(1), "1"},
		{"pageserver", psm, "pageserver_walreceiver_started_connections_total", []string{tl}, atLeast(1), ">= 1"},
		{"pageserver", psm, "pageserver_resident_physical_size", []string{tl}, atLeast(1 << 20), ">= 1 MiB of layer files"},
		{"pageserver", psm, "pageserver_layer_count", []string{tl, `place="disk"`}, atLeast(1), ">= 1 layer file"},
		{"pageserver", psm, "pageserver_timeline_broken", []string{tl}, func(v float64) bool { return v == 0 }, "0"},
		{"pageserver", psm, "pageserver_timelines", nil, func(v float64) bool { return v == 1 }, "1"},
		{"walproposer", wpm, "walproposer_safekeeper_streaming", nil, atLeast(2), ">= 2 (a majority)"},
		{"walproposer", wpm, "walproposer_commit_latency_seconds_count", nil, atLeast(100), ">= 100 (commits)"},
		{"pageserver", psm, "pageserver_smgr_query_seconds_global_count", []string{getpage}, atLeast(float64(pages + 1)), fmt.Sprintf(">= %d GetPage requests", pages+1)},
		{"pageserver", psm, "pageserver_smgr_query_started_global_count", []string{getpage}, atLeast(float64(pages + 1)), fmt.Sprintf(">= %d", pages+1)},
		{"pageserver", psm, "pageserver_smgr_query_seconds_global_count", []string{`smgr_query_type="get_rel_size"`}, atLeast(1), ">= 1"},
		{"pageserver", psm, "pageserver_pagestream_handler_results_total", []string{`outcome="error"`}, atLeast(1), ">= 1 (the read ahead of ingest)"},
		{"pageserver", psm, "pageserver_wait_lsn_seconds_count", nil, atLeast(2), ">= 2 (a GetPage and a basebackup)"},
		{"pageserver", psm, "pageserver_wait_lsn_seconds_sum", nil, atLeast(3), ">= 3 s (both waited out the 2 s timeout)"},
		{"pageserver", psm, "pageserver_wait_lsn_finished_count", nil, atLeast(2), ">= 2"},
		{"pageserver", psm, "pageserver_basebackup_query_seconds_count", nil, atLeast(1), ">= 1"},
		{"pageserver", psm, "pageserver_compute_commands", []string{`command="pagestream_v3"`}, atLeast(1), ">= 1"},
	}
	for i, s := range sk {
		who := fmt.Sprintf("safekeeper %d", i+1)
		checks = append(checks,
			check{who, s, "safekeeper_flush_lsn", []string{tl}, atLeast(float64(committed)), ">= " + committed.String()},
			check{who, s, "safekeeper_disk_usage_bytes", []string{tl}, atLeast(16 << 20), ">= one WAL segment"},
			check{who, s, "safekeeper_received_wal_bytes_total", nil, atLeast(float64(committed - start.SegmentStart(primary.WALSegmentSize()))), ">= the WAL written"},
			check{who, s, "safekeeper_write_lsn", []string{tl}, atLeast(float64(committed)), ">= " + committed.String()},
			check{who, s, "safekeeper_connected_computes", []string{tl}, atLeast(1), ">= 1 (the walproposer)"},
			check{who, s, "safekeeper_active_timelines", nil, atLeast(1), ">= 1"},
			check{who, s, "safekeeper_timelines", nil, func(v float64) bool { return v == 1 }, "1"},
		)
	}
	// The pageserver reports to the safekeeper it streams from: that one
	// knows where it is.
	reported := 0.0
	for _, s := range sk {
		v, _ := s.sum("safekeeper_ps_last_received_lsn", tl)
		reported = max(reported, v)
	}
	if reported < float64(start) {
		t.Errorf("no safekeeper has a pageserver feedback beyond the start %s: safekeeper_ps_last_received_lsn max %v", start, lsn.LSN(reported))
	}
	for _, c := range checks {
		v, ok := c.s.sum(c.name, c.labels...)
		if !ok || !c.ok(v) {
			t.Errorf("%s: %s%v = %v (present %v), want %s", c.who, c.name, c.labels, v, ok, c.want)
		}
	}
}
