// Package wal is PostgreSQL's WAL framing, shared by the safekeeper and the
// pageserver: segment file names, page headers, the XLogRecord header and its
// CRC, a streaming decoder that finds record boundaries (SK §4.5, PS §2.3), and
// the synthetic first-segment image a timeline starts from (SK §4.4.4).
//
// It knows where records begin and end and whether their bytes are intact; it
// does not look inside them (block references and resource-manager payloads
// belong to the pageserver's record decoder).
//
// Layouts follow PostgreSQL 15's xlog_internal.h and xlogrecord.h (identical
// for 14 to 17 apart from the page magic). Everything on disk is little-endian.
// Constants keep PostgreSQL's names so they can be grepped against the C
// headers. The page size is lsn.PageSize (XLOG_BLCKSZ, 8192); the segment size
// is a parameter everywhere, because it is a per-cluster property (Neon
// hard-codes 16 MiB, which is what a default initdb uses).
package wal

import (
	"fmt"

	"strata.dev/libs/lsn"
)

// Sizes of the fixed headers, all already MAXALIGNed as PostgreSQL stores them.
const (
	// ShortPageHeaderSize is SizeOfXLogShortPHD: the header of every page.
	ShortPageHeaderSize = 24
	// LongPageHeaderSize is SizeOfXLogLongPHD: the header of a segment's first page.
	LongPageHeaderSize = 40
	// RecordHeaderSize is SizeOfXLogRecord: the fixed XLogRecord header.
	RecordHeaderSize = 24

	// MaxRecordSize is the largest xl_tot_len accepted. PostgreSQL 15's own
	// reader cannot allocate a record buffer beyond MaxAllocSize (1 GiB - 1),
	// so a larger length is corruption, not a record we could ever need.
	MaxRecordSize = 0x3FFFFFFF

	// MinSegmentSize and MaxSegmentSize bound wal_segment_size (WalSegMinSize,
	// WalSegMaxSize); it must also be a power of two.
	MinSegmentSize = 1 << 20
	MaxSegmentSize = 1 << 30
)

// ValidateSegmentSize reports whether segSize is a size initdb accepts
// (IsValidWalSegSize): a power of two from 1 MiB to 1 GiB.
func ValidateSegmentSize(segSize uint64) error {
	if segSize < MinSegmentSize || segSize > MaxSegmentSize || segSize&(segSize-1) != 0 {
		return fmt.Errorf("invalid WAL segment size %d: want a power of two from 1 MiB to 1 GiB", segSize)
	}
	return nil
}

// PageMagic returns XLOG_PAGE_MAGIC, the first two bytes of every WAL page,
// for a PostgreSQL major version. pgVersion is either the major version (15)
// or PG_VERSION_NUM (150004), the form the walproposer greeting carries.
func PageMagic(pgVersion uint32) (uint16, error) {
	major := pgVersion
	if pgVersion >= 10000 {
		major = pgVersion / 10000
	}
	switch major {
	case 14:
		return 0xD10D, nil
	case 15:
		return 0xD110, nil
	case 16:
		return 0xD113, nil
	case 17:
		return 0xD116, nil
	}
	return 0, fmt.Errorf("unsupported PostgreSQL version %d: want 14 to 17", pgVersion)
}

// pageHeaderSizeAt is the size of the page header that starts at page start p.
func pageHeaderSizeAt(p lsn.LSN, segSize uint64) int {
	if p.IsSegmentStart(segSize) {
		return LongPageHeaderSize
	}
	return ShortPageHeaderSize
}
