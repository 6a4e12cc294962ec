package pq

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pgproto3/v2"

	"strata.dev/libs/jwtauth"
)

// Request codes that take the place of a protocol version in the first
// packet (PostgreSQL's pqcomm.h).
const (
	protocol30        = 3<<16 | 0
	codeCancelRequest = 1234<<16 | 5678
	codeSSLRequest    = 1234<<16 | 5679
	codeGSSENCRequest = 1234<<16 | 5680

	// maxNegotiations bounds SSLRequest/GSSENCRequest rounds: a real client
	// sends at most one of each before its StartupMessage.
	maxNegotiations = 2
)

// startup runs the handshake up to the first ReadyForQuery. ok is false when
// the client legitimately left before that (CancelRequest, Terminate); err
// is returned for everything else that ends the connection.
func (c *connection) startup(ctx context.Context) (ok bool, err error) {
	s := c.s
	tlsDone := false
	for n := 0; ; n++ {
		body, err := s.fr.readStartup()
		if err != nil {
			return false, err
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case codeSSLRequest, codeGSSENCRequest:
			if len(body) != 4 {
				return false, errProtocol("invalid length %d of SSL/GSS negotiation request", len(body)+4)
			}
			if n >= maxNegotiations {
				return false, errProtocol("too many SSL/GSS negotiation requests")
			}
			if code == codeSSLRequest && c.cfg.TLS != nil && !tlsDone {
				if err := c.upgradeTLS(ctx); err != nil {
					return false, err
				}
				tlsDone = true
				continue
			}
			if err := s.w.WriteByte('N'); err != nil {
				return false, fmt.Errorf("refuse encryption: %w", err)
			}
			if err := s.Flush(); err != nil {
				return false, err
			}
		case codeCancelRequest:
			// We have no cancel keys to match, so there is nothing to cancel.
			s.log.Debug().Msg("CancelRequest ignored")
			return false, nil
		case protocol30:
			if c.cfg.TLS != nil && !tlsDone {
				return false, Errorf(CodeInvalidAuthorization, "must connect with TLS")
			}
			params, err := parseStartupParams(body[4:])
			if err != nil {
				return false, err
			}
			s.params = params
			s.options = SplitOptions(params["options"])
			return c.authenticate()
		default:
			return false, Errorf(CodeFeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0",
				code>>16, code&0xffff)
		}
	}
}

// parseStartupParams decodes the name/value pairs of a StartupMessage, which
// end with an empty name. PostgreSQL's rules: every string NUL-terminated, and
// the terminator is the packet's last byte.
func parseStartupParams(b []byte) (map[string]string, error) {
	params := make(map[string]string)
	for {
		name, rest, ok := bytes.Cut(b, []byte{0})
		if !ok {
			return nil, errProtocol("invalid startup packet layout: expected terminator as last byte")
		}
		if len(name) == 0 {
			if len(rest) != 0 {
				return nil, errProtocol("invalid startup packet layout: expected terminator as last byte")
			}
			return params, nil
		}
		value, rest, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return nil, errProtocol("invalid startup packet layout: missing value for parameter %q", name)
		}
		params[string(name)] = string(value)
		b = rest
	}
}

// upgradeTLS answers an SSLRequest with 'S' and runs the TLS handshake;
// afterwards the session reads and writes through TLS.
func (c *connection) upgradeTLS(ctx context.Context) error {
	s := c.s
	if err := s.w.WriteByte('S'); err != nil {
		return fmt.Errorf("accept SSLRequest: %w", err)
	}
	if err := s.Flush(); err != nil {
		return err
	}
	// Bytes that arrived before the handshake were not encrypted, yet would
	// be read as if they had come through TLS (CVE-2021-23214).
	if s.fr.r.Buffered() > 0 {
		return errProtocol("received unencrypted data after SSL request")
	}
	raw := s.conn
	if c.cfg.ReadTimeout > 0 {
		if err := raw.SetDeadline(time.Now().Add(c.cfg.ReadTimeout)); err != nil {
			return fmt.Errorf("set handshake deadline: %w", err)
		}
	}
	tc := tls.Server(raw, c.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear handshake deadline: %w", err)
	}
	s.conn = tc
	s.fr.r.Reset(s.readSource(tc, c.cfg))
	s.w.Reset(tc)
	return nil
}

// authenticate runs the trust or JWT flow of SK §1.3 and ends with
// ReadyForQuery.
func (c *connection) authenticate() (ok bool, err error) {
	s := c.s
	if c.cfg.Auth == nil {
		for _, m := range []pgproto3.BackendMessage{
			&pgproto3.AuthenticationOk{},
			&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"},
			&pgproto3.ParameterStatus{Name: "integer_datetimes", Value: "on"},
			&pgproto3.ParameterStatus{Name: "server_version", Value: c.cfg.ServerVersion},
		} {
			if err := s.send(m); err != nil {
				return false, err
			}
		}
		return true, c.readyForQuery()
	}

	if err := s.send(&pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return false, err
	}
	if err := s.Flush(); err != nil {
		return false, err
	}
	typ, body, err := s.fr.next()
	if err != nil {
		return false, fmt.Errorf("read password: %w", noEOF(err))
	}
	switch typ {
	case 'p':
	case 'X':
		return false, nil
	default:
		return false, errProtocol("expected password message, got message type %q", typ)
	}
	// The token is NUL-terminated on the wire; tolerate clients that omit it.
	if n := len(body); n > 0 && body[n-1] == 0 {
		body = body[:n-1]
	}
	claims, err := c.cfg.Auth.Verify(string(body))
	if err == nil {
		err = jwtauth.CheckLogin(claims, c.cfg.TenantOnly)
	}
	if err != nil {
		// Neon reports every authentication failure as XX000 (SK §1.3).
		return false, Errorf(CodeInternalError, "authentication failed: %w", err)
	}
	s.claims = &claims
	s.log = s.log.With().Str("scope", string(claims.Scope)).Logger()
	if err := s.send(&pgproto3.AuthenticationOk{}); err != nil {
		return false, err
	}
	if err := s.send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"}); err != nil {
		return false, err
	}
	return true, c.readyForQuery()
}
