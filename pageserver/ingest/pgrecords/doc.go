// Package pgrecords parses the main data of the PostgreSQL 15 WAL records
// the pageserver acts on (PS §2.6): transaction commit, abort and prepare,
// storage create and truncate, CLOG, database create and drop, multixacts,
// the relation mapper, running-transaction snapshots, the heap flags that
// clear visibility-map bits, checkpoints, replication origins and logical
// messages. It also encodes and decodes the 88-byte CheckPoint struct that
// the pageserver keeps under the checkpoint key and basebackup writes.
//
// Layouts are those of vanilla PostgreSQL 15 on a 64-bit little-endian
// machine (the C structs of access/*_xlog.h, access/xact.h,
// catalog/pg_control.h ...), not those of Neon's PostgreSQL fork, which adds
// a t_cid field to several heap records (PS §2.6, pitfall 2).
//
// Guarantees: every parser takes untrusted bytes, never panics, never
// allocates more than the input can justify (counts are checked against the
// bytes that follow before anything is allocated), and reports a short or
// inconsistent payload as an error matching ErrMalformed. Returned slices
// that hold bytes (GID aside, which is copied) alias the input.
package pgrecords

import (
	"encoding/binary"
	"errors"
	"fmt"

	"strata.dev/libs/walrecord"
)

// ErrMalformed matches every parse error: the bytes are not a payload
// PostgreSQL 15 could have written for that record type.
var ErrMalformed = errors.New("malformed record payload")

// reader walks a payload. The first failure sticks; later reads return
// zero values, so parsers check err once at the end.
type reader struct {
	b    []byte
	off  int
	what string // the record type, for error messages
	err  error
}

func newReader(what string, b []byte) *reader { return &reader{b: b, what: what} }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s: %w", r.what, fmt.Sprintf(format, args...), ErrMalformed)
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// take returns the next n bytes, or nil after recording an error.
func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.remaining() < n {
		r.fail("%s: need %d bytes at offset %d, have %d", field, n, r.off, r.remaining())
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// skip moves to offset off (for C struct padding); off must not be behind.
func (r *reader) seek(off int, field string) {
	if r.err != nil {
		return
	}
	if off > len(r.b) {
		r.fail("%s: need offset %d, have %d bytes", field, off, len(r.b))
		return
	}
	r.off = off
}

func (r *reader) u8(field string) uint8 {
	if p := r.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if p := r.take(2, field); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if p := r.take(4, field); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if p := r.take(8, field); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// count reads an int32 element count and checks that elemSize bytes of
// each element follow, so a corrupt count cannot make a huge allocation.
func (r *reader) count(field string, elemSize int) int {
	n := int32(r.u32(field))
	if r.err != nil {
		return 0
	}
	if n < 0 {
		r.fail("%s: negative count %d", field, n)
		return 0
	}
	if int64(n)*int64(elemSize) > int64(r.remaining()) {
		r.fail("%s: %d entries of %d bytes, only %d bytes follow", field, n, elemSize, r.remaining())
		return 0
	}
	return int(n)
}

// atLeast checks the payload is at least n bytes long (C structs are read
// with fixed offsets; anything shorter cannot be one).
func (r *reader) atLeast(n int) {
	if r.err == nil && len(r.b) < n {
		r.fail("%d bytes, want at least %d", len(r.b), n)
	}
}

// exactly checks the payload is exactly n bytes long.
func (r *reader) exactly(n int) {
	if r.err == nil && len(r.b) != n {
		r.fail("%d bytes, want %d", len(r.b), n)
	}
}

// end checks that nothing follows what was read.
func (r *reader) end() {
	if r.err == nil && r.remaining() != 0 {
		r.fail("%d unexpected bytes after offset %d", r.remaining(), r.off)
	}
}

// result is v, or T's zero value and the error of the first failed read:
// the last line of every parser.
func result[T any](r *reader, v T) (T, error) {
	if r.err != nil {
		var zero T
		return zero, r.err
	}
	return v, nil
}

// pageno reads an SLRU page number, an int32 that must not be negative.
func (r *reader) pageno(field string) int32 {
	p := int32(r.u32(field))
	if r.err == nil && p < 0 {
		r.fail("%s: negative page number %d", field, p)
	}
	return p
}

// RelFileNode names a relation's files (storage/relfilenode.h), 12 bytes;
// the same type as a block reference's.
type RelFileNode = walrecord.RelFileNode

func (r *reader) relFileNode(field string) RelFileNode {
	return RelFileNode{Spc: r.u32(field + ".spcNode"), DB: r.u32(field + ".dbNode"), Rel: r.u32(field + ".relNode")}
}

// relFileNodeSize is sizeof(RelFileNode).
const relFileNodeSize = 12
