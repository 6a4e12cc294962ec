package pq_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"strata.dev/libs/pq"
)

// loopConn plays a client that sends prefix once and then repeats frame
// forever; what the server writes is discarded.
type loopConn struct {
	bytesConn
	prefix []byte
	frame  []byte
	pos    int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		m := copy(p[n:], c.frame[c.pos:])
		n += m
		c.pos = (c.pos + m) % len(c.frame)
	}
	return n, nil
}

func copyDataFrame(size int) []byte {
	f := make([]byte, 5+size)
	f[0] = 'd'
	binary.BigEndian.PutUint32(f[1:], uint32(4+size))
	return f
}

func copyPrologue(b testing.TB) []byte {
	return encode(b, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "u"}}, &pgproto3.Query{String: "COPY"})
}

var sizes = []int{64, 8 << 10, 128 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkReadCopyData measures the WAL push read path without a socket.
func BenchmarkReadCopyData(b *testing.B) {
	for _, size := range sizes {
		b.Run(sizeName(size), func(b *testing.B) {
			conn := &loopConn{prefix: copyPrologue(b), frame: copyDataFrame(size)}
			h := pq.HandlerFunc(func(ctx context.Context, s *pq.Session, q string) error {
				if err := s.StartCopyBoth(); err != nil {
					return err
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if p, err := s.ReadCopyData(); err != nil || len(p) != size {
						return fmt.Errorf("read %d bytes: %v", len(p), err)
					}
				}
				b.StopTimer()
				return nil
			})
			if err := pq.ServeConn(context.Background(), conn, 1, pq.Config{}, h); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWriteCopyData measures the sender's write path without a socket,
// flushing after every message as a WAL sender does.
func BenchmarkWriteCopyData(b *testing.B) {
	for _, size := range sizes {
		b.Run(sizeName(size), func(b *testing.B) {
			conn := &loopConn{prefix: copyPrologue(b), frame: copyDataFrame(1)}
			payload := make([]byte, size)
			h := pq.HandlerFunc(func(ctx context.Context, s *pq.Session, q string) error {
				if err := s.StartCopyBoth(); err != nil {
					return err
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := s.WriteCopyData(payload); err != nil {
						return err
					}
					if err := s.Flush(); err != nil {
						return err
					}
				}
				b.StopTimer()
				return nil
			})
			if err := pq.ServeConn(context.Background(), conn, 1, pq.Config{}, h); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// dialCopy connects to addr, starts COPY and returns the raw connection.
func dialCopy(b *testing.B, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write(copyPrologue(b)); err != nil {
		b.Fatal(err)
	}
	// Unbuffered, so that nothing after the CopyBothResponse is consumed.
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[1:]))-4); err != nil {
			b.Fatal(err)
		}
		if hdr[0] == 'W' {
			return c
		}
	}
}

// BenchmarkReadCopyDataTCP is the WAL push path over loopback TCP: a client
// streams CopyData as fast as it can, the handler reads it.
func BenchmarkReadCopyDataTCP(b *testing.B) {
	for _, size := range sizes {
		b.Run(sizeName(size), func(b *testing.B) {
			n := b.N
			read := make(chan error, 1)
			addr := startServer(b, pq.Config{}, pq.HandlerFunc(func(ctx context.Context, s *pq.Session, q string) error {
				if err := s.StartCopyBoth(); err != nil {
					return err
				}
				for range n {
					if _, err := s.ReadCopyData(); err != nil {
						read <- err
						return err
					}
				}
				read <- nil
				return nil
			}))
			c := dialCopy(b, addr)
			defer c.Close()
			w := bufio.NewWriterSize(c, 256<<10)
			frame := copyDataFrame(size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range n {
				if _, err := w.Write(frame); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := <-read; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWriteCopyDataTCP is the sending path over loopback TCP: the
// handler writes and flushes CopyData, a client drains it.
func BenchmarkWriteCopyDataTCP(b *testing.B) {
	for _, size := range sizes {
		b.Run(sizeName(size), func(b *testing.B) {
			n := b.N
			payload := make([]byte, size)
			addr := startServer(b, pq.Config{}, pq.HandlerFunc(func(ctx context.Context, s *pq.Session, q string) error {
				if err := s.StartCopyBoth(); err != nil {
					return err
				}
				for range n {
					if err := s.WriteCopyData(payload); err != nil {
						return err
					}
					if err := s.Flush(); err != nil {
						return err
					}
				}
				return nil // the server closes the connection: the client sees EOF
			}))
			c := dialCopy(b, addr)
			defer c.Close()
			if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			got, err := io.Copy(io.Discard, c)
			if err != nil {
				b.Fatal(err)
			}
			if want := int64(n * (size + 5)); got < want {
				b.Fatalf("client read %d bytes, want at least %d", got, want)
			}
		})
	}
}
