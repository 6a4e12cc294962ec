package pageservice

// A pagestream client, for tests and load tools: one connection, one
// request at a time (Do), or pipelined (Send then Receive, answers in
// request order).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// ServerError is an ErrorResponse: the server ended the stream.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("pageserver: %s (SQLSTATE %s)", e.Message, e.Code)
}

// RequestError is a tag-103 answer: the request failed, the stream goes on.
type RequestError struct{ Message string }

func (e *RequestError) Error() string { return "pageserver: " + e.Message }

// Client is a pagestream session on one timeline. Not safe for concurrent
// use.
type Client struct {
	pc      *pgconn.PgConn
	fe      *pgproto3.Frontend
	version Version
	addr    string
	buf     []byte
	nextID  uint64
}

// Dial connects to a pageserver's libpq port and starts a pagestream of
// version v on a timeline.
func Dial(ctx context.Context, addr string, ttid id.TenantTimeline, v Version) (*Client, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pageserver address %q: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("pageserver address %q: bad port", addr)
	}
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = host, uint16(p), "strata", "postgres"
	cfg.Fallbacks = nil
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to pageserver %s: %w", addr, err)
	}
	c := &Client{pc: pc, fe: pc.Frontend(), version: v, addr: addr}
	q := fmt.Sprintf("pagestream_v%d %s %s", v, ttid.Tenant, ttid.Timeline)
	if dl, ok := ctx.Deadline(); ok {
		_ = pc.Conn().SetDeadline(dl)
	}
	if err := c.start(q); err != nil {
		c.Close()
		return nil, err
	}
	_ = pc.Conn().SetDeadline(time.Time{})
	return c, nil
}

func (c *Client) start(q string) error {
	c.fe.Send(&pgproto3.Query{String: q})
	if err := c.fe.Flush(); err != nil {
		return fmt.Errorf("%s on %s: %w", q, c.addr, err)
	}
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return fmt.Errorf("%s on %s: %w", q, c.addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil
		case *pgproto3.ErrorResponse:
			return &ServerError{Code: m.Code, Message: m.Message}
		}
	}
}

// Close ends the session.
func (c *Client) Close() error { return c.pc.Conn().Close() }

// SetDeadline bounds the next sends and receives.
func (c *Client) SetDeadline(t time.Time) error { return c.pc.Conn().SetDeadline(t) }

// SendRaw sends b as one CopyData, whatever it holds (tests send garbage).
func (c *Client) SendRaw(b []byte) error {
	c.fe.Send(&pgproto3.CopyData{Data: b})
	return c.fe.Flush()
}

// Send sends a request without waiting for its answer; a v3 request gets
// the next request id.
func (c *Client) Send(r Request) error {
	c.nextID++
	r.ReqID = c.nextID
	c.buf = AppendRequest(c.buf[:0], c.version, r)
	return c.SendRaw(c.buf)
}

// Receive reads the next answer. Its Page and Segment are valid until the
// next Receive. A tag-103 answer is returned as a Response with Error set,
// not as an error; an ErrorResponse is a *ServerError.
func (c *Client) Receive() (Response, error) {
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return Response{}, fmt.Errorf("pageserver %s: %w", c.addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			resp, err := DecodeResponse(c.version, m.Data)
			if err != nil {
				return resp, fmt.Errorf("pageserver %s: %w", c.addr, err)
			}
			return resp, nil
		case *pgproto3.ErrorResponse:
			return Response{}, &ServerError{Code: m.Code, Message: m.Message}
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return Response{}, fmt.Errorf("pageserver %s: unexpected %T during pagestream", c.addr, msg)
		}
	}
}

// Do sends a request and waits for its answer. A tag-103 answer is a
// *RequestError; an answer of the wrong kind, or (v3) for another
// request, is an error too.
func (c *Client) Do(r Request) (Response, error) {
	if err := c.Send(r); err != nil {
		return Response{}, fmt.Errorf("pageserver %s: send %s: %w", c.addr, r.Tag, err)
	}
	resp, err := c.Receive()
	if err != nil {
		return resp, err
	}
	if resp.Tag == RespError {
		return resp, &RequestError{Message: resp.Error}
	}
	if resp.Tag != ResponseTag(r.Tag) {
		return resp, fmt.Errorf("pageserver %s: answer tag %d to a %s request", c.addr, resp.Tag, r.Tag)
	}
	if c.version == V3 && resp.Request.ReqID != c.nextID {
		return resp, fmt.Errorf("pageserver %s: answer to request %d, want %d", c.addr, resp.Request.ReqID, c.nextID)
	}
	return resp, nil
}

func latest(at lsn.LSN) Header {
	if at == lsn.Invalid {
		return Header{RequestLSN: lsn.Max}
	}
	return Header{RequestLSN: at, NotModifiedSince: at}
}

// Exists reports whether a relation fork exists at at (lsn.Invalid: the
// latest ingested LSN, as a primary asks).
func (c *Client) Exists(rel key.Rel, at lsn.LSN) (bool, error) {
	resp, err := c.Do(Request{Tag: TagExists, Header: latest(at), Rel: rel})
	return resp.Exists, err
}

// Nblocks is a relation fork's size in blocks at at.
func (c *Client) Nblocks(rel key.Rel, at lsn.LSN) (uint32, error) {
	resp, err := c.Do(Request{Tag: TagNblocks, Header: latest(at), Rel: rel})
	return resp.NBlocks, err
}

// GetPage reads one block at at; the page is a copy.
func (c *Client) GetPage(rel key.Rel, blk uint32, at lsn.LSN) ([]byte, error) {
	resp, err := c.Do(Request{Tag: TagGetPage, Header: latest(at), Rel: rel, Block: blk})
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), resp.Page...), nil
}

// DBSize is the size in bytes of a database in the default tablespace.
func (c *Client) DBSize(db uint32, at lsn.LSN) (int64, error) {
	resp, err := c.Do(Request{Tag: TagDBSize, Header: latest(at), DB: db})
	return resp.DBSize, err
}

// SlruSegment reads a whole SLRU segment; the bytes are a copy.
func (c *Client) SlruSegment(kind key.SlruKind, segno uint32, at lsn.LSN) ([]byte, error) {
	resp, err := c.Do(Request{Tag: TagGetSlruSegment, Header: latest(at), SlruKind: kind, Segno: segno})
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), resp.Segment...), nil
}

// IsRequestError reports whether err is a tag-103 answer.
func IsRequestError(err error) bool {
	var re *RequestError
	return errors.As(err, &re)
}
