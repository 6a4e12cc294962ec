package control

// This file is the subset of Rust's bincode 1.x that Neon's control file uses
// (SK §4.1, "bincode LE fixint"): little-endian fixed-width integers, u64
// lengths before strings and sequences, a one-byte tag before an Option, a u32
// variant index before an enum payload, and SystemTime as u64 seconds plus u32
// nanoseconds since the Unix epoch. Ids that Neon marks `serde(with = "hex")`
// are strings of 32 lowercase hex characters, not 16 raw bytes.
//
// Invariants:
//   - The decoder never reads past its buffer and never allocates more than the
//     bytes that remain could describe: every length is checked against the
//     remaining input, times the smallest encoding of one element, before
//     anything is allocated. A corrupt file therefore costs at most its size.
//   - Both sides keep the first error and turn later calls into no-ops, so a
//     body is written or read as straight-line code and checked once.

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"
)

// Fixed facts of the encoding.
const (
	hexIDLen = 32 // characters of a hex-string id
	// maxUnixSeconds keeps creation times far from time.Time's overflow;
	// Neon never writes anything close (year 146 billion).
	maxUnixSeconds = 1 << 62
)

// encoder appends bincode to buf. Invalid values (strings that are not UTF-8,
// times before the epoch) set err, because Neon could not read them back.
type encoder struct {
	buf []byte
	err error
}

func (e *encoder) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

func (e *encoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *encoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

// length writes a sequence or string length.
func (e *encoder) length(n int) { e.u64(uint64(n)) }

// option writes the tag of an Option; the caller writes the payload if present.
func (e *encoder) option(present bool) {
	if present {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// variant writes an enum variant index; the caller writes its payload.
func (e *encoder) variant(i uint32) { e.u32(i) }

func (e *encoder) str(what, s string) {
	if !utf8.ValidString(s) {
		e.fail("%s %q is not valid UTF-8", what, s)
	}
	e.length(len(s))
	e.buf = append(e.buf, s...)
}

func (e *encoder) hexID(b [16]byte) {
	e.length(hexIDLen)
	e.buf = hex.AppendEncode(e.buf, b[:])
}

func (e *encoder) systemTime(what string, t time.Time) {
	secs := t.Unix()
	if secs < 0 {
		e.fail("%s %v precedes the Unix epoch", what, t)
		secs = 0
	}
	e.u64(uint64(secs))
	e.u32(uint32(t.Nanosecond()))
}

// decoder reads bincode from buf. Each read names the field it reads so that
// an error says where the file went wrong.
type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) remaining() int { return len(d.buf) - d.off }

// take returns the next n bytes, or nil after recording an error.
func (d *decoder) take(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.remaining() {
		d.fail("%s: need %d bytes at offset %d, only %d left", what, n, d.off, d.remaining())
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u8(what string) uint8 {
	if b := d.take(what, 1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if b := d.take(what, 2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if b := d.take(what, 4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if b := d.take(what, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a sequence length and checks that that many elements of at
// least minSize bytes each fit in what remains, so the caller may allocate.
func (d *decoder) count(what string, minSize int) int {
	n := d.u64(what + " length")
	if d.err != nil {
		return 0
	}
	if n > uint64(d.remaining()/minSize) {
		d.fail("%s: length %d at offset %d cannot fit in the %d bytes left", what, n, d.off-8, d.remaining())
		return 0
	}
	return int(n)
}

// option reads an Option tag; only 0 and 1 are valid, as in bincode.
func (d *decoder) option(what string) bool {
	switch tag := d.u8(what + " option tag"); {
	case d.err != nil:
		return false
	case tag == 0:
		return false
	case tag == 1:
		return true
	default:
		d.fail("%s: option tag %d at offset %d (want 0 or 1)", what, tag, d.off-1)
		return false
	}
}

// variant reads an enum variant index and checks it is below n.
func (d *decoder) variant(what string, n uint32) uint32 {
	v := d.u32(what + " variant")
	if d.err == nil && v >= n {
		d.fail("%s: variant %d at offset %d (want < %d)", what, v, d.off-4, n)
		return 0
	}
	return v
}

func (d *decoder) str(what string) string {
	n := d.count(what, 1)
	b := d.take(what, n)
	if d.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		d.fail("%s at offset %d is not valid UTF-8", what, d.off-n)
		return ""
	}
	return string(b)
}

// raw16 reads 16 bytes with no length, as formats 1 and 2 store ids.
func (d *decoder) raw16(what string) [16]byte {
	var v [16]byte
	copy(v[:], d.take(what, 16))
	return v
}

// hexID reads a hex-string id. Like Neon's hex crate it accepts either case.
func (d *decoder) hexID(what string) [16]byte {
	var v [16]byte
	n := d.u64(what + " length")
	if d.err != nil {
		return v
	}
	if n != hexIDLen {
		d.fail("%s: hex id length %d at offset %d (want %d)", what, n, d.off-8, hexIDLen)
		return v
	}
	b := d.take(what, hexIDLen)
	if d.err != nil {
		return v
	}
	if _, err := hex.Decode(v[:], b); err != nil {
		d.fail("%s: %q at offset %d is not hex", what, b, d.off-hexIDLen)
	}
	return v
}

// systemTime reads seconds and nanoseconds since the epoch. Nanoseconds of a
// second or more carry into the seconds, as Rust's serde does.
func (d *decoder) systemTime(what string) time.Time {
	secs := d.u64(what + " seconds")
	nanos := d.u32(what + " nanoseconds")
	if d.err != nil {
		return time.Time{}
	}
	if secs > maxUnixSeconds {
		d.fail("%s: %d seconds since the epoch is out of range", what, secs)
		return time.Time{}
	}
	return time.Unix(int64(secs), int64(nanos)).UTC()
}

// finish checks that the whole buffer was consumed.
func (d *decoder) finish() error {
	if d.err == nil && d.remaining() != 0 {
		d.fail("%d trailing bytes after the body at offset %d", d.remaining(), d.off)
	}
	return d.err
}
