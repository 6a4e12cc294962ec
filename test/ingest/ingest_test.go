// Package ingest_test runs a real PostgreSQL 15, ingests its WAL into an
// in-memory store and checks the result against the primary's own data
// directory with pagecheck: databases, relation forks and their sizes,
// every page that needs no PostgreSQL redo, the SLRUs, relation maps,
// prepared transactions and the checkpoint.
//
// The initial state: the cluster is created but not started, and its data
// directory — what initdb left, shut down cleanly — is imported with
// ingest.Import at the location of its shutdown checkpoint record (the
// value pg_controldata reports). WAL decoding starts at that record, so
// the store's history is exactly import + every record the server wrote.
package ingest_test

import (
	"context"
	"testing"
	"time"

	"strata.dev/pageserver/ingest"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
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
	c := pgharness.New(t, append(pagecheck.ImportOptions(), opts...)...)
	// The initial state, imported before the server first starts.
	store, start := pagecheck.ImportInitdb(t, ctx, c)
	pool := daemons.NewRedoPool(t, daemons.RedoOptions(t, 2))
	store.Reconstructor = pool // the workload copies a database whose pages need redo

	c.Start(t)
	began := time.Now()
	w := pagecheck.Workload(t, ctx, c)
	primary := pagecheck.SnapshotSQL(t, ctx, c)
	c.Stop(t) // a shutdown checkpoint; the data files are final
	end := walcheck.LatestCheckpoint(t, c)
	t.Logf("workload took %v; WAL from %s to the shutdown checkpoint at %s", time.Since(began).Round(time.Millisecond), start, end)

	began = time.Now()
	in, err := ingest.New(ctx, store, store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	beforeShutdown := pagecheck.IngestWAL(t, ctx, c, in, start, end)
	st := in.Stats()
	t.Logf("ingested %d records (%d values, %d commits, %d gap pages, %d VM clears skipped) in %v",
		st.Records, st.Entries, st.Commits, st.GapPagesZeroed, st.VMClearsSkipped, time.Since(began).Round(time.Millisecond))

	pagecheck.Compare(t, ctx, c, store, pool, primary, w, beforeShutdown)
}
