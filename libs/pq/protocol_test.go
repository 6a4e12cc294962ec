package pq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/pq"
)

// Raw-socket tests for what drivers never send.

func startupPacket(code uint32, params ...string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), code)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	if len(params) > 0 || code == 3<<16 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func message(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t *testing.T, c net.Conn, bs ...[]byte) {
	t.Helper()
	for _, b := range bs {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func readByte(t *testing.T, c net.Conn) byte {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// expectError reads backend messages until an ErrorResponse, checks its
// code, then expects the server to close the connection.
func expectError(t *testing.T, c net.Conn, code string) {
	t.Helper()
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v, want ErrorResponse %s", err, code)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			if e.Code != code {
				t.Fatalf("ErrorResponse %s %q, want code %s", e.Code, e.Message, code)
			}
			break
		}
	}
	if msg, err := fe.Receive(); err == nil {
		t.Fatalf("got %#v after the error, want the connection closed", msg)
	}
}

func expectReady(t *testing.T, c net.Conn) *pgproto3.Frontend {
	t.Helper()
	fe := pgproto3.NewFrontend(c, c)
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return fe
		}
	}
}

func TestNegotiationAnsweredN(t *testing.T) {
	addr := startServer(t, pq.Config{}, newTestHandler())
	c := dial(t, addr)
	write(t, c, startupPacket(80877103))
	if b := readByte(t, c); b != 'N' {
		t.Fatalf("SSLRequest answered %q", b)
	}
	write(t, c, startupPacket(80877104))
	if b := readByte(t, c); b != 'N' {
		t.Fatalf("GSSENCRequest answered %q", b)
	}
	write(t, c, startupPacket(3<<16, "user", "u"))
	expectReady(t, c)
}

func TestCancelRequestCloses(t *testing.T) {
	addr := startServer(t, pq.Config{}, newTestHandler())
	c := dial(t, addr)
	write(t, c, []byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 42, 0, 0, 0, 43})
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after CancelRequest: %d, %v; want EOF", n, err)
	}
}

func TestStartupRejects(t *testing.T) {
	addr := startServer(t, pq.Config{}, newTestHandler())
	tooLong := make([]byte, 10004)
	binary.BigEndian.PutUint32(tooLong, 10004)
	binary.BigEndian.PutUint32(tooLong[4:], 3<<16)
	ssl := startupPacket(80877103)
	for name, tc := range map[string]struct {
		data []byte
		ns   int // 'N' answers to read before the error
		code string
	}{
		"length 7":              {[]byte{0, 0, 0, 7, 0, 3, 0}, 0, pq.CodeProtocolViolation},
		"length 10004":          {tooLong, 0, pq.CodeProtocolViolation},
		"protocol 2.0":          {startupPacket(2 << 16), 0, pq.CodeFeatureNotSupported},
		"protocol 3.2":          {startupPacket(3<<16 | 2), 0, pq.CodeFeatureNotSupported},
		"no terminator":         {[]byte{0, 0, 0, 13, 0, 3, 0, 0, 'u', 0, 'x', 0, 'y'}, 0, pq.CodeProtocolViolation},
		"missing value":         {[]byte{0, 0, 0, 11, 0, 3, 0, 0, 'u', 's', 0}, 0, pq.CodeProtocolViolation},
		"too many negotiations": {append(append(append([]byte{}, ssl...), ssl...), ssl...), 2, pq.CodeProtocolViolation},
		"oversized SSLRequest":  {[]byte{0, 0, 0, 12, 4, 210, 22, 47, 0, 0, 0, 0}, 0, pq.CodeProtocolViolation},
		"password under trust":  {append(startupPacket(3<<16, "user", "u"), message('p', []byte("x\x00"))...), 0, pq.CodeProtocolViolation},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			write(t, c, tc.data)
			for range tc.ns {
				if b := readByte(t, c); b != 'N' {
					t.Fatalf("got %q, want N", b)
				}
			}
			expectError(t, c, tc.code)
		})
	}
}

func TestBadFramesAfterStartup(t *testing.T) {
	addr := startServer(t, pq.Config{MaxMessageLen: 1000}, newTestHandler())
	hugeHeader := []byte{'Q', 0x7f, 0xff, 0xff, 0xff}
	for name, data := range map[string][]byte{
		"unknown type":          message('Z', nil),
		"length below 4":        {'Q', 0, 0, 0, 3},
		"over MaxMessageLen":    message('Q', make([]byte, 1001)),
		"huge announced length": hugeHeader,
		"Query without NUL":     message('Q', []byte("IDENTIFY_SYSTEM")),
		"empty Query":           message('Q', nil),
		"Query with trailer":    message('Q', []byte("A\x00B")),
		"Describe bad type":     message('D', []byte("X\x00")),
		"Bind without names":    message('B', []byte("abc")),
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			write(t, c, startupPacket(3<<16, "user", "u"))
			expectReady(t, c)
			write(t, c, data)
			expectError(t, c, pq.CodeProtocolViolation)
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	addr := startServer(t, pq.Config{ReadTimeout: 100 * time.Millisecond}, newTestHandler())
	c := dial(t, addr)
	write(t, c, startupPacket(3<<16, "user", "u"))
	fe := expectReady(t, c)
	start := time.Now()
	if msg, err := fe.Receive(); err == nil {
		t.Fatalf("got %#v, want the idle connection closed", msg)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle connection closed after %v", d)
	}
}

// ServeConn's return value, over net.Pipe.
func TestServeConnResult(t *testing.T) {
	run := func(t *testing.T, ctx context.Context, client func(c net.Conn)) error {
		srv, cli := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- pq.ServeConn(ctx, srv, 7, pq.Config{}, newTestHandler()) }()
		client(cli)
		select {
		case err := <-done:
			cli.Close()
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return")
			return nil
		}
	}
	ctx := context.Background()
	// net.Pipe has no buffering: the client must read what the server
	// writes before the server can go on.
	ready := func(c net.Conn) {
		write(t, c, startupPacket(3<<16, "user", "u"))
		expectReady(t, c)
	}
	if err := run(t, ctx, func(c net.Conn) {
		ready(c)
		write(t, c, message('X', nil))
	}); err != nil {
		t.Errorf("after Terminate: %v", err)
	}
	if err := run(t, ctx, func(c net.Conn) {
		ready(c)
		c.Close()
	}); err != nil {
		t.Errorf("after EOF: %v", err)
	}
	if err := run(t, ctx, func(c net.Conn) {
		ready(c)
		go func() { _, _ = io.Copy(io.Discard, c) }()
		write(t, c, message('Z', nil))
	}); err == nil {
		t.Error("bad frame: nil error")
	}
	cctx, cancel := context.WithCancel(ctx)
	if err := run(t, cctx, func(c net.Conn) {
		ready(c)
		cancel()
	}); !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v, want context.Canceled", err)
	}
}
