// The synthetic first segment of a timeline (SK §4.4.4, Neon's
// generate_wal_segment).
//
// Guarantees: the image is byte-exact to the spec: a long header at offset 0
// and, when Start is not in the first page, a short header on Start's page,
// both pretending that a record ends exactly at Start; every other byte is
// zero. ReadAt and Bytes agree byte for byte.
package wal

import (
	"fmt"
	"io"

	"strata.dev/libs/lsn"
)

// InitialTLI is the timeline id written into the synthetic headers; Neon's
// timelines are always timeline 1 of their PostgreSQL cluster.
const InitialTLI = 1

// InitialImage describes the segment a timeline's WAL starts in, before any
// real WAL is written into it. The safekeeper writes it when it is first
// elected at Start and serves its bytes to readers asking for positions
// before the timeline start.
type InitialImage struct {
	Start     lsn.LSN // the timeline start (start_streaming_at)
	SystemID  uint64  // xlp_sysid, the cluster's system identifier
	PGVersion uint32  // major version or PG_VERSION_NUM, for the page magic
	SegSize   uint64  // wal_segment_size
}

// InitialSegment returns the whole synthetic segment containing start.
func InitialSegment(start lsn.LSN, systemID uint64, pgVersion uint32, segSize uint64) ([]byte, error) {
	return InitialImage{Start: start, SystemID: systemID, PGVersion: pgVersion, SegSize: segSize}.Bytes()
}

// Bytes returns the whole segment image, SegSize bytes.
func (im InitialImage) Bytes() ([]byte, error) {
	hdrs, err := im.headers()
	if err != nil {
		return nil, err
	}
	seg := make([]byte, im.SegSize)
	for _, h := range hdrs {
		copy(seg[h.off:], h.bytes)
	}
	return seg, nil
}

// Prefix returns the image's bytes from the segment start up to Start: what
// a reader is served for positions before the timeline start.
func (im InitialImage) Prefix() ([]byte, error) {
	if err := ValidateSegmentSize(im.SegSize); err != nil {
		return nil, err
	}
	p := make([]byte, im.Start.SegmentOffset(im.SegSize))
	if _, err := im.ReadAt(p, 0); err != nil {
		return nil, err
	}
	return p, nil
}

// SegmentStart is the LSN of the image's first byte.
func (im InitialImage) SegmentStart() lsn.LSN { return im.Start.SegmentStart(im.SegSize) }

// ReadAt implements io.ReaderAt over the image; off is an offset in the
// segment. It builds only the bytes asked for, so serving the part before
// Start (offsets below Start.SegmentOffset) costs no segment-sized buffer.
func (im InitialImage) ReadAt(p []byte, off int64) (int, error) {
	hdrs, err := im.headers()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("initial segment: negative offset %d", off)
	}
	if uint64(off) >= im.SegSize {
		return 0, io.EOF
	}
	n := int(min(uint64(len(p)), im.SegSize-uint64(off)))
	clear(p[:n])
	for _, h := range hdrs {
		// Overlay the part of header h that falls inside [off, off+n).
		lo, hi := max(h.off, off), min(h.off+int64(len(h.bytes)), off+int64(n))
		if lo < hi {
			copy(p[lo-off:hi-off], h.bytes[lo-h.off:hi-h.off])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type placedHeader struct {
	off   int64
	bytes []byte
}

// headers lays out the one or two page headers of the image.
func (im InitialImage) headers() ([]placedHeader, error) {
	magic, err := PageMagic(im.PGVersion)
	if err != nil {
		return nil, err
	}
	if err := ValidateSegmentSize(im.SegSize); err != nil {
		return nil, err
	}
	segStart := im.SegmentStart()
	segOff := im.Start.SegmentOffset(im.SegSize)
	pageOff := im.Start.PageOffset()
	inFirstPage := segOff < lsn.PageSize
	hsize := uint64(ShortPageHeaderSize)
	if inFirstPage {
		hsize = LongPageHeaderSize
	}
	if pageOff != 0 && pageOff < hsize {
		return nil, fmt.Errorf("initial segment: start %s is inside a page header", im.Start)
	}

	long := PageHeader{
		Magic: magic, Info: XLP_LONG_HEADER, TLI: InitialTLI, PageAddr: segStart,
		SysID: im.SystemID, SegSize: uint32(im.SegSize), XLogBlcksz: lsn.PageSize,
	}
	if inFirstPage && segOff > 0 {
		// A record "ends" at Start: the page opens with its last bytes.
		long.Info |= XLP_FIRST_IS_CONTRECORD
		long.RemLen = uint32(segOff - LongPageHeaderSize)
	}
	hdrs := []placedHeader{{0, long.Append(make([]byte, 0, LongPageHeaderSize))}}
	if !inFirstPage {
		short := PageHeader{Magic: magic, TLI: InitialTLI, PageAddr: im.Start.PageStart()}
		if pageOff > 0 {
			short.Info = XLP_FIRST_IS_CONTRECORD
			short.RemLen = uint32(pageOff - ShortPageHeaderSize)
		}
		off := int64(im.Start.PageStart() - segStart)
		hdrs = append(hdrs, placedHeader{off, short.Append(make([]byte, 0, ShortPageHeaderSize))})
	}
	return hdrs, nil
}
