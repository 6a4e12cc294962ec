package pageserver_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
)

// Acceptance 2 of issue 7: the primary's data directory is gone; a new
// compute starts from storage alone (walproposer --sync-safekeepers, a
// basebackup at the LSN it prints, unmodified PostgreSQL on it, a
// walproposer streaming from that LSN). Every transaction that had
// committed is there, and new commits are acknowledged by the safekeepers
// and ingested by the pageserver.
func TestComputeFromStorage(t *testing.T) {
	ctx := context.Background()
	c, ps := startWithStorage(t)
	primary := c.primary

	primary.RunPgbench(t, "-i", "-s", "1", "-q")
	primary.RunPgbench(t, "-t", "300", "-c", "1", "-n")
	primary.Exec(t, "CREATE TABLE marker (id int PRIMARY KEY, note text)")
	for i := 1; i <= 5; i++ {
		primary.Exec(t, "INSERT INTO marker VALUES ($1, $2)", i, fmt.Sprintf("before %d", i))
	}
	primary.Exec(t, "UPDATE marker SET note = note || ' updated' WHERE id = 3")
	primary.Exec(t, "DELETE FROM marker WHERE id = 5")
	before := readState(t, primary)
	t.Logf("committed before the kill: %+v", before)

	// Nothing runs now, so the primary's WAL ends at a record boundary;
	// then it dies and its data directory goes.
	primary.Kill(t)
	c.wp.Kill()
	if err := os.RemoveAll(primary.DataDir()); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := daemons.RunSyncSafekeepers(t, "--safekeepers", c.addrs(),
		"--tenant-id", c.ttid.Tenant.String(), "--timeline-id", c.ttid.Timeline.String(), "--sync-timeout", "30s")
	if err != nil {
		t.Fatalf("sync-safekeepers: %v\n%s", err, stderr)
	}
	synced, err := lsn.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("sync-safekeepers printed %q: %v", out, err)
	}
	t.Logf("safekeepers synced at %s", synced)

	t0 := time.Now()
	compute := computeFromBasebackup(t, ctx, ps, c.ttid, synced.String(), computeOptions())
	c.primary = compute
	c.startWalproposer(t, synced)
	t.Logf("new compute up and streaming %v after sync", time.Since(t0).Round(time.Millisecond))
	if log := c.wp.Log(); !strings.Contains(log, "from="+synced.String()) {
		t.Errorf("the new walproposer does not stream from %s:\n%s", synced, log)
	}

	if got := readState(t, compute); got != before {
		t.Errorf("after the new compute started: %+v, committed before the kill: %+v", got, before)
	}

	// Writes continue: commits wait for the safekeepers (synchronous_commit
	// on, the walproposer as the synchronous standby), so their returning
	// means a quorum has them.
	compute.RunPgbench(t, "-t", "100", "-c", "1", "-n")
	compute.Exec(t, "INSERT INTO marker VALUES (100, 'after')")
	end := compute.RecordEndBound(t)
	after := readState(t, compute)
	if after.History != before.History+100 || after.Markers != before.Markers+1 {
		t.Errorf("after new writes: %+v, want 100 more history rows and one more marker than %+v", after, before)
	}
	if end <= synced {
		t.Errorf("the new compute's WAL ends at %s, not past %s", end, synced)
	}
	daemons.WaitFlushed(t, c.sks, c.ttid, end)
	ti := ps.WaitLastRecord(t, c.ttid, end, time.Minute)
	t.Logf("new writes: WAL %s..%s on every safekeeper; pageserver at %s", synced, end, ti.LastRecordLSN)

	// The pageserver serves the new writes: a basebackup at what it has
	// ingested starts yet another compute that sees them.
	reader := computeFromBasebackup(t, ctx, ps, c.ttid, ti.LastRecordLSN.String(), pagecheck.ClusterOptions())
	if got := readState(t, reader); got != after {
		t.Errorf("a compute from a basebackup at %s: %+v, the new compute has %+v", ti.LastRecordLSN, got, after)
	}
}

// computeOptions are the primary's settings: commits wait for the
// walproposer.
func computeOptions() []pgharness.Option {
	return append([]pgharness.Option{
		pgharness.WithConf("synchronous_standby_names", "walproposer"),
		pgharness.WithConf("synchronous_commit", "on"),
		pgharness.WithConf("wal_keep_size", "4GB"),     // the first walproposer starts at initdb's segment
		pgharness.WithConf("checkpoint_timeout", "1h"), // no checkpoints but the test's
	}, pagecheck.ClusterOptions()...)
}

// computeState is what the test checks survives: committed pgbench
// transactions and a table of known rows.
type computeState struct {
	Balance  int64
	History  int64
	Accounts int64
	Markers  int64
	Notes    string
}

func readState(t *testing.T, c *pgharness.Cluster) computeState {
	t.Helper()
	var s computeState
	c.QueryRow(t, "SELECT sum(abalance)::int8, count(*) FROM pgbench_accounts").Scan(&s.Balance, &s.Accounts)
	c.QueryRow(t, "SELECT count(*) FROM pgbench_history").Scan(&s.History)
	c.QueryRow(t, "SELECT count(*), string_agg(id || ':' || note, ',' ORDER BY id) FROM marker").Scan(&s.Markers, &s.Notes)
	return s
}

// computeFromBasebackup fetches a basebackup at at (empty: the
// timeline's end) over the pageserver's libpq port and starts unmodified
// PostgreSQL on it with opts (computeFromTar).
func computeFromBasebackup(t *testing.T, ctx context.Context, ps *daemons.Pageserver, ttid id.TenantTimeline, at string, opts []pgharness.Option) *pgharness.Cluster {
	t.Helper()
	var args []string
	if at != "" {
		args = append(args, at)
	}
	var tarball bytes.Buffer
	if err := ps.Basebackup(ctx, &tarball, ttid, args...); err != nil {
		t.Fatal(err)
	}
	return computeFromTar(t, tarball.Bytes(), opts...)
}

// computeFromTar starts unmodified PostgreSQL on a basebackup tar with the
// harness's settings and opts, checking that it did no recovery.
func computeFromTar(t *testing.T, tarball []byte, opts ...pgharness.Option) *pgharness.Cluster {
	t.Helper()
	r := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart()}, opts...)...)
	r.ReplaceDataDir(t, bytes.NewReader(tarball))
	r.StartFromBasebackup(t)
	return r
}

// startWithStorage starts a new primary (computeOptions) on storage: its
// initdb state imported into a pageserver (small layers, frequent
// compaction, reads waiting up to 30 s for WAL), then the primary started
// with a walproposer streaming to 3 safekeepers from its initdb
// checkpoint's segment.
func startWithStorage(t *testing.T) (*cluster, *daemons.Pageserver) {
	t.Helper()
	c := newCluster(t, pgharness.New(t, append([]pgharness.Option{pgharness.NoStart()}, computeOptions()...)...))
	ps := c.startPageserver(t, "--wait-lsn-timeout", "30s")
	c.startFromInitdb(t, ps)
	return c, ps
}
