// Package ingest_test runs a real PostgreSQL 15, ingests its WAL into an
// in-memory store and checks the result against the primary's own data
// directory: databases, relation forks and their sizes, every page whose
// newest stored version is an image, the SLRUs, relation maps, prepared
// transactions and the checkpoint.
//
// The initial state: the cluster is created but not started, and its data
// directory — what initdb left, shut down cleanly — is imported with
// ingest.Import at the location of its shutdown checkpoint record (the
// value pg_controldata reports). WAL decoding starts at that record, so
// the store's history is exactly import + every record the server wrote.
package ingest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

func TestIngestRealWAL(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []pgharness.Option
	}{
		// FPIs compressed with lz4, decompressed in Go.
		{"lz4", []pgharness.Option{pgharness.WithConf("wal_compression", "lz4")}},
		// Data checksums: hint bits are WAL-logged as XLOG_FPI_FOR_HINT.
		{"checksums_zstd", []pgharness.Option{pgharness.WithDataChecksums(), pgharness.WithConf("wal_compression", "zstd")}},
	} {
		t.Run(tc.name, func(t *testing.T) { testIngestRealWAL(t, tc.opts...) })
	}
}

func testIngestRealWAL(t *testing.T, opts ...pgharness.Option) {
	ctx := context.Background()
	c := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart(),
		pgharness.WithConf("wal_keep_size", "4GB"),     // every segment stays for the decode
		pgharness.WithConf("max_wal_size", "4GB"),      // no checkpoints but the test's
		pgharness.WithConf("checkpoint_timeout", "1h"), // ditto
		pgharness.WithConf("autovacuum", "off"),        // pages change only when the test says
		pgharness.WithConf("max_prepared_transactions", "4"),
	}, opts...)...)

	// The initial state, imported before the server first starts.
	start := walcheck.LatestCheckpoint(t, c)
	store := ingesttest.NewMemStore()
	began := time.Now()
	at, err := ingest.Import(ctx, store, os.DirFS(c.DataDir()))
	if err != nil {
		t.Fatal(err)
	}
	if at != start {
		t.Fatalf("imported at %s, pg_controldata says the checkpoint is at %s", at, start)
	}
	t.Logf("imported initdb's data directory at %s in %v", at, time.Since(began).Round(time.Millisecond))

	c.Start(t)
	began = time.Now()
	w := workload(t, ctx, c)
	primary := snapshotSQL(t, ctx, c)
	c.Stop(t) // a shutdown checkpoint; the data files are final
	end := walcheck.LatestCheckpoint(t, c)
	t.Logf("workload took %v; WAL from %s to the shutdown checkpoint at %s", time.Since(began).Round(time.Millisecond), start, end)

	began = time.Now()
	in, err := ingest.New(ctx, store, store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	beforeShutdown := ingestWAL(t, ctx, c, in, start, end)
	st := in.Stats()
	t.Logf("ingested %d records (%d values, %d commits, %d gap pages, %d VM clears skipped) in %v",
		st.Records, st.Entries, st.Commits, st.GapPagesZeroed, st.VMClearsSkipped, time.Since(began).Round(time.Millisecond))

	compare(t, ctx, c, store, primary, w, beforeShutdown)
}

// workloadInfo is what the workload learned that the checks need.
type workloadInfo struct {
	preparedXid uint32 // the prepared transaction left open
	fileCopyDB  uint32 // a database created by FILE_COPY
}

func workload(t *testing.T, ctx context.Context, c *pgharness.Cluster) workloadInfo {
	t.Helper()
	var w workloadInfo
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
	w.preparedXid, w.fileCopyDB = uint32(xid), uint32(dbOID)

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

// ingestWAL decodes pg_wal from start (a record) through the record at
// end and ingests every record. It returns the store's last record LSN
// just before the record at end.
func ingestWAL(t *testing.T, ctx context.Context, c *pgharness.Cluster, in *ingest.Ingester, start, end lsn.LSN) lsn.LSN {
	t.Helper()
	segSize := c.WALSegmentSize()
	dec := wal.NewDecoder(start, 15, segSize)
	var rec walrecord.Record
	var beforeEnd lsn.LSN
	var fpi, fpiHint, compressed int
	defer func() {
		t.Logf("WAL held %d XLOG_FPI and %d XLOG_FPI_FOR_HINT records, %d compressed images", fpi, fpiHint, compressed)
	}()
	for pos := start; ; pos = pos.SegmentStart(segSize) + lsn.LSN(segSize) {
		seg, err := walcheck.ReadSegment(c.WALDir(), pos.SegmentNumber(segSize), segSize)
		if err != nil {
			t.Fatalf("segment of %s: %v (the shutdown checkpoint at %s was not reached)", pos, err, end)
		}
		dec.Feed(seg[pos.SegmentOffset(segSize):])
		for {
			r, ok, err := dec.Next()
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !ok {
				break
			}
			if err := walrecord.DecodeInto(&rec, r.Data, r.StartLSN, r.EndLSN); err != nil {
				t.Fatal(err)
			}
			if rec.Header.RmID == walrecord.RmXLOG {
				switch rec.RmInfo() {
				case 0xB0:
					fpi++
				case 0xA0:
					fpiHint++
				}
			}
			for i := range rec.Blocks {
				if rec.Blocks[i].HasImage && rec.Blocks[i].Image.Compression() != walrecord.CompressionNone {
					compressed++
				}
			}
			if rec.StartLSN == end {
				if err := in.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				beforeEnd, _ = in.LastRecordLSN()
			}
			if err := in.Ingest(ctx, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.StartLSN == end {
				if err := in.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				return beforeEnd
			}
		}
		// Flush at the end of each "message", as the WAL receiver does.
		if err := in.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
