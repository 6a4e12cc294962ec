package pq

import (
	"bytes"
	"context"

	"github.com/jackc/pgproto3/v2"
)

// The extended query protocol is supported only as far as drivers need to
// run a command (SK §1.4): statements are remembered as text, parameters and
// result formats are ignored, and Execute runs the text like a simple query.

// maxPrepared bounds the statements and portals a client may keep, so that a
// client cannot grow our memory without limit.
const maxPrepared = 1000

type extendedState struct {
	statements map[string]string // statement name -> query text
	portals    map[string]string // portal name -> query text
	// skipping is set by an error and cleared by Sync.
	skipping bool
}

// extended handles Parse, Bind, Describe, Execute and Close. An error
// reported to the client starts skipping messages until Sync.
func (c *connection) extended(ctx context.Context, typ byte, body []byte) (done bool, err error) {
	if c.ext.statements == nil {
		c.ext.statements = make(map[string]string)
		c.ext.portals = make(map[string]string)
	}
	var reply pgproto3.BackendMessage
	var clientErr *Error
	switch typ {
	case 'P':
		var m pgproto3.Parse
		if err := m.Decode(body); err != nil {
			return true, errProtocol("malformed Parse message: %v", err)
		}
		if _, exists := c.ext.statements[m.Name]; !exists && len(c.ext.statements) >= maxPrepared {
			clientErr = Errorf(CodeFeatureNotSupported, "too many prepared statements (max %d)", maxPrepared)
			break
		}
		c.ext.statements[m.Name] = m.Query
		reply = &pgproto3.ParseComplete{}
	case 'B':
		// Only the two names matter; pgproto3's Bind decoder is not used
		// because it panics on some malformed parameter lengths.
		portal, stmt, ok := bindNames(body)
		if !ok {
			return true, errProtocol("malformed Bind message")
		}
		query, exists := c.ext.statements[stmt]
		if !exists {
			clientErr = Errorf(CodeInvalidSQLStatementName, "prepared statement %q does not exist", stmt)
			break
		}
		if _, exists := c.ext.portals[portal]; !exists && len(c.ext.portals) >= maxPrepared {
			clientErr = Errorf(CodeFeatureNotSupported, "too many portals (max %d)", maxPrepared)
			break
		}
		c.ext.portals[portal] = query
		reply = &pgproto3.BindComplete{}
	case 'D':
		var m pgproto3.Describe
		if err := m.Decode(body); err != nil {
			return true, errProtocol("malformed Describe message: %v", err)
		}
		// We cannot know a command's columns before running it, so say
		// "no rows"; a RowDescription then comes with Execute, which
		// drivers accept. Only statements also describe their (zero)
		// parameters, as PostgreSQL does.
		switch m.ObjectType {
		case 'S':
			if err := c.s.send(&pgproto3.ParameterDescription{}); err != nil {
				return true, err
			}
		case 'P':
		default:
			return true, errProtocol("invalid Describe object type %q", m.ObjectType)
		}
		reply = &pgproto3.NoData{}
	case 'E':
		var m pgproto3.Execute
		if err := m.Decode(body); err != nil {
			return true, errProtocol("malformed Execute message: %v", err)
		}
		query, exists := c.ext.portals[m.Portal]
		if !exists {
			clientErr = Errorf(CodeInvalidCursorName, "portal %q does not exist", m.Portal)
			break
		}
		failed, done, err := c.execute(ctx, query)
		if done || err != nil {
			return done, err
		}
		c.ext.skipping = failed
		return false, nil
	case 'C':
		var m pgproto3.Close
		if err := m.Decode(body); err != nil {
			return true, errProtocol("malformed Close message: %v", err)
		}
		switch m.ObjectType {
		case 'S':
			delete(c.ext.statements, m.Name)
		case 'P':
			delete(c.ext.portals, m.Name)
		default:
			return true, errProtocol("invalid Close object type %q", m.ObjectType)
		}
		reply = &pgproto3.CloseComplete{}
	}
	if clientErr != nil {
		c.ext.skipping = true
		return false, c.s.sendError(clientErr)
	}
	return false, c.s.send(reply)
}

// bindNames returns the portal and statement names at the start of a Bind
// message body.
func bindNames(body []byte) (portal, stmt string, ok bool) {
	p, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return "", "", false
	}
	s, _, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return "", "", false
	}
	return string(p), string(s), true
}
