package pagecheck

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"strata.dev/test/pgharness"
)

// ClusterOptions are the server settings Workload and Compare rely on.
// Tests add their own (e.g. keeping WAL segments around).
func ClusterOptions() []pgharness.Option {
	return []pgharness.Option{
		pgharness.WithConf("autovacuum", "off"),              // pages change only when the test says
		pgharness.WithConf("max_prepared_transactions", "4"), // Workload prepares transactions
	}
}

// WorkloadInfo is what the workload learned that the checks need.
type WorkloadInfo struct {
	PreparedXid uint32 // the prepared transaction left open
	FileCopyDB  uint32 // a database created by FILE_COPY
}

// Workload runs pgbench and DDL on c (started, with ClusterOptions) to
// write WAL of most kinds the pageserver ingests: relation extension and
// truncation, indexes of two access methods, VACUUM (FULL, FREEZE),
// sequences, subtransactions, visibility map clears, CREATE DATABASE with
// both strategies (one a copy of a database whose pages need WAL redo)
// and DROP DATABASE, an unlogged table, prepared
// transactions (one left open), online checkpoints and a multixact.
func Workload(t *testing.T, ctx context.Context, c *pgharness.Cluster) WorkloadInfo {
	t.Helper()
	var w WorkloadInfo
	c.RunPgbench(t, "-i", "-s", "1", "-q")
	// One client: concurrent inserts would extend tables in bulk, without
	// WAL, past what any record references.
	c.RunPgbench(t, "-t", "300", "-c", "1")

	for _, sql := range []string{
		"CREATE TABLE t1 (id int PRIMARY KEY, v text)",
		"INSERT INTO t1 SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 20000) g",
		"CREATE INDEX t1_v ON t1 (v)",
		"CREATE TABLE t2 AS SELECT * FROM t1 WHERE id < 1000",
		"CREATE INDEX t2_id ON t2 USING hash (id)",
		"DROP TABLE t2",
		"DELETE FROM t1 WHERE id > 10000",
		"VACUUM t1", // truncates the heap, its FSM and VM
		"TRUNCATE pgbench_history",
		"VACUUM FULL pgbench_branches",
		"CREATE SEQUENCE s1",
		"SELECT nextval('s1') FROM generate_series(1, 50)",
		// Subtransactions, committed and rolled back.
		"BEGIN; INSERT INTO t1 VALUES (100001, 'a'); SAVEPOINT a; INSERT INTO t1 VALUES (100002, 'b'); " +
			"RELEASE a; SAVEPOINT b; INSERT INTO t1 VALUES (100003, 'c'); ROLLBACK TO b; COMMIT",
		"BEGIN; INSERT INTO t1 VALUES (100004, 'd'); ROLLBACK",
		"VACUUM (FREEZE) pgbench_accounts",
		// Clears visibility map bits set by the vacuum.
		"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0",
		"DELETE FROM pgbench_accounts WHERE aid % 1000 = 1",
		"CREATE DATABASE db1",
		"CREATE DATABASE db2 TEMPLATE template0 STRATEGY FILE_COPY",
		"DROP DATABASE db1",
		"CREATE UNLOGGED TABLE u1 (id int)", // only its init fork is WAL-logged
		"BEGIN; INSERT INTO t1 VALUES (100005, 'p1'); PREPARE TRANSACTION 'p1'",
		"COMMIT PREPARED 'p1'",
		"CHECKPOINT", // an online checkpoint in the middle
		"BEGIN; INSERT INTO t1 VALUES (100006, 'p2'); PREPARE TRANSACTION 'p2'",
	} {
		c.Exec(t, sql)
	}
	var xid, dbOID int64
	c.QueryRow(t, "SELECT transaction::text::int8 FROM pg_prepared_xacts WHERE gid = 'p2'").Scan(&xid)
	c.QueryRow(t, "SELECT oid::int8 FROM pg_database WHERE datname = 'db2'").Scan(&dbOID)
	w.PreparedXid, w.FileCopyDB = uint32(xid), uint32(dbOID)

	// A table in the file-copied database.
	conn, err := pgx.Connect(ctx, c.ConnString("db2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE d2 (id int PRIMARY KEY)",
		"INSERT INTO d2 SELECT generate_series(1, 1000)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	// A copy of db2 now: its new pages are still PostgreSQL records, so
	// ingest rebuilds them through the WAL-redo pool to copy them.
	c.Exec(t, "CREATE DATABASE db3 TEMPLATE db2 STRATEGY FILE_COPY")

	// A multixact: two sessions share a row lock.
	c1, c2 := c.MustConnect(t), c.MustConnect(t)
	for _, conn := range []*pgx.Conn{c1, c2} {
		if _, err := conn.Exec(ctx, "BEGIN; SELECT * FROM t1 WHERE id = 1 FOR SHARE"); err != nil {
			t.Fatal(err)
		}
	}
	for _, conn := range []*pgx.Conn{c1, c2} {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
	}
	c.Exec(t, "UPDATE t1 SET v = 'locked' WHERE id = 1")
	c.Exec(t, "CHECKPOINT")
	return w
}
