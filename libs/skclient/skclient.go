// Package skclient is the client side of a safekeeper's libpq port: a
// START_WAL_PUSH session for proposers (the walproposer, tests), and the
// plain commands (TIMELINE_STATUS, IDENTIFY_SYSTEM).
//
// Connections are made with pgconn and then taken over: the proposer writes
// CopyData frames itself (header and WAL straight from its buffer, no extra
// copy) and reads replies on another goroutine.
package skclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/rawconn"
)

// Config says how to reach a safekeeper for one timeline.
type Config struct {
	Addr    string // host:port of the libpq port
	TTID    id.TenantTimeline
	AppName string
	// Token is a JWT sent as the password when the safekeeper requires auth.
	Token          string
	ConnectTimeout time.Duration
}

// ServerError is an ErrorResponse from the safekeeper.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("safekeeper: %s (SQLSTATE %s)", e.Message, e.Code)
}

func (c Config) pgConfig() (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("safekeeper address %q: %w", c.Addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("safekeeper address %q: bad port", c.Addr)
	}
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = host, uint16(p)
	cfg.User, cfg.Database = "strata", "replication"
	cfg.Password = c.Token
	cfg.Fallbacks = nil
	cfg.DialFunc = rawconn.WrapDial(cfg.DialFunc)
	if c.ConnectTimeout > 0 {
		cfg.ConnectTimeout = c.ConnectTimeout
	} else {
		cfg.ConnectTimeout = 10 * time.Second
	}
	cfg.RuntimeParams = map[string]string{
		"options": fmt.Sprintf("-c tenant_id=%s timeline_id=%s", c.TTID.Tenant, c.TTID.Timeline),
	}
	if c.AppName != "" {
		cfg.RuntimeParams["application_name"] = c.AppName
	}
	return cfg, nil
}

// Connect opens a plain connection for simple commands.
func Connect(ctx context.Context, c Config) (*pgconn.PgConn, error) {
	cfg, err := c.pgConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to safekeeper %s: %w", c.Addr, err)
	}
	return conn, nil
}

// TimelineStatus runs TIMELINE_STATUS: the safekeeper's flush and commit
// LSNs, or exists=false if it does not have the timeline.
func TimelineStatus(ctx context.Context, c Config) (flush, commit lsn.LSN, exists bool, err error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return 0, 0, false, err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "TIMELINE_STATUS").ReadAll()
	if err != nil {
		return 0, 0, false, fmt.Errorf("TIMELINE_STATUS on %s: %w", c.Addr, err)
	}
	if len(res) != 1 || len(res[0].Rows) == 0 {
		return 0, 0, false, nil
	}
	row := res[0].Rows[0]
	if len(row) != 2 {
		return 0, 0, false, fmt.Errorf("TIMELINE_STATUS on %s: %d columns, want 2", c.Addr, len(row))
	}
	if flush, err = lsn.Parse(string(row[0])); err != nil {
		return 0, 0, false, err
	}
	if commit, err = lsn.Parse(string(row[1])); err != nil {
		return 0, 0, false, err
	}
	return flush, commit, true, nil
}

// PushConn is a START_WAL_PUSH session. One goroutine may send (Send,
// SendAppend, Flush) while another receives.
type PushConn struct {
	conn    net.Conn
	fe      *pgproto3.Frontend
	w       *bufio.Writer
	version pamsg.Version
	buf     []byte
	addr    string
}

// DialPush connects and starts a WAL push session speaking version v.
func DialPush(ctx context.Context, c Config, v pamsg.Version, allowCreation bool) (*PushConn, error) {
	cfg, err := c.pgConfig()
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to safekeeper %s: %w", c.Addr, err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	p := &PushConn{conn: hj.Conn, fe: hj.Frontend, w: bufio.NewWriterSize(hj.Conn, 256<<10), version: v, addr: c.Addr}
	q := fmt.Sprintf("START_WAL_PUSH (proto_version '%d', allow_timeline_creation '%t')", v, allowCreation)
	if dl, ok := ctx.Deadline(); ok {
		_ = p.conn.SetDeadline(dl)
		defer p.conn.SetDeadline(time.Time{})
	}
	p.fe.Send(&pgproto3.Query{String: q})
	if err := p.fe.Flush(); err != nil {
		p.Close()
		return nil, fmt.Errorf("send START_WAL_PUSH to %s: %w", c.Addr, err)
	}
	for {
		msg, err := p.fe.Receive()
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("START_WAL_PUSH on %s: %w", c.Addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return p, nil
		case *pgproto3.ErrorResponse:
			p.Close()
			return nil, &ServerError{Code: m.Code, Message: m.Message}
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			p.Close()
			return nil, fmt.Errorf("START_WAL_PUSH on %s: unexpected %T", c.Addr, msg)
		}
	}
}

// Addr is the safekeeper's address.
func (p *PushConn) Addr() string { return p.addr }

// Version is the protocol version of the session.
func (p *PushConn) Version() pamsg.Version { return p.version }

func (p *PushConn) writeFrame(parts ...[]byte) error {
	n := 4
	for _, b := range parts {
		n += len(b)
	}
	var hdr [5]byte
	hdr[0] = 'd'
	binary.BigEndian.PutUint32(hdr[1:], uint32(n))
	if _, err := p.w.Write(hdr[:]); err != nil {
		return err
	}
	for _, b := range parts {
		if _, err := p.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Send buffers one proposer message.
func (p *PushConn) Send(m pamsg.ProposerMessage) error {
	if a, ok := m.(*pamsg.AppendRequest); ok {
		return p.SendAppend(a)
	}
	var err error
	p.buf, err = pamsg.AppendProposerMessage(p.buf[:0], p.version, m)
	if err != nil {
		return err
	}
	return p.writeFrame(p.buf)
}

// SendAppend buffers an AppendRequest, writing its WAL without copying it
// into an intermediate message.
func (p *PushConn) SendAppend(a *pamsg.AppendRequest) error {
	if uint64(a.EndLSN-a.BeginLSN) != uint64(len(a.WAL)) || len(a.WAL) > pamsg.MaxWALPerAppend {
		return fmt.Errorf("AppendRequest [%v, %v) with %d bytes of WAL", a.BeginLSN, a.EndLSN, len(a.WAL))
	}
	p.buf = pamsg.AppendAppendRequestHeader(p.buf[:0], p.version, a)
	return p.writeFrame(p.buf, a.WAL)
}

// SendRaw buffers an arbitrary CopyData payload; tests of the server's
// parsers use it to send malformed messages.
func (p *PushConn) SendRaw(payload []byte) error { return p.writeFrame(payload) }

// Flush sends everything buffered.
func (p *PushConn) Flush() error { return p.w.Flush() }

// Receive returns the next acceptor message. An ErrorResponse becomes a
// *ServerError; the end of the stream is io.EOF.
func (p *PushConn) Receive() (pamsg.AcceptorMessage, error) {
	data, err := receiveCopyData(p.fe, p.addr)
	if err != nil {
		return nil, err
	}
	return pamsg.DecodeAcceptorMessage(p.version, data)
}

// receiveCopyData returns the payload of the next CopyData of a CopyBoth
// stream, valid until the next receive. An ErrorResponse becomes a
// *ServerError; the end of the stream is io.EOF; notices are skipped.
func receiveCopyData(fe *pgproto3.Frontend, addr string) ([]byte, error) {
	for {
		msg, err := fe.Receive()
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, io.EOF
			}
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			return m.Data, nil
		case *pgproto3.ErrorResponse:
			return nil, &ServerError{Code: m.Code, Message: m.Message}
		case *pgproto3.CopyDone:
			return nil, io.EOF
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return nil, fmt.Errorf("unexpected %T from safekeeper %s", msg, addr)
		}
	}
}

// SetWriteDeadline bounds the next writes (Send, SendAppend, Flush).
func (p *PushConn) SetWriteDeadline(t time.Time) error { return p.conn.SetWriteDeadline(t) }

// SetReadDeadline bounds the next Receive.
func (p *PushConn) SetReadDeadline(t time.Time) error { return p.conn.SetReadDeadline(t) }

// Close closes the connection.
func (p *PushConn) Close() error { return p.conn.Close() }
