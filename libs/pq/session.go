package pq

import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jackc/pgproto3/v2"
	"github.com/rs/zerolog"

	"strata.dev/libs/jwtauth"
)

// Session is one client connection as a Handler sees it: who the client is
// (startup parameters, verified token) and the means to answer it.
//
// # Concurrency
//
// A Session has a read side (ReadCopyData) and a write side (every Write*
// method, StartCopyBoth and Flush). At most one goroutine may use each side at
// a time, but the two sides may be used concurrently: during COPY one
// goroutine can read the client's messages while another writes replies. The
// sides share no unsynchronised state. The accessors (Params, Claims, ...)
// and InterruptRead are safe from any goroutine.
//
// A Handler must make sure no goroutine of its own still uses the Session
// when HandleQuery returns, because Serve then writes to the connection
// (ReadyForQuery, ErrorResponse) and reads the next message. A handler that
// ends a COPY stream itself calls InterruptRead to unblock its reader.
//
// # Buffering
//
// Writes go to a buffer of 64 KiB (larger CopyData payloads pass straight
// through). A handler streaming COPY calls Flush when the client must see what
// was written; otherwise Serve flushes whenever the client waits for an
// answer (ReadyForQuery, a Flush message, the end of the connection).
type Session struct {
	connID  uint32
	remote  net.Addr
	params  map[string]string
	options []string
	claims  *jwtauth.Claims
	log     zerolog.Logger

	conn net.Conn

	// Read side.
	fr frameReader
	rc *idleTimeoutConn // what fr reads from

	// Write side.
	w    *bufio.Writer
	wbuf []byte  // scratch for encoding messages
	hdr  [5]byte // scratch for CopyData headers

	// copying is set by StartCopyBoth (write side) and checked by
	// ReadCopyData (read side); atomic because the two may be different
	// goroutines.
	copying atomic.Bool
	// readStopped is set by InterruptRead, from any goroutine.
	readStopped atomic.Bool
}

// ConnID is the number the server gave this connection, for logs.
func (s *Session) ConnID() uint32 { return s.connID }

// RemoteAddr is the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.remote }

// Params returns the startup parameters (user, database, options, ...).
// The map belongs to the Session and must not be modified.
func (s *Session) Params() map[string]string { return s.params }

// ApplicationName is the application_name startup parameter, or "".
func (s *Session) ApplicationName() string { return s.params["application_name"] }

// Options returns the words of the options startup parameter, split by
// SplitOptions (escapes left in place). The slice must not be modified.
func (s *Session) Options() []string { return s.options }

// Option returns the value of the last key=value word of options whose key
// is key; later words override earlier ones. Words that are not key=value,
// such as the "-c" PostgreSQL clients put first, never match.
func (s *Session) Option(key string) (string, bool) {
	for i := len(s.options) - 1; i >= 0; i-- {
		k, v, ok := strings.Cut(s.options[i], "=")
		if ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Claims returns the verified token's claims, or nil when the port trusts
// every client.
func (s *Session) Claims() *jwtauth.Claims { return s.claims }

// Log is the connection's logger, tagged with its id and peer address.
func (s *Session) Log() *zerolog.Logger { return &s.log }

// Type OIDs and lengths of the column types the daemons return (§1.6).
const (
	OIDBool  uint32 = 16
	OIDInt8  uint32 = 20
	OIDInt4  uint32 = 23
	OIDText  uint32 = 25
	OIDBytea uint32 = 17
)

// Field describes one result column. Columns are always in text format with
// typmod -1 and no table, as Neon's are.
type Field struct {
	Name    string
	TypeOID uint32
	// TypeLen is pg_type.typlen: 4 for int4, 8 for int8, -1 for text.
	TypeLen int16
}

// TextField is a text column.
func TextField(name string) Field { return Field{Name: name, TypeOID: OIDText, TypeLen: -1} }

// Int4Field is an int4 column.
func Int4Field(name string) Field { return Field{Name: name, TypeOID: OIDInt4, TypeLen: 4} }

// Int8Field is an int8 column.
func Int8Field(name string) Field { return Field{Name: name, TypeOID: OIDInt8, TypeLen: 8} }

// send encodes msg into the scratch buffer and buffers it for the client.
func (s *Session) send(msg pgproto3.BackendMessage) error {
	b, err := msg.Encode(s.wbuf[:0])
	if err != nil {
		return fmt.Errorf("encode %T: %w", msg, err)
	}
	if cap(b) <= keepBodyBuf {
		s.wbuf = b[:0]
	}
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write %T: %w", msg, err)
	}
	return nil
}

// WriteRowDescription starts a result set with the given columns.
func (s *Session) WriteRowDescription(fields ...Field) error {
	fds := make([]pgproto3.FieldDescription, len(fields))
	for i, f := range fields {
		fds[i] = pgproto3.FieldDescription{
			Name:         []byte(f.Name),
			DataTypeOID:  f.TypeOID,
			DataTypeSize: f.TypeLen,
			TypeModifier: -1,
		}
	}
	return s.send(&pgproto3.RowDescription{Fields: fds})
}

// WriteDataRow sends one row of text values; a nil value is SQL NULL.
func (s *Session) WriteDataRow(values ...[]byte) error {
	return s.send(&pgproto3.DataRow{Values: values})
}

// WriteCommandComplete ends a command's results with tag, e.g. "IDENTIFY_SYSTEM".
func (s *Session) WriteCommandComplete(tag string) error {
	return s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// StartCopyBoth switches the connection into COPY BOTH mode (CopyBothResponse
// with text format and no columns, as walsenders send). From then on both
// sides exchange CopyData, and the connection is closed when the handler
// returns: COPY is never left cleanly (SK §1.4). It flushes, so the client
// learns of the switch before the handler starts waiting for its data.
func (s *Session) StartCopyBoth() error {
	if err := s.send(&pgproto3.CopyBothResponse{OverallFormat: 0}); err != nil {
		return err
	}
	s.copying.Store(true)
	return s.Flush()
}

// StartCopyOut switches the session to COPY OUT (text format, no columns):
// the handler then sends its output as CopyData and ends with EndCopyOut
// and a CommandComplete, as PostgreSQL's COPY TO STDOUT does. A handler
// that fails in between returns its error instead: the client gets an
// ErrorResponse and knows the copy is incomplete.
func (s *Session) StartCopyOut() error {
	return s.send(&pgproto3.CopyOutResponse{OverallFormat: 0})
}

// EndCopyOut ends COPY OUT: CopyDone. The handler writes its
// CommandComplete next.
func (s *Session) EndCopyOut() error { return s.send(&pgproto3.CopyDone{}) }

// EndCopy leaves COPY BOTH cleanly, as a walsender does when the client
// sent CopyDone: it sends CopyDone back, and the session goes on after the
// handler returns (the handler writes its CommandComplete first). The
// caller must have stopped every goroutine that reads or writes the session.
func (s *Session) EndCopy() error {
	if !s.copying.Load() {
		return Errorf(CodeProtocolViolation, "EndCopy outside COPY")
	}
	if err := s.send(&pgproto3.CopyDone{}); err != nil {
		return err
	}
	s.copying.Store(false)
	return nil
}

// ReadCopyData returns the payload of the client's next CopyData message. The
// slice is valid only until the next call. It returns io.EOF when the client
// ends the stream (CopyDone, Terminate, or closing the connection between
// messages; ErrCopyDone, which also matches io.EOF, for CopyDone) and an error wrapping ErrCopyFail when it aborts it. Flush and
// Sync are skipped, as PostgreSQL does during COPY; any other message is a
// protocol violation.
//
// It must only be called after StartCopyBoth.
func (s *Session) ReadCopyData() ([]byte, error) {
	if !s.copying.Load() {
		return nil, Errorf(CodeProtocolViolation, "ReadCopyData outside COPY")
	}
	for {
		typ, body, err := s.fr.next()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'd':
			return body, nil
		case 'c':
			return nil, ErrCopyDone
		case 'X':
			return nil, io.EOF
		case 'f':
			msg, err := cstring(body, "CopyFail")
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCopyFail, err)
			}
			return nil, fmt.Errorf("%w: %s", ErrCopyFail, msg)
		case 'H', 'S':
			continue
		default:
			return nil, errProtocol("unexpected message type %q during COPY", typ)
		}
	}
}

// MessageBuffered reports whether the client's next message has already
// arrived whole, so that ReadCopyData will not block. Only the reading
// goroutine may call it.
func (s *Session) MessageBuffered() bool { return s.fr.messageBuffered() }

// InputPending reports whether more of the client's input has arrived: a
// whole message in the read buffer, or unread bytes in the kernel's socket
// buffer. A streaming handler uses it to act once per burst of messages (one
// fsync, one reply) rather than once per message: the read buffer alone is
// too small to tell a burst from its end. Only the reading goroutine may
// call it.
func (s *Session) InputPending() bool {
	if s.fr.messageBuffered() {
		return true
	}
	return socketBytesPending(s.conn)
}

// WaitInput waits up to d for more client input and reports whether any
// arrived; it never consumes a message. A streaming handler uses it to let
// a steady stream's next message arrive before it acts on the burst so far.
// Only the reading goroutine may call it.
func (s *Session) WaitInput(d time.Duration) bool {
	if s.InputPending() {
		return true
	}
	s.rc.wait = time.Now().Add(d)
	_, err := s.fr.r.Peek(1)
	s.rc.wait = time.Time{}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !s.readStopped.Load() {
		// The next read reports a real failure again.
		return true
	}
	return err == nil
}

// socketBytesPending asks the kernel how many received bytes wait unread
// (SIOCINQ); false when the connection is not a socket it can ask.
func socketBytesPending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int32
	_ = rc.Control(func(fd uintptr) {
		// Raw: see package rawconn.
		_, _, _ = syscall.RawSyscall(syscall.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	})
	return n > 0
}

// InterruptRead makes a ReadCopyData blocked in another goroutine, and every
// later one, fail with ErrReadInterrupted. It is how a handler that decides
// to end a COPY stream itself stops its reading goroutine before returning;
// the connection is closed after a COPY anyway, so the read side is not
// needed again. Writing still works. Safe to call from any goroutine, any
// number of times.
func (s *Session) InterruptRead() {
	s.readStopped.Store(true)
	// A deadline in the past wakes a Read that is already blocked; the
	// flag stops the idle timer from moving the deadline forward again.
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
}

// maxCopyData is the largest CopyData payload that fits PostgreSQL's message
// length limit.
const maxCopyData = DefaultMaxMessageLen - 4

// WriteCopyData buffers one CopyData message carrying b. It does not
// allocate: the header and b are copied straight into the write buffer (or,
// for payloads larger than the buffer, written through to the connection).
func (s *Session) WriteCopyData(b []byte) error {
	if len(b) > maxCopyData {
		return fmt.Errorf("write CopyData: payload of %d bytes exceeds %d", len(b), maxCopyData)
	}
	s.hdr[0] = 'd'
	binary.BigEndian.PutUint32(s.hdr[1:], uint32(len(b)+4))
	if _, err := s.w.Write(s.hdr[:]); err != nil {
		return fmt.Errorf("write CopyData: %w", err)
	}
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write CopyData: %w", err)
	}
	return nil
}

// Flush sends everything buffered so far to the client.
func (s *Session) Flush() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
