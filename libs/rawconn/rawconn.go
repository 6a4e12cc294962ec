// Package rawconn makes socket reads and writes without the Go runtime's
// system call bookkeeping.
//
// A Go system call tells the scheduler it may block (entersyscall), and the
// first one after the process was idle wakes the runtime's monitor thread,
// which then polls every 20 µs until the process is idle again. A safekeeper
// or walproposer goes idle and wakes once per commit, so that monitor took a
// quarter of their CPU time (measured per thread in test/bench's commit
// latency benchmark; with this package and walstore.RawIO their CPU per
// commit fell from ~520 to ~370 µs). Reads and writes of a non-blocking
// socket never block, so they need none of it: Conn issues them as raw
// system calls and waits for readiness through the runtime's network poller
// as usual, deadlines included.
package rawconn

import (
	"context"
	"io"
	"net"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write are raw system calls.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// The buffer and result of the Read (Write) in progress. The poller
	// serializes Reads (Writes), and the callbacks are bound once, so a call
	// allocates nothing.
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

// Wrap returns c as a *Conn, or c itself if it is not a socket the runtime
// can hand out (a net.Pipe, a TLS connection).
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, rc: rc}
	w.readFn = w.read
	w.writeFn = w.write
	return w
}

// SyscallConn gives access to the socket, like the wrapped connection's.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Read reads like net.Conn.Read: io.EOF once the peer closed its side.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf = p
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, c.opError("read", err)
	}
	if c.rerr != 0 {
		return 0, c.opError("read", c.rerr)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn, c.rerr = int(n), 0
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			c.rn, c.rerr = 0, e
			return true
		}
	}
}

// Write writes all of p, waiting for room in the socket buffer as needed.
func (c *Conn) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		c.wbuf = p
		err := c.rc.Write(c.writeFn)
		c.wbuf = nil
		if err != nil {
			return total, c.opError("write", err)
		}
		if c.werr != 0 {
			return total, c.opError("write", c.werr)
		}
		total += c.wn
		p = p[c.wn:]
	}
	return total, nil
}

func (c *Conn) write(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[0])), uintptr(len(c.wbuf)))
		switch e {
		case 0:
			c.wn, c.werr = int(n), 0
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			c.wn, c.werr = 0, e
			return true
		}
	}
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// WrapDial returns dial with its connections wrapped; it fits pgconn's
// Config.DialFunc.
func WrapDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}
