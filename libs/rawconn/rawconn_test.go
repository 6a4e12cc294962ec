package rawconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns a wrapped client connection and the server's end.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	dial := WrapDial((&net.Dialer{}).DialContext)
	c, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	rc, ok := c.(*Conn)
	if !ok {
		t.Fatalf("WrapDial gave a %T, want *Conn", c)
	}
	t.Cleanup(func() { rc.Close(); peer.Close() })
	return rc, peer
}

// More than the socket buffers hold both ways: Write waits for room, Read
// gets every byte in order.
func TestBulkBothWays(t *testing.T) {
	c, peer := tcpPair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	echoed := make(chan error, 1)
	go func() { // the peer echoes everything back
		_, err := io.Copy(peer, peer)
		peer.(*net.TCPConn).CloseWrite()
		echoed <- err
	}()
	wrote := make(chan error, 1)
	go func() {
		n, err := c.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		c.Conn.(*net.TCPConn).CloseWrite()
		wrote <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, differing from the %d written", len(got), len(want))
	}
}

func TestEOF(t *testing.T) {
	c, peer := tcpPair(t)
	peer.Write([]byte("bye"))
	peer.Close()
	buf := make([]byte, 10)
	n, err := io.ReadFull(c, buf)
	if n != 3 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFull = %d, %v; want 3 bytes then EOF", n, err)
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// Deadlines set on the connection bound the raw Read and Write too.
func TestDeadlines(t *testing.T) {
	c, _ := tcpPair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" || op.Addr == nil {
		t.Fatalf("Read error %v is not a *net.OpError naming the peer", err)
	}
	// Nobody reads the peer's end: the buffers fill, and Write times out.
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline: %v after %d bytes, want a timeout", err, n)
	}
	if n == 0 || n >= 64<<20 {
		t.Fatalf("Write reported %d bytes written before the timeout", n)
	}
}

// Close from another goroutine ends a Read waiting for data.
func TestCloseUnblocksRead(t *testing.T) {
	c, _ := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still waiting 10 s after Close")
	}
}

// A peer that reset the connection makes Write fail with the errno.
func TestWriteAfterReset(t *testing.T) {
	c, peer := tcpPair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("Write to a reset connection: %v, want a *net.OpError", err)
	}
}

func TestWrapLeavesNonSockets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if w := Wrap(a); w != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", w)
	}
	dialErr := errors.New("refused")
	dial := WrapDial(func(context.Context, string, string) (net.Conn, error) { return nil, dialErr })
	if c, err := dial(context.Background(), "tcp", "x"); c != nil || err != dialErr {
		t.Fatalf("WrapDial of a failing dial = %v, %v; want nil, its error", c, err)
	}
}

// The point of the package: a Read or Write allocates nothing.
func TestNoAllocations(t *testing.T) {
	c, peer := tcpPair(t)
	msg := []byte("0123456789")
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", allocs)
	}
}
