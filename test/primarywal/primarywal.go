// Package primarywal feeds a real PostgreSQL primary's WAL to Strata's
// proposer in tests and benchmarks: it streams it over physical replication
// into a walproposer.WALBuffer, reporting the proposer's commit LSN back as
// its flush position, the way the walproposer sidecar does.
package primarywal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walproposer"
	"strata.dev/test/pgharness"
)

// Stream streams a primary's WAL from start into buf over physical
// replication, reporting flushed() as its flush position, until ctx ends.
func Stream(ctx context.Context, c *pgharness.Cluster, slot string, start lsn.LSN, buf *walproposer.WALBuffer, flushed func() lsn.LSN) error {
	conn, err := pgconn.Connect(ctx, c.ReplicationConnString())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	err = pglogrepl.StartReplication(ctx, conn, slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication})
	if err != nil {
		return fmt.Errorf("START_REPLICATION at %v: %w", start, err)
	}
	status := func() error {
		f := flushed()
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: pglogrepl.LSN(buf.End()), WALFlushPosition: pglogrepl.LSN(f), WALApplyPosition: pglogrepl.LSN(f),
		})
	}
	next := time.Now()
	for {
		if time.Now().After(next) {
			if err := status(); err != nil {
				return err
			}
			next = time.Now().Add(200 * time.Millisecond)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return err
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				return fmt.Errorf("primary: %s", e.Message)
			}
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				return err
			}
			if lsn.LSN(x.WALStart) != buf.End() {
				return fmt.Errorf("primary sent WAL at %v, expected %v", lsn.LSN(x.WALStart), buf.End())
			}
			buf.Append(x.WALData)
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				return err
			}
			if k.ReplyRequested {
				next = time.Now()
			}
		}
	}
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
