// Handing the produced bytes out: all at once for small tests (Bytes), in
// chunks that alias the generator's buffer for benchmarks (Take), or as an
// io.Reader that makes records on demand up to a limit (Stream).
package walgen

import (
	"errors"
	"fmt"
	"io"

	"strata.dev/libs/lsn"
)

// Pending is the number of bytes produced and not yet handed out.
func (g *Generator) Pending() int { return len(g.buf) - g.off }

// PendingLSN is the LSN of the first byte not yet handed out: the stream
// start plus everything taken so far.
func (g *Generator) PendingLSN() lsn.LSN { return g.end - lsn.LSN(g.Pending()) }

// Take hands out up to n of the pending bytes. The slice aliases the
// generator's buffer: it is valid until the next call of a method of g.
func (g *Generator) Take(n int) []byte {
	n = min(max(n, 0), g.Pending())
	b := g.buf[g.off : g.off+n : g.off+n]
	g.off += n
	return b
}

// Bytes hands out all pending bytes, as a new slice the caller owns.
func (g *Generator) Bytes() []byte {
	b := append([]byte(nil), g.buf[g.off:]...)
	g.off = len(g.buf)
	return b
}

// Stream returns a reader of g's output from PendingLSN up to limit that
// calls next whenever it needs more bytes; next must add at least one
// record (e.g. func(g *Generator) { g.LogicalMessage(8192) }). A record that
// crosses limit is cut there, so a stream can end in a torn record.
func (g *Generator) Stream(limit lsn.LSN, next func(*Generator)) *Stream {
	return &Stream{g: g, limit: limit, next: next}
}

// Stream is an io.Reader and io.WriterTo over a generator; see
// Generator.Stream. It holds only what one record and one chunk need.
type Stream struct {
	g     *Generator
	limit lsn.LSN
	next  func(*Generator)
}

// errNoProgress reports a next function that added nothing.
var errNoProgress = errors.New("walgen: the stream's next function produced no WAL")

// Chunk returns the next up to n bytes of the stream without copying them;
// they are valid until the next call on the stream or its generator. At the
// limit it returns io.EOF.
func (s *Stream) Chunk(n int) ([]byte, error) {
	left := s.limit.Sub(s.g.PendingLSN())
	if left == 0 {
		return nil, io.EOF
	}
	if n <= 0 {
		return nil, nil
	}
	// Prefer whole chunks: a caller pushing fixed-size pieces gets them.
	want := int(min(uint64(n), left))
	for s.g.Pending() < want {
		before := s.g.LSN()
		s.next(s.g)
		if s.g.LSN() == before {
			return nil, fmt.Errorf("%w at %s", errNoProgress, before)
		}
	}
	return s.g.Take(want), nil
}

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	b, err := s.Chunk(len(p))
	return copy(p, b), err
}

// WriteTo implements io.WriterTo, so io.Copy moves the stream in 1 MiB
// pieces without an extra copy.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		b, err := s.Chunk(1 << 20)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}
