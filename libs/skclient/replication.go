package skclient

import (
	"context"
	"fmt"
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
	// The server may accept the connection and then never answer; ctx
	// bounds the wait for CopyBothResponse as it bounded the connect.
	if dl, ok := ctx.Deadline(); ok {
		_ = r.SetDeadline(dl)
	}
	interrupt := context.AfterFunc(ctx, func() { _ = r.SetDeadline(time.Unix(1, 0)) })
	err = r.start(q)
	if !interrupt() {
		err = fmt.Errorf("%s on %s: %w", q, c.Addr, ctx.Err())
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := r.SetDeadline(time.Time{}); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s on %s: %w", q, c.Addr, err)
	}
	return r, nil
}

func (r *ReplicationConn) start(q string) error {
	r.fe.Send(&pgproto3.Query{String: q})
	if err := r.fe.Flush(); err != nil {
		return fmt.Errorf("%s on %s: %w", q, r.addr, err)
	}
	for {
		msg, err := r.fe.Receive()
		if err != nil {
			return fmt.Errorf("%s on %s: %w", q, r.addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil
		case *pgproto3.ErrorResponse:
			return &ServerError{Code: m.Code, Message: m.Message}
		}
	}
}

// Recv returns the next XLogData (valid until the next call) or keepalive.
// Answering keepalives is the caller's business.
func (r *ReplicationConn) Recv() (replication.ServerMessage, error) {
	data, err := receiveCopyData(r.fe, r.addr)
	if err != nil {
		return nil, err
	}
	sm, err := replication.DecodeServerMessage(data)
	if err != nil {
		return nil, fmt.Errorf("safekeeper %s: %w", r.addr, err)
	}
	return sm, nil
}

// SendStatus reports the client's positions.
func (r *ReplicationConn) SendStatus(write, flush lsn.LSN) error {
	return r.SendStandbyStatus(replication.StandbyStatus{WriteLSN: write, FlushLSN: flush, ApplyLSN: flush, ReplyTime: pgtime.Now()})
}

// SendStandbyStatus sends an 'r' standby status update, the reply a vanilla
// PostgreSQL walsender understands.
func (r *ReplicationConn) SendStandbyStatus(s replication.StandbyStatus) error {
	r.buf = s.Append(r.buf[:0])
	r.fe.Send(&pgproto3.CopyData{Data: r.buf})
	return r.fe.Flush()
}

// SendPageserverFeedback sends a 'z' pageserver feedback message (SK §5.5).
// Only a safekeeper understands it: a PostgreSQL walsender disconnects.
func (r *ReplicationConn) SendPageserverFeedback(f *pamsg.PageserverFeedback) error {
	r.buf = replication.AppendPageserverFeedback(r.buf[:0], f)
	r.fe.Send(&pgproto3.CopyData{Data: r.buf})
	return r.fe.Flush()
}

// Buffered is the number of received bytes not yet returned by Recv. When it
// is 0 after a Recv, the messages that arrived together have all been read.
func (r *ReplicationConn) Buffered() int { return r.fe.ReadBufferLen() }

// SetDeadline bounds the next Recv.
func (r *ReplicationConn) SetDeadline(t time.Time) error { return r.pc.Conn().SetDeadline(t) }

// Close ends the stream.
func (r *ReplicationConn) Close() error { return r.pc.Conn().Close() }
