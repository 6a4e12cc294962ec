// Package pq is the server side of the PostgreSQL wire protocol (version
// 3.0) as Strata's daemons speak it on their libpq ports (SK §1.1–§1.4): the
// startup handshake with trust or JWT authentication, simple queries, the
// small subset of the extended protocol that drivers need, and COPY BOTH
// streams for WAL push and replication.
//
// What a command means is up to a Handler; this package only moves messages.
// Message bodies are encoded and decoded with github.com/jackc/pgproto3/v2,
// while framing is our own (see frameReader) so that large WAL streams are
// read without allocating and hostile lengths are refused early.
package pq

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgproto3/v2"
	"github.com/rs/zerolog"

	"strata.dev/libs/jwtauth"
	"strata.dev/libs/rawconn"
)

// Defaults for Config fields left zero.
const (
	DefaultServerVersion = "14.1" // what Neon's safekeeper reports
	DefaultReadTimeout   = 10 * time.Minute

	bufSize = 64 << 10
)

// Config is how one listening port behaves.
type Config struct {
	// Auth verifies the JWT clients send as their password. Nil trusts
	// every client.
	Auth *jwtauth.Verifier
	// TenantOnly accepts only tenant-scoped tokens: the port computes are
	// pointed at (--listen-pg-tenant-only). Meaningless without Auth.
	TenantOnly bool
	// TLS, when set, answers SSLRequest with 'S' and refuses clients that do
	// not upgrade (SK §1.1). Nil answers 'N'. "Direct TLS" (a handshake
	// without SSLRequest, PostgreSQL 17+) is not supported.
	TLS *tls.Config
	// ServerVersion is reported in ParameterStatus on trusted connections;
	// empty means DefaultServerVersion.
	ServerVersion string
	// ReadTimeout drops a connection from which nothing arrived for this
	// long. Zero means DefaultReadTimeout; negative disables the timeout.
	ReadTimeout time.Duration
	// MaxMessageLen caps the length of one frontend message. Zero means
	// DefaultMaxMessageLen.
	MaxMessageLen int
	// Log receives connection-level events. The zero Logger discards them.
	Log zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.ServerVersion == "" {
		c.ServerVersion = DefaultServerVersion
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.MaxMessageLen <= 0 || c.MaxMessageLen > DefaultMaxMessageLen {
		c.MaxMessageLen = DefaultMaxMessageLen
	}
	return c
}

// Handler executes the commands a client sends.
type Handler interface {
	// HandleQuery runs one command and writes its results to s (row
	// description, data rows, CommandComplete, or a COPY stream). A returned
	// error is sent as an ErrorResponse: an *Error anywhere in its chain sets
	// the SQLSTATE, otherwise it is XX000. ctx is cancelled when the server
	// shuts down.
	//
	// After s.StartCopyBoth the connection is closed once HandleQuery returns.
	HandleQuery(ctx context.Context, s *Session, query string) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Session, query string) error

// HandleQuery calls f.
func (f HandlerFunc) HandleQuery(ctx context.Context, s *Session, query string) error {
	return f(ctx, s, query)
}

// errClientGone ends a connection without complaint.
var errClientGone = errors.New("client closed the connection")

// ServeConn speaks the protocol on conn until the client leaves, a COPY
// stream ends, a fatal error occurs or ctx is cancelled, then closes conn.
// connID identifies the connection in logs and to the handler.
//
// It returns nil when the client ended the session (Terminate or EOF between
// messages) or a COPY handler returned nil. Errors reported to the client
// without ending the session are not returned.
func ServeConn(ctx context.Context, conn net.Conn, connID uint32, cfg Config, h Handler) error {
	cfg = cfg.withDefaults()
	defer conn.Close()
	// Closing the connection is the one way to interrupt a blocked read or
	// write, and so to make the handler's I/O fail promptly on shutdown.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if tc, ok := conn.(interface{ SetNoDelay(bool) error }); ok {
		// Go enables it by default; say it anyway, because replies to
		// AppendRequests must not wait for Nagle.
		if err := tc.SetNoDelay(true); err != nil {
			return fmt.Errorf("set TCP_NODELAY: %w", err)
		}
	}

	// A new variable: the AfterFunc above may read conn at any time.
	raw := rawconn.Wrap(conn)
	c := &connection{cfg: cfg, h: h, s: newSession(raw, connID, cfg)}
	err := c.serve(ctx)
	if ctx.Err() != nil {
		return fmt.Errorf("connection %d: %w", connID, ctx.Err())
	}
	if errors.Is(err, errClientGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("connection %d: %w", connID, err)
	}
	return nil
}

func newSession(conn net.Conn, connID uint32, cfg Config) *Session {
	s := &Session{
		connID: connID,
		remote: conn.RemoteAddr(),
		conn:   conn,
		w:      bufio.NewWriterSize(conn, bufSize),
	}
	s.fr = frameReader{r: bufio.NewReaderSize(s.readSource(conn, cfg), bufSize), maxLen: cfg.MaxMessageLen}
	peer := "unknown"
	if s.remote != nil {
		peer = s.remote.String()
	}
	s.log = cfg.Log.With().Uint32("conn_id", connID).Str("peer", peer).Logger()
	return s
}

func (s *Session) readSource(conn net.Conn, cfg Config) io.Reader {
	s.rc = &idleTimeoutConn{Conn: conn, timeout: cfg.ReadTimeout, stopped: &s.readStopped}
	return s.rc
}

// connection is the state of the protocol engine for one client; the Session
// is the part of it handlers see.
type connection struct {
	cfg Config
	h   Handler
	s   *Session

	ext extendedState
	// final is the error that ended the session after it was already
	// reported to the client (a failed COPY, a FATAL handler error).
	final error
}

func (c *connection) serve(ctx context.Context) error {
	ok, err := c.startup(ctx)
	if err != nil || !ok {
		return c.fail(err)
	}
	for {
		typ, body, err := c.s.fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errClientGone
			}
			return c.fail(err)
		}
		done, err := c.dispatch(ctx, typ, body)
		if err != nil {
			return c.fail(err)
		}
		if done {
			return c.final
		}
	}
}

// fail reports a connection-ending error to the client when it is one the
// client should hear about (protocol violations, failed authentication), and
// passes it on.
func (c *connection) fail(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		// Best effort: the client may be the reason we are failing.
		if werr := c.s.sendError(err); werr == nil {
			_ = c.s.Flush()
		}
	}
	return err
}

// dispatch handles one message after startup. done means the session is over.
func (c *connection) dispatch(ctx context.Context, typ byte, body []byte) (done bool, err error) {
	if c.ext.skipping && typ != 'S' && typ != 'X' {
		// After an error in an extended-protocol batch everything up to the
		// next Sync is discarded, as PostgreSQL does.
		return false, nil
	}
	switch typ {
	case 'Q':
		query, err := cstring(body, "Query")
		if err != nil {
			return true, err
		}
		if _, done, err := c.execute(ctx, query); done || err != nil {
			return done, err
		}
		return false, c.readyForQuery()
	case 'P', 'B', 'D', 'E', 'C':
		return c.extended(ctx, typ, body)
	case 'S':
		c.ext.skipping = false
		return false, c.readyForQuery()
	case 'H':
		return false, c.s.Flush()
	case 'X':
		return true, nil
	case 'F':
		if err := c.s.sendError(Errorf(CodeFeatureNotSupported, "function call protocol is not supported")); err != nil {
			return true, err
		}
		return false, c.readyForQuery()
	case 'd', 'c', 'f':
		// PostgreSQL ignores COPY messages outside COPY: they may be left
		// over from a COPY that the server ended with an error.
		return false, nil
	default: // 'p'
		return true, errProtocol("unexpected message type %q after authentication", typ)
	}
}

func (c *connection) readyForQuery() error {
	if err := c.s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'}); err != nil {
		return err
	}
	return c.s.Flush()
}

// execute runs one query, from Query or Execute. failed means the handler's
// error was reported to the client. done means the session is over (after
// COPY, or a FATAL error; c.final then holds the handler's error). The
// returned error is an I/O failure.
func (c *connection) execute(ctx context.Context, query string) (failed, done bool, err error) {
	switch {
	case isSetDatestyle(query):
		// psycopg2 sends this on connect; pretend it worked (SK §1.4).
		return false, false, c.s.WriteCommandComplete("SELECT 1")
	case isEmptyQuery(query):
		// Drivers ping with empty or comment-only queries; PostgreSQL
		// answers those with EmptyQueryResponse.
		return false, false, c.s.send(&pgproto3.EmptyQueryResponse{})
	}

	herr := c.h.HandleQuery(ctx, c.s, query)
	if c.s.copying.Load() {
		// COPY is never exited cleanly: whatever happened, the connection
		// ends here, with the handler's error if there was one.
		if herr != nil {
			c.s.log.Debug().Err(herr).Msg("COPY ended with error")
			c.final = herr
			if err := c.s.sendError(herr); err == nil {
				_ = c.s.Flush()
			}
			return true, true, nil
		}
		return false, true, c.s.Flush()
	}
	if herr == nil {
		return false, false, nil
	}
	c.s.log.Debug().Err(herr).Str("query", truncate(query, 200)).Msg("query failed")
	if err := c.s.sendError(herr); err != nil {
		return true, true, err
	}
	var pe *Error
	if errors.As(herr, &pe) && pe.Severity == SeverityFatal {
		c.final = herr
		return true, true, c.s.Flush()
	}
	return true, false, nil
}

// sendError buffers an ErrorResponse for err.
func (s *Session) sendError(err error) error {
	sev, code, msg := errorResponseFields(err)
	return s.send(&pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                code,
		Message:             msg,
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// isSetDatestyle reports whether query starts with "set datestyle to ", in
// any case, without allocating a lower-cased copy.
func isSetDatestyle(query string) bool {
	const prefix = "set datestyle to "
	if len(query) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := query[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// isEmptyQuery reports whether query holds nothing but whitespace,
// semicolons and "--" comments.
func isEmptyQuery(query string) bool {
	for i := 0; i < len(query); i++ {
		switch c := query[i]; {
		case isSpace(c) || c == ';':
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			for i < len(query) && query[i] != '\n' {
				i++
			}
		default:
			return false
		}
	}
	return true
}
