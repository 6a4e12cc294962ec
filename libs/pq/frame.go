package pq

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Frame limits. PostgreSQL itself caps startup packets at 10000 bytes
// (MAX_STARTUP_PACKET_LENGTH) and other messages at PG_LARGE_MESSAGE_LIMIT,
// just under 1 GiB.
const (
	minStartupLen = 8 // length word plus protocol code
	maxStartupLen = 10000
	// DefaultMaxMessageLen is the default cap on a frontend message's length.
	DefaultMaxMessageLen = 1<<30 - 2

	// keepBodyBuf is the largest body buffer kept between messages: enough
	// for WAL pushes (128 KiB of WAL per AppendRequest) without pinning a
	// huge buffer after one outsized query.
	keepBodyBuf = 4 << 20
	// firstChunk bounds the memory committed to a message before its bytes
	// arrive, so that a length word alone cannot make us allocate 1 GiB.
	firstChunk = 1 << 20
)

// isFrontendType reports whether a frontend may send messages of type t
// after startup. Anything else is rejected before its body is read.
func isFrontendType(t byte) bool {
	switch t {
	case 'B', 'C', 'D', 'E', 'F', 'H', 'P', 'Q', 'S', 'X', 'c', 'd', 'f', 'p':
		return true
	}
	return false
}

// frameReader splits the client's byte stream into messages. It owns one
// body buffer that it reuses, so reading a message allocates nothing once the
// buffer has grown to the size of the messages in flight; a body is therefore
// valid only until the next read.
//
// We frame messages ourselves instead of using pgproto3.Backend.Receive
// because that allocates a fresh buffer for most large messages and has no
// length cap; pgproto3's message types still decode the bodies.
type frameReader struct {
	r      *bufio.Reader
	maxLen int
	hdr    [5]byte
	body   []byte
}

// errProtocol marks framing errors. Serve reports them as 08P01 and closes.
func errProtocol(format string, args ...any) *Error {
	return Errorf(CodeProtocolViolation, format, args...)
}

// readStartup reads a startup-phase packet (no type byte) and returns its
// body, starting with the 4-byte protocol or request code.
func (f *frameReader) readStartup() ([]byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:4]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(f.hdr[:4])
	if n < minStartupLen || n > maxStartupLen {
		return nil, errProtocol("invalid startup packet length %d (want %d..%d)", n, minStartupLen, maxStartupLen)
	}
	body, err := f.readBody(int(n) - 4)
	if err != nil {
		return nil, fmt.Errorf("read startup packet: %w", noEOF(err))
	}
	return body, nil
}

// next reads one typed message. io.EOF means the client closed the
// connection cleanly between messages.
func (f *frameReader) next() (typ byte, body []byte, err error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("read message header: %w", err)
		}
		return 0, nil, err
	}
	typ = f.hdr[0]
	if !isFrontendType(typ) {
		return 0, nil, errProtocol("invalid frontend message type %d (%q)", typ, typ)
	}
	n := binary.BigEndian.Uint32(f.hdr[1:])
	if n < 4 || uint64(n)-4 > uint64(f.maxLen) {
		return 0, nil, errProtocol("invalid length %d of message type %q (max %d)", n, typ, f.maxLen)
	}
	body, err = f.readBody(int(n) - 4)
	if err != nil {
		return 0, nil, fmt.Errorf("read message %q of %d bytes: %w", typ, n-4, noEOF(err))
	}
	return typ, body, nil
}

// messageBuffered reports whether a whole typed message is already in the
// read buffer, so that next returns it without blocking.
func (f *frameReader) messageBuffered() bool {
	if f.r.Buffered() < len(f.hdr) {
		return false
	}
	h, err := f.r.Peek(len(f.hdr))
	if err != nil {
		return false
	}
	n := int(binary.BigEndian.Uint32(h[1:]))
	return f.r.Buffered() >= 1+n
}

// readBody reads exactly n bytes into the reused buffer, growing it as the
// bytes arrive rather than trusting the announced length up front.
func (f *frameReader) readBody(n int) ([]byte, error) {
	if cap(f.body) > keepBodyBuf && n <= keepBodyBuf {
		f.body = nil // let one outsized message's buffer go
	}
	if n <= cap(f.body) {
		f.body = f.body[:n]
		if _, err := io.ReadFull(f.r, f.body); err != nil {
			return nil, err
		}
		return f.body, nil
	}
	b := f.body[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n, max(2*cap(b), min(n, firstChunk))))
			copy(grown, b)
			b = grown
		}
		m, err := io.ReadFull(f.r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	f.body = b
	return b, nil
}

// cstring decodes a body that is exactly one NUL-terminated string, the
// shape of Query and CopyFail. pgproto3/v2's decoders for those panic on an
// empty body, so they are not used.
func cstring(body []byte, what string) (string, error) {
	i := bytes.IndexByte(body, 0)
	if i < 0 || i != len(body)-1 {
		return "", errProtocol("malformed %s message: want one NUL-terminated string", what)
	}
	return string(body[:i]), nil
}

// noEOF turns a clean EOF in the middle of a message into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// idleTimeoutConn is what the frame reader reads from. It refreshes the read
// deadline so that a client silent for longer than timeout gets an error
// instead of holding the connection forever (SK §1.1), and it fails every read
// once stopped is set (Session.InterruptRead).
//
// Setting a deadline costs a timer update, so it is refreshed at most every
// timeout/16; the effective timeout lies between 15/16 and 16/16 of the
// configured one. A timeout <= 0 disables it.
type idleTimeoutConn struct {
	net.Conn
	timeout time.Duration
	set     time.Time // deadline - timeout at the last refresh
	stopped *atomic.Bool
	// wait, if set, is a short deadline for the next Read (Session.WaitInput).
	wait time.Time
}

func (c *idleTimeoutConn) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, ErrReadInterrupted
	}
	if !c.wait.IsZero() {
		if err := c.Conn.SetReadDeadline(c.wait); err != nil {
			return 0, fmt.Errorf("set read deadline: %w", err)
		}
		c.set = time.Time{} // the idle deadline must be set again after
	} else if c.timeout > 0 {
		now := time.Now()
		if now.Sub(c.set) >= c.timeout/16 {
			if err := c.Conn.SetReadDeadline(now.Add(c.timeout)); err != nil {
				return 0, fmt.Errorf("set read deadline: %w", err)
			}
			c.set = now
			// InterruptRead may have set its past deadline just before we
			// replaced it; it set the flag first, so look again.
			if c.stopped.Load() {
				return 0, ErrReadInterrupted
			}
		}
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.stopped.Load() {
		return n, ErrReadInterrupted
	}
	return n, err
}
