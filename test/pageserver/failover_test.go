package pageserver_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pageservice"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// failoverDeadline is issue 8's requirement: the pageserver streams from
// another safekeeper within 5 s of its current one dying.
const failoverDeadline = 5 * time.Second

// Acceptance 2 of issue 8: a primary behind the walproposer and three
// safekeepers, a pageserver that follows their WatchTimeline streams.
// While pgbench writes, the safekeeper the pageserver streams from is
// killed with SIGKILL: within 5 s the pageserver streams from another one
// (its HTTP status, polled every 100 ms, says from which), and ingest goes
// on with no gap: it ends exactly at the primary's end of WAL, a compute
// started from a basebackup there dumps what the primary dumped, and pages
// read over pagestream there are the primary's.
func TestFailoverOnSafekeeperKill(t *testing.T) {
	ctx := context.Background()
	c, ps := startWithStorage(t)
	if !slices.Contains(ps.Args, "--safekeepers-grpc") {
		t.Fatalf("the pageserver was started without --safekeepers-grpc: %v", ps.Args)
	}
	primary := c.primary
	primary.RunPgbench(t, "-i", "-s", "2", "-q")

	src := waitWALSource(t, ps, c.ttid, "")
	victim := -1
	for i, sk := range c.sks {
		if sk.PGAddr == src {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the pageserver streams from %q, none of the safekeepers %v", src, daemons.PGAddrs(c.sks))
	}

	// One client: concurrent inserts would extend tables in bulk without
	// WAL, and the page check compares relation sizes.
	writes := make(chan error, 1)
	go func() {
		out, err := primary.Command("pgbench", "-c", "1", "-T", "15", "-n").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("pgbench during the kill: %v\n%s", err, out)
		}
		writes <- err
	}()
	// Kill once ingest is visibly moving.
	moving := ps.Timeline(t, c.ttid).LastRecordLSN + 256<<10
	atKill := ps.WaitLastRecord(t, c.ttid, moving, time.Minute).LastRecordLSN
	c.sks[victim].Kill()
	killedAt := time.Now()
	to := waitWALSource(t, ps, c.ttid, src)
	took := time.Since(killedAt)
	t.Logf("killed safekeeper %d (%s) at last_record_lsn %s; streaming from %s %v later",
		c.sks[victim].ID, src, atKill, to, took.Round(time.Millisecond))
	if took > failoverDeadline {
		t.Errorf("the pageserver took %v to stream from another safekeeper, want at most %v", took, failoverDeadline)
	}
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	if ti := ps.Timeline(t, c.ttid); ti.LastRecordLSN <= atKill || ti.State != "Active" {
		t.Fatalf("after the kill: last_record_lsn %s (at the kill %s), state %s %s", ti.LastRecordLSN, atKill, ti.State, ti.StateError)
	}

	// The primary's final state: its dump, and the relations whose pages
	// are compared, then its end of WAL after a clean shutdown.
	dump := primary.DumpAll(t)
	rels := pgbenchRels(t, primary)
	primary.Stop(t)
	ckpt := walcheck.LatestCheckpoint(t, primary)
	walEnd, _ := walcheck.EndOfWAL(t, primary.WALDir(), primary.WALSegmentSize(), ckpt)
	final := ps.WaitLastRecord(t, c.ttid, walEnd, time.Minute).LastRecordLSN
	if final != walEnd {
		t.Fatalf("the pageserver ends at %s, the primary's WAL at %s", final, walEnd)
	}

	checkPagesThroughPageserver(t, ps, c.ttid, primary, rels, final)
	r := computeFromBasebackup(t, ctx, ps, c.ttid, final.String(), pagecheck.ClusterOptions())
	if got := r.DumpAll(t); got != dump {
		t.Errorf("pg_dumpall of a basebackup at %s differs from the primary's:\n%s", final, pgharness.DumpDiff(dump, got))
	}
}

// waitWALSource polls the pageserver's timeline status every 100 ms (60 s
// at most) until it streams from a safekeeper other than not ("" for
// any), and returns that safekeeper's libpq address.
func waitWALSource(t *testing.T, ps *daemons.Pageserver, ttid id.TenantTimeline, not string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ti := ps.Timeline(t, ttid)
		if src := ti.WALSourceConnstr; src != "" && src != not {
			return src
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pageserver streams from no safekeeper other than %q after 60 s (last error %q)", not, ti.WALReceiverLastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pgbenchRels are the main forks of pgbench's tables and indexes.
func pgbenchRels(t *testing.T, c *pgharness.Cluster) map[string]key.Rel {
	t.Helper()
	return mainForks(t, c, "pgbench_accounts", "pgbench_accounts_pkey", "pgbench_branches", "pgbench_tellers", "pgbench_history")
}

// mainForks are the main forks of the named relations of database
// postgres.
func mainForks(t *testing.T, c *pgharness.Cluster, names ...string) map[string]key.Rel {
	t.Helper()
	var db int64
	c.QueryRow(t, "SELECT oid::int8 FROM pg_database WHERE datname = 'postgres'").Scan(&db)
	rels := map[string]key.Rel{}
	for _, name := range names {
		var node int64
		c.QueryRow(t, "SELECT pg_relation_filenode('"+name+"')::int8").Scan(&node)
		rels[name] = key.Rel{Spc: key.DefaultTablespace, DB: uint32(db), Rel: uint32(node), Fork: key.ForkMain}
	}
	return rels
}

// checkPagesThroughPageserver reads every page of rels at at over the
// pageserver's pagestream and compares them with the stopped primary's
// files (comparePages).
func checkPagesThroughPageserver(t *testing.T, ps *daemons.Pageserver, ttid id.TenantTimeline, primary *pgharness.Cluster, rels map[string]key.Rel, at lsn.LSN) {
	t.Helper()
	cl := ps.Pagestream(t, ttid, pageservice.V3)
	pages, err := comparePages(t, cl, primary, rels, at)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pages read through the pageserver at %s equal the primary's", pages, at)
}

// comparePages reads every page of rels at at through cl and compares
// them with the stopped primary's files, under pagecheck.MaskPage. It
// returns how many pages it compared, or the first difference.
func comparePages(t *testing.T, cl *pageservice.Client, primary *pgharness.Cluster, rels map[string]key.Rel, at lsn.LSN) (int, error) {
	t.Helper()
	disk := pagecheck.DiskForks(t, primary.DataDir())
	pages := 0
	for name, rel := range rels {
		n, err := cl.Nblocks(rel, at)
		if err != nil || n != disk[rel] || n == 0 {
			return pages, fmt.Errorf("%s (%s): nblocks %d (%v), the primary's file %d", name, rel, n, err, disk[rel])
		}
		for blk := range n {
			page, err := cl.GetPage(rel, blk, at)
			if err != nil {
				return pages, fmt.Errorf("%s block %d: %w", name, blk, err)
			}
			want := pagecheck.MaskPage(pagecheck.ReadPage(t, primary.DataDir(), rel, blk), rel.Fork)
			if got := pagecheck.MaskPage(page, rel.Fork); !bytes.Equal(got, want) {
				return pages, fmt.Errorf("%s block %d at %s differs from the primary's at byte %d", name, blk, at, pagecheck.FirstDiff(got, want))
			}
			pages++
		}
	}
	return pages, nil
}
