package skclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/pgtime"
	"strata.dev/libs/replication"
)

// ReplicationConn is a START_REPLICATION stream from a safekeeper.
type ReplicationConn struct {
	pc   *pgconn.PgConn
	fe   *pgproto3.Frontend
	addr string
	buf  []byte
}

// StartReplication streams WAL from start. With term set it is the recovery
// mode of SK §5.1: WAL up to the safekeeper's flush LSN, served only while
// the safekeeper is still in that term; without, committed WAL only.
func StartReplication(ctx context.Context, c Config, start lsn.LSN, term *pamsg.Term) (*ReplicationConn, error) {
	cfg, err := c.pgConfig()
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "true"
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to safekeeper %s: %w", c.Addr, err)
	}
	q := fmt.Sprintf("START_REPLICATION PHYSICAL %s", start)
	if term != nil {
		q += fmt.Sprintf(" (term='%d')", *term)
	}
	r := &ReplicationConn{pc: pc, fe: pc.Frontend(), addr: c.Addr}
	r.fe.Send(&pgproto3.Query{String: q})
	if err := r.fe.Flush(); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s on %s: %w", q, c.Addr, err)
	}
	for {
		msg, err := r.fe.Receive()
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("%s on %s: %w", q, c.Addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return r, nil
		case *pgproto3.ErrorResponse:
			r.Close()
			return nil, &ServerError{Code: m.Code, Message: m.Message}
		}
	}
}

// Recv returns the next XLogData (valid until the next call) or keepalive.
// A keepalive that asks for a reply gets one right away.
func (r *ReplicationConn) Recv() (replication.ServerMessage, error) {
	for {
		msg, err := r.fe.Receive()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, io.EOF
			}
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			sm, err := replication.DecodeServerMessage(m.Data)
			if err != nil {
				return nil, fmt.Errorf("safekeeper %s: %w", r.addr, err)
			}
			return sm, nil
		case *pgproto3.ErrorResponse:
			return nil, &ServerError{Code: m.Code, Message: m.Message}
		case *pgproto3.CopyDone:
			return nil, io.EOF
		}
	}
}

// SendStatus reports the client's positions.
func (r *ReplicationConn) SendStatus(write, flush lsn.LSN) error {
	r.buf = replication.StandbyStatus{WriteLSN: write, FlushLSN: flush, ApplyLSN: flush, ReplyTime: pgtime.Now()}.Append(r.buf[:0])
	r.fe.Send(&pgproto3.CopyData{Data: r.buf})
	return r.fe.Flush()
}

// SetDeadline bounds the next Recv.
func (r *ReplicationConn) SetDeadline(t time.Time) error { return r.pc.Conn().SetDeadline(t) }

// Close ends the stream.
func (r *ReplicationConn) Close() error { return r.pc.Conn().Close() }
