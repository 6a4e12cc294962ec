// Package primarywal feeds a real PostgreSQL primary's WAL to Strata's
// proposer in tests and benchmarks, through the walproposer's own primary
// client (libs/walproposer/primary).
package primarywal

import (
	"context"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walproposer"
	"strata.dev/libs/walproposer/primary"
	"strata.dev/test/pgharness"
)

// Stream streams a primary's WAL into buf (from buf.End()) through slot,
// the way the walproposer daemon does, until ctx ends.
func Stream(ctx context.Context, c *pgharness.Cluster, slot string, buf *walproposer.WALBuffer, fb primary.Feedback) error {
	src, err := primary.Connect(ctx, primary.Config{ConnString: c.ConnString("postgres"), Slot: slot, StatusInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	defer src.Close()
	return src.Stream(ctx, buf, fb)
}

// NextSegmentStart switches the primary to a new WAL segment and returns its
// start: a clean record boundary where a timeline can begin.
func NextSegmentStart(t testing.TB, c *pgharness.Cluster) lsn.LSN {
	t.Helper()
	var s string
	c.QueryRow(t, "SELECT pg_switch_wal()::text").Scan(&s)
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	seg := c.WALSegmentSize()
	if l.SegmentOffset(seg) != 0 {
		l = l.SegmentStart(seg) + lsn.LSN(seg)
	}
	return l
}
