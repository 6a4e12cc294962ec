// Package basebackup_test starts unmodified PostgreSQL 15 from basebackups
// written by pageserver/basebackup out of a store that ingested a real
// primary's WAL, and checks that it starts without recovery at the backup
// LSN, holds the primary's data, passes amcheck and keeps writing WAL.
//
// The store is built as in test/ingest: initdb's directory imported at its
// shutdown checkpoint, then every WAL record of a workload ingested.
package basebackup_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/basebackup"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/redo"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// point is a backup LSN and what the primary looked like there.
type point struct {
	name     string
	at, prev lsn.LSN // prev: start of the record ending at at, 0 if unknown
	dump     string
	prepared int // prepared transactions open at that LSN
}

func TestVanillaStartFromBasebackup(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []pgharness.Option
	}{
		{"plain", nil},
		// Pages rebuilt by redo and FPIs carry stale checksums; the
		// basebackup recomputes them.
		{"checksums", []pgharness.Option{pgharness.WithDataChecksums()}},
	} {
		t.Run(tc.name, func(t *testing.T) { testVanillaStart(t, tc.opts...) })
	}
}

func testVanillaStart(t *testing.T, extra ...pgharness.Option) {
	ctx := context.Background()
	opts := append(pagecheck.ImportOptions(), extra...)
	c := pgharness.New(t, opts...)
	store, start := pagecheck.ImportInitdb(t, ctx, c)
	pool := daemons.NewRedoPool(t, daemons.RedoOptions(t, 2))
	store.Reconstructor = pool // the workload copies a database whose pages need redo

	c.Start(t)
	pagecheck.Workload(t, ctx, c)
	// An earlier LSN: nothing writes between reading the insert position
	// (a record boundary) and the dump, and the dump writes no WAL.
	mid := point{name: "mid", at: c.InsertWALLSN(t), dump: c.DumpAll(t), prepared: 1}
	for _, sql := range []string{
		"CREATE TABLE after_mid AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g",
		"CREATE INDEX after_mid_h ON after_mid (h)",
		"UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid % 7 = 0",
	} {
		c.Exec(t, sql)
	}
	final := point{name: "final", dump: c.DumpAll(t), prepared: 1}
	c.Stop(t)
	end := walcheck.LatestCheckpoint(t, c)

	in, err := ingest.New(ctx, store, store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pagecheck.IngestWAL(t, ctx, c, in, start, end)
	final.at, final.prev = store.LastRecordLSN()
	t.Logf("WAL from %s to %s ingested; backups at %s (mid) and %s (final)", start, end, mid.at, final.at)

	for _, p := range []point{final, mid} {
		t.Run(p.name, func(t *testing.T) { checkBackup(t, ctx, store, pool, p, opts) })
	}
}

// checkBackup writes a backup at p, starts a server on it and checks it.
func checkBackup(t *testing.T, ctx context.Context, store *ingesttest.MemStore, pool *redo.Pool, p point, opts []pgharness.Option) {
	var tarball bytes.Buffer
	err := basebackup.Write(ctx, &tarball, store, pool, p.at, basebackup.Options{
		PrevRecord:   p.prev,
		PostgresConf: "include 'strata.conf'\n", // the harness's settings
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("basebackup at %s: %d MiB", p.at, tarball.Len()>>20)

	r := pgharness.New(t, opts...) // not started: its data directory is replaced
	r.ReplaceDataDir(t, &tarball)

	want := wal.SkipPageHeader(p.at, r.WALSegmentSize()) // the checkpoint record's start
	if got := walcheck.LatestCheckpoint(t, r); got != want {
		t.Errorf("pg_controldata: latest checkpoint %s, want %s", got, want)
	}

	r.Start(t)
	log, err := os.ReadFile(r.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"redo starts", "not properly shut down", "automatic recovery", "invalid record"} {
		if strings.Contains(string(log), bad) {
			t.Errorf("server log says %q:\n%s", bad, log)
		}
	}
	if !strings.Contains(string(log), "database system was shut down at") {
		t.Errorf("server log does not report a clean shutdown:\n%s", log)
	}

	if got := r.DumpAll(t); got != p.dump {
		t.Errorf("pg_dumpall differs from the primary's at %s:\n%s", p.at, pgharness.DumpDiff(p.dump, got))
	}
	out, err := r.Command("pg_amcheck", "--all", "--install-missing", "--heapallindexed").CombinedOutput()
	if err != nil {
		t.Errorf("pg_amcheck: %v\n%s", err, out)
	}

	// WAL continues right after our checkpoint record.
	var prepared int
	r.QueryRow(t, "SELECT count(*) FROM pg_prepared_xacts").Scan(&prepared)
	if prepared != p.prepared {
		t.Errorf("%d prepared transactions, want %d", prepared, p.prepared)
	}
	r.Exec(t, "COMMIT PREPARED 'p2'")
	r.Exec(t, "CREATE TABLE after_restore AS SELECT generate_series(1, 1000) g")
	r.Restart(t)
	var n, t1 int
	r.QueryRow(t, "SELECT count(*) FROM after_restore").Scan(&n)
	r.QueryRow(t, "SELECT count(*) FROM t1 WHERE id = 100006").Scan(&t1)
	if n != 1000 || t1 != 1 {
		t.Errorf("after restart: %d rows written after the restore (want 1000), committed prepared row found %d times (want 1)", n, t1)
	}
	if l := r.CurrentWALLSN(t); l <= want {
		t.Errorf("WAL position %s did not move past the checkpoint at %s", l, want)
	}
	// pg_waldump decodes our record and the server's first one after it.
	walcheck.Waldump(t, r, r.WALDir(), want, want+240)
}
