package pamsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// errShort is wrapped into every "message too short" error.
var errShort = errors.New("message truncated")

// reader consumes a message body. The first failure sticks: later reads return
// zero values and err keeps the first error, so decoders read every field and
// check err once, like bufio.Scanner.
type reader struct {
	b     []byte
	order binary.ByteOrder
	err   error
	what  string // message name, for errors
}

func newReader(b []byte, order binary.ByteOrder, what string) *reader {
	return &reader{b: b, order: order, what: what}
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("%s: %w reading %s: need %d bytes, have %d", r.what, errShort, field, n, len(r.b))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(field string) uint8 {
	if b := r.take(1, field); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if b := r.take(2, field); b != nil {
		return r.order.Uint16(b)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(4, field); b != nil {
		return r.order.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return r.order.Uint64(b)
	}
	return 0
}

// cstring reads NUL-terminated UTF-8 text.
func (r *reader) cstring(field string) string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.err = fmt.Errorf("%s: %w reading %s: missing NUL terminator", r.what, errShort, field)
		return ""
	}
	s := string(r.b[:i])
	r.b = r.b[i+1:]
	return s
}

// count reads a u32 element count and checks that the rest of the message can
// hold that many elements of at least minSize bytes, so a corrupt count never
// makes us allocate a huge slice.
func (r *reader) count(field string, minSize int) int {
	n := r.u32(field)
	if r.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)) {
		r.err = fmt.Errorf("%s: %w: %s says %d entries but only %d bytes follow", r.what, errShort, field, n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(r.what+": "+format, args...)
	}
}

// rest returns whatever is left.
func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	out := r.b
	r.b = nil
	return out
}

// end fails if bytes are left: acceptor replies must be consumed exactly (SK §2.1).
func (r *reader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%s: %d unexpected trailing bytes", r.what, len(r.b))
	}
}

// writer helpers: append fixed-width integers in the given order.

func putU16(dst []byte, o binary.AppendByteOrder, v uint16) []byte { return o.AppendUint16(dst, v) }
func putU32(dst []byte, o binary.AppendByteOrder, v uint32) []byte { return o.AppendUint32(dst, v) }
func putU64(dst []byte, o binary.AppendByteOrder, v uint64) []byte { return o.AppendUint64(dst, v) }
func putCString(dst []byte, s string) []byte                       { return append(append(dst, s...), 0) }
