// Package walredo_test rebuilds pages of every index access method from
// real PostgreSQL 15 WAL and compares them with the primary's files: the
// flow of test/ingest (import initdb's data directory, run a workload,
// stop with a shutdown checkpoint, ingest pg_wal into an in-memory store)
// with pagecheck.AMWorkload, then pagecheck.ComparePages on a sample of
// every relation fork the workload created.
//
// Pages whose records only PostgreSQL can apply are rebuilt by the
// Reconstructor the test is given; neonredo's counts them as skipped.
package walredo_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/key"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// perRel is how many pages of each relation fork are compared.
const perRel = 20

// TestWALRedo runs the workload and ingests its WAL once for both checks:
// pages of every access method rebuilt equal to the primary's, and the
// pool put through what a pageserver meets.
func TestWALRedo(t *testing.T) {
	f := newFixture(t)
	t.Run("RebuildEveryAccessMethod", func(t *testing.T) { testRebuildEveryAccessMethod(t, f) })
	t.Run("Pool", func(t *testing.T) { testRedoPool(t, f) })
}

func testRebuildEveryAccessMethod(t *testing.T, f fixture) {
	// The page rebuilder under test: the WAL-redo pool, two processes.
	rebuild := daemons.NewRedoPool(t, daemons.RedoOptions(t, 2))
	ctx := context.Background()
	store, rels, c := f.store, f.rels, f.cluster

	began := time.Now()
	stats := pagecheck.ComparePages(t, ctx, c.DataDir(), store, rebuild, rels, perRel)
	var lines []string
	for _, label := range slices.Sorted(maps.Keys(stats)) {
		s := stats[label]
		lines = append(lines, fmt.Sprintf("%-8s %3d images, %3d rebuilt with records, %3d skipped (need PostgreSQL redo)", label, s.Images, s.Rebuilt, s.Skipped))
	}
	t.Logf("pages compared in %v:\n%s", time.Since(began).Round(time.Millisecond), strings.Join(lines, "\n"))

	// A workload that stops writing some access method's WAL fails here.
	for _, label := range pagecheck.AMLabels() {
		if s := stats[label]; s.Images+s.Rebuilt+s.Skipped == 0 {
			t.Errorf("no %s pages read", label)
		}
	}
	for label := range stats {
		if !slices.Contains(pagecheck.AMLabels(), label) {
			t.Errorf("pages labelled %q, not one of %v", label, pagecheck.AMLabels())
		}
	}
}

// fixture is a stopped primary that ran pagecheck.AMWorkload, and its WAL
// ingested into an in-memory store.
type fixture struct {
	cluster *pgharness.Cluster
	store   *ingesttest.MemStore
	rels    map[key.Rel]string
}

// newFixture follows test/ingest: the initial state is initdb's data
// directory imported before the server first starts, then every record
// the server writes through its shutdown checkpoint is ingested.
func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	c := pgharness.New(t, pagecheck.ImportOptions()...)
	store, start := pagecheck.ImportInitdb(t, ctx, c)

	c.Start(t)
	began := time.Now()
	pagecheck.AMWorkload(t, ctx, c)
	rels := pagecheck.AMRels(t, ctx, c)
	c.Stop(t) // a shutdown checkpoint; the data files are final
	end := walcheck.LatestCheckpoint(t, c)
	t.Logf("workload took %v; %d relation forks; WAL from %s to %s", time.Since(began).Round(time.Millisecond), len(rels), start, end)

	in, err := ingest.New(ctx, store, store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pagecheck.IngestWAL(t, ctx, c, in, start, end)
	return fixture{cluster: c, store: store, rels: rels}
}
