package pgharness

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// queryTimeout bounds each SQL helper call so a stuck statement fails the
// test. The helpers do not use t.Context(): it is cancelled before Cleanup
// functions run, and those may well use Exec.
const queryTimeout = time.Minute

// ConnString is a keyword/value connection string for database db as the
// superuser "postgres" over TCP to 127.0.0.1, usable by pgx and libpq alike.
func (c *Cluster) ConnString(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable",
		c.port, superuser, quoteConnValue(db))
}

// ReplicationConnString is ConnString("postgres") for a physical replication
// connection (replication=true), e.g. for IDENTIFY_SYSTEM and
// START_REPLICATION through pgconn or pglogrepl.
func (c *Cluster) ReplicationConnString() string {
	return c.ConnString("postgres") + " replication=true"
}

// quoteConnValue quotes a connection string value when libpq's syntax needs it.
func quoteConnValue(v string) string {
	plain := v != ""
	for _, r := range v {
		if r == ' ' || r == '\'' || r == '\\' || r == '=' {
			plain = false
		}
	}
	if plain {
		return v
	}
	q := []byte{'\''}
	for i := 0; i < len(v); i++ {
		if v[i] == '\'' || v[i] == '\\' {
			q = append(q, '\\')
		}
		q = append(q, v[i])
	}
	return string(append(q, '\''))
}

// Connect opens a connection to the "postgres" database as the superuser.
// The caller closes it.
func (c *Cluster) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connect to cluster on port %d: %w", c.port, err)
	}
	return conn, nil
}

// MustConnect is Connect that fails the test on error and closes the
// connection when the test ends (before the cluster is stopped).
func (c *Cluster) MustConnect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := c.Connect(ctx)
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// Exec runs sql on a new connection to the "postgres" database and fails the
// test, quoting sql, on error. Each call is its own session, so SET and
// temporary tables do not carry over; use MustConnect for that.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	var tag pgconn.CommandTag
	c.withConn(t, sql, func(ctx context.Context, conn *pgx.Conn) error {
		var err error
		tag, err = conn.Exec(ctx, sql, args...)
		return err
	})
	return tag
}

// Row is the first row of a QueryRow result, held after its connection closed.
type Row struct {
	t      testing.TB
	sql    string
	fields []pgconn.FieldDescription
	values [][]byte
	types  *pgtype.Map
}

// QueryRow runs sql like Exec and returns its first row; it fails the test if
// there is none.
func (c *Cluster) QueryRow(t testing.TB, sql string, args ...any) Row {
	t.Helper()
	row := Row{t: t, sql: sql}
	c.withConn(t, sql, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return pgx.ErrNoRows
		}
		row.fields = rows.FieldDescriptions()
		for _, v := range rows.RawValues() {
			// RawValues are only valid until the next call on rows.
			if v != nil {
				v = append([]byte{}, v...)
			}
			row.values = append(row.values, v)
		}
		row.types = conn.TypeMap()
		rows.Close()
		return rows.Err()
	})
	return row
}

// Scan copies the row's columns into dest, as pgx.Row.Scan does, and fails
// the test on error.
func (r Row) Scan(dest ...any) {
	r.t.Helper()
	if len(dest) != len(r.values) {
		r.t.Fatalf("pgharness: %s: scan %d values into %d destinations", r.sql, len(r.values), len(dest))
	}
	for i, d := range dest {
		f := r.fields[i]
		if err := r.types.Scan(f.DataTypeOID, f.Format, r.values[i], d); err != nil {
			r.t.Fatalf("pgharness: %s: scan column %q: %v", r.sql, f.Name, err)
		}
	}
}

func (c *Cluster) withConn(t testing.TB, sql string, f func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := c.Connect(ctx)
	if err != nil {
		t.Fatalf("pgharness: %s: %v", sql, err)
	}
	defer conn.Close(context.Background())
	if err := f(ctx, conn); err != nil {
		t.Fatalf("pgharness: %s: %v", sql, err)
	}
}

// CurrentWALLSN returns pg_current_wal_lsn(): WAL written up to here.
func (c *Cluster) CurrentWALLSN(t testing.TB) lsn.LSN {
	t.Helper()
	var s string
	c.QueryRow(t, "SELECT pg_current_wal_lsn()::text").Scan(&s)
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatalf("pgharness: pg_current_wal_lsn: %v", err)
	}
	return l
}

// InsertWALLSN returns pg_current_wal_insert_lsn(): WAL inserted up to
// here, a record boundary when nothing else is writing.
func (c *Cluster) InsertWALLSN(t testing.TB) lsn.LSN {
	t.Helper()
	var s string
	c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s)
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatalf("pgharness: pg_current_wal_insert_lsn: %v", err)
	}
	return l
}

// RecordEndBound is a lower bound of the end of the last record inserted
// when nothing else is writing: the insert position (InsertWALLSN), moved
// back over a page header it may point past and over the alignment
// padding.
func (c *Cluster) RecordEndBound(t testing.TB) lsn.LSN {
	t.Helper()
	l := c.InsertWALLSN(t)
	switch {
	case l.SegmentOffset(c.WALSegmentSize()) == wal.LongPageHeaderSize:
		l -= wal.LongPageHeaderSize
	case l.PageOffset() == wal.ShortPageHeaderSize:
		l -= wal.ShortPageHeaderSize
	}
	return l - 7
}

// SystemID returns the cluster's system identifier from pg_control_system().
func (c *Cluster) SystemID(t testing.TB) uint64 {
	t.Helper()
	// Read as text: the column is a signed bigint holding an unsigned value.
	var s string
	c.QueryRow(t, "SELECT system_identifier::text FROM pg_control_system()").Scan(&s)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("pgharness: system_identifier %q: %v", s, err)
	}
	return uint64(id)
}
