package pagecheck

import (
	"context"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

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
