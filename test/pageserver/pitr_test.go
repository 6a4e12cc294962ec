package pageserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"strata.dev/libs/lsn"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
)

// pitrPoint is an LSN taken during the run and the primary's pg_dumpall
// there.
type pitrPoint struct {
	name string
	at   lsn.LSN
	dump string
}

// Acceptance 1 of issue 7: pgbench and DDL (every built-in index access
// method, a sequence, CREATE DATABASE, TRUNCATE, VACUUM) on a primary
// streaming through the walproposer to three safekeepers and on to the
// pageserver. At three points, with writes paused, the primary's
// pg_dumpall is recorded with a record end at or after its last commit.
// Afterwards a basebackup at each of those LSNs starts unmodified
// PostgreSQL without recovery; its dump is the recorded one and
// pg_amcheck --heapallindexed is clean.
func TestBasebackupAtPastLSNs(t *testing.T) {
	ctx := context.Background()
	c, ps := startWithStorage(t)
	primary := c.primary

	// take records a point: nothing else runs on the primary, so its dump
	// is what every commit so far left, and the pageserver's last record
	// LSN, once at or past the end of the last record, covers them all.
	// WAL written after the last commit (nextval outside a transaction
	// with an xid, pruning by the dump's reads) is flushed on the primary,
	// and so streamed, only with the next commit or the walwriter's flush
	// of the bgwriter's snapshot record up to 15 s later: an xid's commit,
	// which changes nothing pg_dumpall shows, flushes it at once.
	var points []pitrPoint
	take := func(name string) {
		t.Helper()
		dump := primary.DumpAll(t)
		end := primary.RecordEndBound(t)
		primary.Exec(t, "SELECT txid_current()")
		at := ps.WaitLastRecord(t, c.ttid, end, time.Minute).LastRecordLSN
		t.Logf("point %s at %s (WAL insert bound %s): dump of %d bytes", name, at, end, len(dump))
		points = append(points, pitrPoint{name: name, at: at, dump: dump})
	}

	// 1: pgbench tables, then indexes of every access method and a
	// sequence, modified after they are built.
	primary.RunPgbench(t, "-i", "-s", "1", "-q")
	pagecheck.AMWorkload(t, ctx, primary)
	take("ddl")

	// 2: pgbench transactions, a new database with a table, a truncate and
	// vacuums.
	primary.RunPgbench(t, "-t", "200", "-c", "1", "-n")
	primary.Exec(t, "CREATE DATABASE pitr_db")
	execIn(t, ctx, primary, "pitr_db",
		"CREATE TABLE d (id int PRIMARY KEY, v text)",
		"INSERT INTO d SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
		"CREATE INDEX d_v ON d USING hash (v)",
		"DELETE FROM d WHERE id % 3 = 0",
		"VACUUM d",
	)
	primary.Exec(t, "TRUNCATE pgbench_history")
	primary.Exec(t, "UPDATE am.items SET n = n + 1, label = label || 'v' WHERE id % 13 = 0")
	primary.Exec(t, "DELETE FROM pgbench_accounts WHERE aid % 50 = 0")
	primary.Exec(t, "VACUUM pgbench_accounts")
	primary.Exec(t, "VACUUM am.items")
	take("database")

	// 3: the end of the run.
	primary.RunPgbench(t, "-t", "200", "-c", "1", "-n")
	primary.Exec(t, "SELECT nextval('am.ids') FROM generate_series(1, 10)")
	primary.Exec(t, "CREATE TABLE am.late AS SELECT g, md5(g::text) AS h FROM generate_series(1, 3000) g")
	primary.Exec(t, "CREATE INDEX late_h ON am.late USING brin (h)")
	execIn(t, ctx, primary, "pitr_db", "TRUNCATE d", "INSERT INTO d VALUES (1, 'after truncate')")
	take("end")

	primary.Stop(t)
	c.wp.Kill()

	for _, p := range points {
		t.Run(p.name, func(t *testing.T) {
			r := computeFromBasebackup(t, ctx, ps, c.ttid, p.at.String(), pagecheck.ClusterOptions())
			if got := r.DumpAll(t); got != p.dump {
				t.Errorf("pg_dumpall of a basebackup at %s differs from the primary's there:\n%s", p.at, pgharness.DumpDiff(p.dump, got))
			}
			out, err := r.Command("pg_amcheck", "--all", "--install-missing", "--heapallindexed").CombinedOutput()
			if err != nil {
				t.Errorf("pg_amcheck at %s: %v\n%s", p.at, err, out)
			}
			r.Stop(t)
		})
	}
}

// execIn runs statements in database db of c.
func execIn(t *testing.T, ctx context.Context, c *pgharness.Cluster, db string, sqls ...string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}
