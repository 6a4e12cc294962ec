// Segment file names (SK §4.2, XLogFileName in xlog_internal.h).
//
// Guarantees: SegmentFileName and ParseSegmentFileName are inverses for every
// name ParseSegmentFileName accepts, so a directory listing maps one-to-one to
// segment numbers; names with lowercase hex or an out-of-range segment part
// are rejected rather than aliased onto another segment's number.
package wal

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// segmentNameLen is XLOG_FNAME_LEN: tli, log and seg as 8 hex digits each.
	segmentNameLen = 24
	// PartialSuffix marks the segment still being written (SK §4.2).
	PartialSuffix = ".partial"
)

// ErrNotSegmentName is returned (wrapped) for names that are not WAL segments.
var ErrNotSegmentName = errors.New("not a WAL segment file name")

// SegmentFileName is XLogFileName: "%08X%08X%08X" of the timeline, the "log"
// (segno / segments per 4 GiB) and the segment within it.
//
// segSize must be valid (ValidateSegmentSize): it comes from configuration or
// a control file that the caller has already checked, so an invalid one here
// is a bug and panics.
func SegmentFileName(tli uint32, segno uint64, segSize uint64) string {
	per := segmentsPerXLogID(segSize)
	var b [segmentNameLen]byte
	putHex8(b[0:8], uint64(tli))
	putHex8(b[8:16], segno/per)
	putHex8(b[16:24], segno%per)
	return string(b[:])
}

// ParseSegmentFileName accepts exactly 24 uppercase hex digits, optionally
// followed by ".partial", and returns the timeline and segment number.
// Uppercase only, as PostgreSQL's IsXLogFileName: "00000001000000000000000a"
// is not a name PostgreSQL or the safekeeper would ever create.
func ParseSegmentFileName(name string, segSize uint64) (tli uint32, segno uint64, partial bool, err error) {
	if err := ValidateSegmentSize(segSize); err != nil {
		return 0, 0, false, err
	}
	base, partial := strings.CutSuffix(name, PartialSuffix)
	if !isUpperHex(base, segmentNameLen) {
		return 0, 0, false, fmt.Errorf("%w: %q", ErrNotSegmentName, name)
	}
	t, _ := strconv.ParseUint(base[0:8], 16, 32)
	log, _ := strconv.ParseUint(base[8:16], 16, 32)
	seg, _ := strconv.ParseUint(base[16:24], 16, 32)
	per := segmentsPerXLogID(segSize)
	if seg >= per {
		// XLogFromFileName would silently fold this into the next "log".
		return 0, 0, false, fmt.Errorf("%w: %q: segment part %08X out of range for %d-byte segments",
			ErrNotSegmentName, name, seg, segSize)
	}
	return uint32(t), log*per + seg, partial, nil
}

// IsSegmentFileName reports whether name has the form of a complete or
// .partial WAL segment file (IsXLogFileName || IsPartialXLogFileName).
func IsSegmentFileName(name string) bool {
	base, _ := strings.CutSuffix(name, PartialSuffix)
	return isUpperHex(base, segmentNameLen)
}

func segmentsPerXLogID(segSize uint64) uint64 {
	if err := ValidateSegmentSize(segSize); err != nil {
		panic("wal: " + err.Error())
	}
	return 0x100000000 / segSize
}

func isUpperHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// putHex8 writes the low 32 bits of v as 8 uppercase hex digits.
func putHex8(dst []byte, v uint64) {
	const digits = "0123456789ABCDEF"
	for i := 7; i >= 0; i-- {
		dst[i] = digits[v&0xF]
		v >>= 4
	}
}
