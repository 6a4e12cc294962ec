// End-to-end tests of bin/walproposer: an unmodified PostgreSQL 15 primary
// with synchronous_standby_names = 'walproposer', three real safekeepers,
// and the real walproposer process in between.
package walproposer_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

type cluster struct {
	primary *pgharness.Cluster
	sks     []*daemons.Safekeeper
	wp      *daemons.Walproposer
	ttid    id.TenantTimeline
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		primary: pgharness.New(t,
			pgharness.WithConf("synchronous_standby_names", "walproposer"),
			pgharness.WithConf("synchronous_commit", "on"),
			pgharness.WithConf("max_wal_size", "1GB")),
		ttid: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()},
	}
	for i := 1; i <= 3; i++ {
		c.sks = append(c.sks, daemons.StartSafekeeper(t, i))
	}
	c.wp = daemons.NewWalproposer(t, c.args()...)
	c.wp.Start()
	c.waitElected(t)
	return c
}

func (c *cluster) addrs() string { return strings.Join(daemons.PGAddrs(c.sks), ",") }

func (c *cluster) args() []string {
	return []string{"--pgconn", c.primary.ConnString("postgres"), "--safekeepers", c.addrs(),
		"--tenant-id", c.ttid.Tenant.String(), "--timeline-id", c.ttid.Timeline.String(),
		"--reconnect-delay", "50ms", "--heartbeat-interval", "200ms"}
}

// metric reads an unlabelled sample from the walproposer's /metrics.
func (c *cluster) metric(name string) float64 { return daemons.Metric(c.wp.HTTPAddr, name) }

func (c *cluster) waitElected(t *testing.T) {
	t.Helper()
	walcheck.WaitFor(t, "the walproposer to be elected and streaming", 30*time.Second, func() (bool, string) {
		return c.metric("walproposer_commit_lsn") > 0 && c.metric("walproposer_primary_connected") == 1, c.wp.Log()
	})
}

func (c *cluster) start(t *testing.T) lsn.LSN {
	return lsn.LSN(c.sks[0].Timeline(t, c.ttid).TimelineStartLsn)
}

func flushLSN(t *testing.T, p *pgharness.Cluster) lsn.LSN {
	var s string
	p.QueryRow(t, "SELECT pg_current_wal_flush_lsn()::text").Scan(&s)
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkIdentical waits until every running safekeeper has the primary's WAL
// up to its flush LSN and compares the bytes.
func (c *cluster) checkIdentical(t *testing.T) lsn.LSN {
	t.Helper()
	end := flushLSN(t, c.primary)
	daemons.WaitFlushed(t, c.sks, c.ttid, end)
	start := c.start(t)
	for _, sk := range c.sks {
		walcheck.CompareWAL(t, fmt.Sprintf("safekeeper %d", sk.ID), c.primary.WALDir(),
			sk.TimelineDir(c.ttid.Tenant.String(), c.ttid.Timeline.String()), start, end, c.primary.WALSegmentSize())
	}
	t.Logf("safekeepers byte-identical to the primary over [%v, %v)", start, end)
	return end
}

// pgbench runs a tpcb-like load and fails the test unless every transaction succeeded.
func pgbench(t *testing.T, p *pgharness.Cluster, seconds int) string {
	out := p.RunPgbench(t, "-c", "4", "-j", "2", "-T", strconv.Itoa(seconds), "-n")
	if !strings.Contains(out, "number of failed transactions: 0") {
		t.Errorf("pgbench reported failures:\n%s", out)
	}
	return out
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// 1. Every commit waits for a safekeeper majority and succeeds; afterwards
// all three safekeepers hold WAL identical to the primary's.
func TestSyncCommitsThroughWalproposer(t *testing.T) {
	c := newCluster(t)
	c.primary.RunPgbench(t, "-i", "-s", "2", "-q")
	out := pgbench(t, c.primary, 20)
	t.Logf("pgbench: %s", lastLine(out))
	var state string
	c.primary.QueryRow(t, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'walproposer'").Scan(&state)
	if state != "sync" {
		t.Fatalf("walproposer is %q in pg_stat_replication, want sync", state)
	}
	c.checkIdentical(t)
	if n := c.metric("walproposer_commit_latency_seconds_count"); n == 0 {
		t.Error("commit latency histogram is empty")
	}
}

// 2. kill -9 of one safekeeper mid-run, back 5 s later: no client error, it
// catches up and ends byte-identical.
func TestSafekeeperKilledDuringLoad(t *testing.T) {
	c := newCluster(t)
	c.primary.RunPgbench(t, "-i", "-s", "2", "-q")
	done := make(chan string, 1)
	go func() { done <- pgbench(t, c.primary, 15) }()
	time.Sleep(3 * time.Second) // into the run
	c.sks[2].Kill()
	time.Sleep(5 * time.Second) // the 5 s outage
	c.sks[2].Start()
	t.Logf("pgbench: %s", lastLine(<-done))
	c.checkIdentical(t)
}

// 3. With two safekeepers down commits block; they complete when the
// safekeepers return.
func TestCommitsBlockWithoutMajority(t *testing.T) {
	c := newCluster(t)
	c.primary.Exec(t, "CREATE TABLE t (v int)")
	c.sks[1].Kill()
	c.sks[2].Kill()
	conn, err := c.primary.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	committed := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "INSERT INTO t VALUES (1)")
		committed <- err
	}()
	select {
	case err := <-committed:
		t.Fatalf("commit returned without a safekeeper majority (err %v)", err)
	case <-time.After(2 * time.Second):
	}
	c.sks[1].Start()
	c.sks[2].Start()
	select {
	case err := <-committed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocked commit did not complete after the safekeepers returned")
	}
	var n int
	c.primary.QueryRow(t, "SELECT count(*) FROM t").Scan(&n)
	if n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	c.checkIdentical(t)
}

// 4. kill -9 of the walproposer mid-run: after a restart it re-elects with a
// higher term, nothing committed is lost, the WAL stays identical.
func TestWalproposerRestart(t *testing.T) {
	c := newCluster(t)
	c.primary.RunPgbench(t, "-i", "-s", "2", "-q")
	termBefore := c.sks[0].Timeline(t, c.ttid).Term
	done := make(chan string, 1)
	go func() { done <- pgbench(t, c.primary, 12) }()
	time.Sleep(3 * time.Second)
	committedBefore := lsn.LSN(c.sks[0].Timeline(t, c.ttid).CommitLsn)
	c.wp.Kill()
	time.Sleep(time.Second)
	c.wp.Start()
	c.waitElected(t)
	t.Logf("pgbench: %s", lastLine(<-done))
	if term := c.sks[0].Timeline(t, c.ttid).Term; term <= termBefore {
		t.Fatalf("term %d after the restart, not above %d", term, termBefore)
	}
	end := c.checkIdentical(t)
	if end < committedBefore {
		t.Fatalf("end of WAL %v is below what was committed before the kill %v", end, committedBefore)
	}
	// Every transaction pgbench saw committed is in the table history.
	var n int
	c.primary.QueryRow(t, "SELECT count(*) FROM pgbench_history").Scan(&n)
	if n == 0 {
		t.Fatal("no pgbench transactions")
	}
}

// 5. --sync-safekeepers after the primary stopped prints exactly the
// primary's end of WAL.
func TestSyncSafekeepersAfterPrimaryStop(t *testing.T) {
	c := newCluster(t)
	c.primary.RunPgbench(t, "-i", "-s", "1", "-q")
	pgbench(t, c.primary, 3)
	c.primary.Stop(t)
	c.wp.Kill()
	end := primaryEndOfWAL(t, c.primary)
	out, stderr, err := daemons.RunSyncSafekeepers(t, "--safekeepers", c.addrs(),
		"--tenant-id", c.ttid.Tenant.String(), "--timeline-id", c.ttid.Timeline.String(), "--sync-timeout", "30s")
	if err != nil {
		t.Fatalf("sync-safekeepers: %v\n%s", err, stderr)
	}
	got, err := lsn.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("sync-safekeepers printed %q: %v", out, err)
	}
	if got != end {
		t.Fatalf("sync-safekeepers printed %v; the primary's WAL ends at %v", got, end)
	}
	// Every safekeeper has it committed and persisted now.
	for _, sk := range c.sks {
		if info := sk.Timeline(t, c.ttid); lsn.LSN(info.CommitLsn) < end {
			t.Errorf("safekeeper %d commit_lsn %v < %v", sk.ID, lsn.LSN(info.CommitLsn), end)
		}
	}
	// A second run gives the same answer.
	out2, _, err := daemons.RunSyncSafekeepers(t, "--safekeepers", c.addrs(),
		"--tenant-id", c.ttid.Tenant.String(), "--timeline-id", c.ttid.Timeline.String())
	if err != nil || strings.TrimSpace(out2) != got.String() {
		t.Fatalf("second sync-safekeepers: %q, %v", out2, err)
	}
}

// Bad input: an unreachable primary, and safekeepers that already hold
// another cluster's timeline, give a clear error and no acknowledgement.
func TestBadInput(t *testing.T) {
	sk := daemons.StartSafekeeper(t, 1)
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	args := func(pgconn string) []string {
		return []string{"--pgconn", pgconn, "--safekeepers", sk.PGAddr,
			"--tenant-id", ttid.Tenant.String(), "--timeline-id", ttid.Timeline.String()}
	}
	wp := daemons.NewWalproposer(t, args("host=127.0.0.1 port=1 user=postgres connect_timeout=2")...)
	wp.Ready = nil
	wp.Start()
	exited, status := wp.Exited()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("walproposer kept running without a primary")
	}
	if status() == nil || !strings.Contains(wp.Log(), "connect to the primary") {
		t.Fatalf("unreachable primary: exit %v, log:\n%s", status(), wp.Log())
	}

	// Cluster A creates the timeline; cluster B then claims it.
	a := pgharness.New(t)
	wpA := daemons.NewWalproposer(t, args(a.ConnString("postgres"))...)
	wpA.Start()
	walcheck.WaitFor(t, "cluster A's timeline", 30*time.Second, func() (bool, string) {
		return sk.Timeline(t, ttid).SystemId != 0, ""
	})
	wpA.Stop()
	b := pgharness.New(t)
	wpB := daemons.NewWalproposer(t, args(b.ConnString("postgres"))...)
	wpB.Ready = nil
	wpB.Start()
	exited, status = wpB.Exited()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("walproposer for another cluster kept running; log:\n%s", wpB.Log())
	}
	if status() == nil || !strings.Contains(wpB.Log(), "another cluster") {
		t.Fatalf("another cluster's walproposer: exit %v, log:\n%s", status(), wpB.Log())
	}
}

// primaryEndOfWAL is the end of a cleanly stopped primary's WAL: the end of
// its shutdown checkpoint, which must be its last record.
func primaryEndOfWAL(t *testing.T, p *pgharness.Cluster) lsn.LSN {
	t.Helper()
	ckpt := walcheck.LatestCheckpoint(t, p)
	end, last := walcheck.EndOfWAL(t, p.WALDir(), p.WALSegmentSize(), ckpt)
	if last != ckpt {
		t.Fatalf("the last record starts at %v, not at the shutdown checkpoint %v", last, ckpt)
	}
	return end
}
