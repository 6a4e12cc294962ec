// Package lsn is PostgreSQL's log sequence number: a 64-bit byte position in
// the WAL stream, written "HI/LO" with each half in hexadecimal.
//
// Besides parsing and formatting it does the segment and page arithmetic that
// every WAL consumer needs. Segment sizes are passed explicitly (they are a
// per-cluster property) and must be a power of two.
package lsn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a byte position in the WAL. The zero value is InvalidLSN.
type LSN uint64

const (
	// Invalid is PostgreSQL's InvalidXLogRecPtr.
	Invalid LSN = 0
	// Max is the largest representable LSN.
	Max LSN = ^LSN(0)

	// PageSize is XLOG_BLCKSZ, the size of a WAL page.
	PageSize = 8192
	// DefaultSegmentSize is the WAL segment size of a default initdb.
	DefaultSegmentSize = 16 * 1024 * 1024
)

// ErrSyntax is returned (wrapped) when a string is not of the X/Y form.
var ErrSyntax = errors.New("invalid LSN syntax")

// Parse accepts "X/Y" with each part 1 to 8 hexadecimal digits, either case.
func Parse(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || len(hi) == 0 || len(lo) == 0 || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%w: %q (want X/Y)", ErrSyntax, s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	return LSN(h<<32 | l), nil
}

// MustParse is Parse for constants in tests and tables; it panics on bad input.
func MustParse(s string) LSN {
	l, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

// String formats as PostgreSQL does: uppercase hex halves without leading zeros.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF)
}

// MarshalText makes LSNs appear as "X/Y" in JSON and TOML.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses "X/Y".
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// IsValid reports whether l is not InvalidXLogRecPtr.
func (l LSN) IsValid() bool { return l != Invalid }

// SegmentNumber is XLByteToSeg: the number of the segment holding byte l.
func (l LSN) SegmentNumber(segSize uint64) uint64 { return uint64(l) / segSize }

// SegmentOffset is XLogSegmentOffset: l's offset inside its segment.
func (l LSN) SegmentOffset(segSize uint64) uint64 { return uint64(l) & (segSize - 1) }

// PageOffset is l's offset inside its WAL page.
func (l LSN) PageOffset() uint64 { return uint64(l) % PageSize }

// SegmentStart is the LSN of the first byte of l's segment.
func (l LSN) SegmentStart(segSize uint64) LSN { return LSN(uint64(l) &^ (segSize - 1)) }

// PageStart is the LSN of the first byte of l's page.
func (l LSN) PageStart() LSN { return l &^ (PageSize - 1) }

// IsSegmentStart reports whether l is the first byte of a segment.
func (l LSN) IsSegmentStart(segSize uint64) bool { return l.SegmentOffset(segSize) == 0 }

// IsPageStart reports whether l is the first byte of a page.
func (l LSN) IsPageStart() bool { return l.PageOffset() == 0 }

// Align8 rounds l up to MAXALIGN (8), where WAL records start.
func (l LSN) Align8() LSN { return (l + 7) &^ 7 }

// SegmentLSN is XLogSegNoOffsetToRecPtr: the LSN at offset off of segment segno.
func SegmentLSN(segno, off, segSize uint64) LSN { return LSN(segno*segSize + off) }

// Add returns l advanced by n bytes.
func (l LSN) Add(n uint64) LSN { return l + LSN(n) }

// Sub returns the number of bytes from o to l; it is 0 when o > l.
func (l LSN) Sub(o LSN) uint64 {
	if o > l {
		return 0
	}
	return uint64(l - o)
}
