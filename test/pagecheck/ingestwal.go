package pagecheck

import (
	"context"
	"os"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// ImportOptions are ClusterOptions for a cluster whose whole history is
// ingested: not started (ImportInitdb reads initdb's data directory
// first), every WAL segment kept for IngestWAL, no checkpoints but the
// test's.
func ImportOptions() []pgharness.Option {
	return append([]pgharness.Option{pgharness.NoStart(),
		pgharness.WithConf("wal_keep_size", "4GB"),
		pgharness.WithConf("max_wal_size", "4GB"),
		pgharness.WithConf("checkpoint_timeout", "1h"),
	}, ClusterOptions()...)
}

// ImportInitdb imports the data directory of c (created with
// ImportOptions, not yet started: what initdb left, shut down cleanly) into
// a new in-memory store, at its shutdown checkpoint record start (the
// location pg_controldata reports). IngestWAL from start then gives the
// store exactly the import plus every record the server writes.
func ImportInitdb(t *testing.T, ctx context.Context, c *pgharness.Cluster) (store *ingesttest.MemStore, start lsn.LSN) {
	t.Helper()
	start = walcheck.LatestCheckpoint(t, c)
	store = ingesttest.NewMemStore()
	began := time.Now()
	at, err := ingest.Import(ctx, store, os.DirFS(c.DataDir()))
	if err != nil {
		t.Fatal(err)
	}
	if at != start {
		t.Fatalf("imported at %s, pg_controldata says the checkpoint is at %s", at, start)
	}
	t.Logf("imported initdb's data directory at %s in %v", at, time.Since(began).Round(time.Millisecond))
	return store, start
}

// IngestWAL decodes the stopped cluster c's pg_wal from start (a record)
// through the record at end (e.g. its shutdown checkpoint) and ingests
// every record with in, flushing where the WAL receiver would: at the end
// of each segment and around the record at end. It returns the store's
// last record LSN just before the record at end. c must keep its WAL
// segments (wal_keep_size).
func IngestWAL(t *testing.T, ctx context.Context, c *pgharness.Cluster, in *ingest.Ingester, start, end lsn.LSN) lsn.LSN {
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
