// Package walrecord decodes the body of a PostgreSQL 15 WAL record (PS §2.4):
// the block references with their full-page images and per-block data, the
// main data, and the replication origin and top-level xid headers. It is the
// Go counterpart of xlogreader.c's DecodeXLogRecord and RestoreBlockImage.
//
// The framing layer (package wal) finds where records begin and end and
// checks their CRC; this package looks inside one whole record. What the
// resource managers put in the main data and block data is left to their
// consumers (the pageserver's ingest).
//
// Guarantees:
//   - Decode accepts exactly the records xlogreader.c's DecodeXLogRecord
//     accepts, and reports the same layout; it never panics, whatever the
//     bytes. Every error names the record's LSN and matches ErrMalformed.
//   - Nothing is copied: block data, images and main data alias the record
//     bytes given to Decode, so they are valid as long as those bytes are.
//   - DecodeInto allocates nothing once the Record's Blocks slice has grown
//     to the record's block count.
//   - BlockImage.Page rebuilds the page RestoreBlockImage would, and fails
//     (rather than writing a wrong or short page) wherever the image's
//     length, hole or compressed stream does not describe exactly one page.
package walrecord

import (
	"encoding/binary"
	"errors"
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// BlockSize is BLCKSZ, the size of a relation page.
const BlockSize = 8192

// Block ids and the reserved ids of the other headers (access/xlogrecord.h).
const (
	XLR_MAX_BLOCK_ID          = 32
	XLR_BLOCK_ID_DATA_SHORT   = 255
	XLR_BLOCK_ID_DATA_LONG    = 254
	XLR_BLOCK_ID_ORIGIN       = 253
	XLR_BLOCK_ID_TOPLEVEL_XID = 252
)

// XLogRecordBlockHeader.fork_flags.
const (
	BKPBLOCK_FORK_MASK = 0x0F
	BKPBLOCK_HAS_IMAGE = 0x10
	BKPBLOCK_HAS_DATA  = 0x20
	BKPBLOCK_WILL_INIT = 0x40
	BKPBLOCK_SAME_REL  = 0x80
)

// XLogRecordBlockImageHeader.bimg_info, PostgreSQL 15 values (14 differs).
const (
	BKPIMAGE_HAS_HOLE      = 0x01
	BKPIMAGE_APPLY         = 0x02
	BKPIMAGE_COMPRESS_PGLZ = 0x04
	BKPIMAGE_COMPRESS_LZ4  = 0x08
	BKPIMAGE_COMPRESS_ZSTD = 0x10

	bkpimageCompressed = BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD
)

// Fork numbers (ForkNumber). Only ForkMain is typed, so the others also
// serve where an int is wanted; all compare with BlockRef.Fork.
const (
	ForkMain uint8 = 0
	ForkFSM        = 1
	ForkVM         = 2
	ForkInit       = 3
)

// ErrMalformed matches every error of Decode and BlockImage.Page: the record
// or image is not one PostgreSQL could have written.
var ErrMalformed = errors.New("malformed WAL record")

// DecodeError is the error type of Decode.
type DecodeError struct {
	LSN lsn.LSN // start of the record
	Msg string  // what is wrong
}

func (e *DecodeError) Error() string { return fmt.Sprintf("WAL record at %s: %s", e.LSN, e.Msg) }

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

func malformed(at lsn.LSN, format string, args ...any) error {
	return &DecodeError{LSN: at, Msg: fmt.Sprintf(format, args...)}
}

// RelFileNode names a relation's files: tablespace, database and relfilenode.
type RelFileNode struct{ Spc, DB, Rel uint32 }

// BlockRef is one block reference of a record (DecodedBkpBlock).
type BlockRef struct {
	ID       uint8 // block id, 0 to XLR_MAX_BLOCK_ID
	Rel      RelFileNode
	Fork     uint8 // as stored, 0 to 15: PostgreSQL 15 defines 0 to ForkInit, nothing checks more
	Blkno    uint32
	WillInit bool // BKPBLOCK_WILL_INIT: redo initialises the page from scratch
	HasImage bool
	Image    BlockImage // valid if HasImage
	HasData  bool
	Data     []byte // the block's data; aliases the record; nil unless HasData
}

// Record is a decoded WAL record.
type Record struct {
	// StartLSN and EndLSN are as wal.Record has them: where the record
	// starts and where the next one does.
	StartLSN, EndLSN lsn.LSN
	Header           wal.RecordHeader
	// Blocks are the block references in increasing ID order. IDs need not
	// be consecutive.
	Blocks []BlockRef
	// MainData aliases the record; nil if the record has none.
	MainData    []byte
	HasOrigin   bool
	Origin      uint16 // replication origin, if HasOrigin
	ToplevelXID uint32 // 0 (InvalidTransactionId) if absent
	Raw         []byte // the whole record, as given
}

// Block returns the block reference with the given id, or nil.
func (r *Record) Block(id uint8) *BlockRef {
	for i := range r.Blocks {
		if r.Blocks[i].ID == id {
			return &r.Blocks[i]
		}
	}
	return nil
}

// RmInfo is the resource manager's half of xl_info (XLogRecGetInfo with
// XLR_INFO_MASK cleared), the value resource managers switch on.
func (r *Record) RmInfo() uint8 { return r.Header.Info &^ wal.XLR_INFO_MASK }

// FPILen is the number of bytes of full-page images stored in the record.
// pg_waldump's "rec" length is Header.TotLen - FPILen().
func (r *Record) FPILen() uint32 {
	var n uint32
	for i := range r.Blocks {
		if r.Blocks[i].HasImage {
			n += uint32(len(r.Blocks[i].Image.Bytes))
		}
	}
	return n
}

// Decode parses a complete record: raw is wal.Record.Data (the whole record,
// header included, CRC already checked), start and end its LSNs. It never
// panics; a malformed body gives a *DecodeError saying what is wrong and at
// which LSN.
func Decode(raw []byte, start, end lsn.LSN) (Record, error) {
	var r Record
	err := DecodeInto(&r, raw, start, end)
	return r, err
}

// DecodeInto is Decode into *r, reusing r.Blocks' storage: the ingest hot
// path decodes every record into the same Record without allocating. On
// error *r is unspecified (but keeps its Blocks storage for the next call).
func DecodeInto(r *Record, raw []byte, start, end lsn.LSN) error {
	*r = Record{StartLSN: start, EndLSN: end, Raw: raw, Blocks: r.Blocks[:0]}
	hdr, err := wal.DecodeRecordHeader(raw)
	if err != nil {
		return malformed(start, "%d bytes, shorter than a record header", len(raw))
	}
	r.Header = hdr
	if uint64(hdr.TotLen) != uint64(len(raw)) {
		return malformed(start, "xl_tot_len %d, but the record has %d bytes", hdr.TotLen, len(raw))
	}
	return decodeBody(r, raw[wal.RecordHeaderSize:])
}

// decodeBody follows DecodeXLogRecord: headers until the bytes left equal
// the data they announce, then the data in block order, then the main data.
func decodeBody(r *Record, p []byte) error {
	at := r.StartLSN
	var (
		datatotal uint64 // data announced by the headers read so far
		mainLen   uint64
		maxID     = -1
		haveRel   bool // a previous block named a relation (for SAME_REL)
		lastRel   RelFileNode
		// Lengths of each block's image and data, by position in r.Blocks.
		imgLen, dataLen [XLR_MAX_BLOCK_ID + 1]uint16
	)
	short := func(what string) error {
		return malformed(at, "record with invalid length: %s cut short", what)
	}
headers:
	for uint64(len(p)) > datatotal {
		id := p[0]
		p = p[1:]
		switch {
		case id == XLR_BLOCK_ID_DATA_SHORT:
			if len(p) < 1 {
				return short("main data header")
			}
			mainLen = uint64(p[0])
			p = p[1:]
			datatotal += mainLen
			break headers // by convention the main data header is last
		case id == XLR_BLOCK_ID_DATA_LONG:
			if len(p) < 4 {
				return short("main data header")
			}
			mainLen = uint64(binary.LittleEndian.Uint32(p))
			p = p[4:]
			datatotal += mainLen
			break headers
		case id == XLR_BLOCK_ID_ORIGIN:
			if len(p) < 2 {
				return short("origin header")
			}
			r.HasOrigin, r.Origin = true, binary.LittleEndian.Uint16(p)
			p = p[2:]
		case id == XLR_BLOCK_ID_TOPLEVEL_XID:
			if len(p) < 4 {
				return short("top-level xid header")
			}
			r.ToplevelXID = binary.LittleEndian.Uint32(p)
			p = p[4:]
		case id <= XLR_MAX_BLOCK_ID:
			if int(id) <= maxID {
				return malformed(at, "out-of-order block_id %d (after %d)", id, maxID)
			}
			maxID = int(id)
			if len(p) < 3 {
				return short(fmt.Sprintf("block %d header", id))
			}
			flags := p[0]
			dlen := binary.LittleEndian.Uint16(p[1:])
			p = p[3:]
			b := BlockRef{
				ID:       id,
				Fork:     flags & BKPBLOCK_FORK_MASK,
				WillInit: flags&BKPBLOCK_WILL_INIT != 0,
				HasImage: flags&BKPBLOCK_HAS_IMAGE != 0,
				HasData:  flags&BKPBLOCK_HAS_DATA != 0,
			}
			if b.HasData && dlen == 0 {
				return malformed(at, "block %d: BKPBLOCK_HAS_DATA set, but no data included", id)
			}
			if !b.HasData && dlen != 0 {
				return malformed(at, "block %d: BKPBLOCK_HAS_DATA not set, but data length is %d", id, dlen)
			}
			datatotal += uint64(dlen)
			var ilen uint16
			if b.HasImage {
				var err error
				if ilen, p, err = decodeImageHeader(&b.Image, p); err != nil {
					return malformed(at, "block %d: %v", id, err)
				}
				datatotal += uint64(ilen)
			}
			if flags&BKPBLOCK_SAME_REL == 0 {
				if len(p) < 12 {
					return short(fmt.Sprintf("block %d relation", id))
				}
				lastRel = RelFileNode{
					Spc: binary.LittleEndian.Uint32(p),
					DB:  binary.LittleEndian.Uint32(p[4:]),
					Rel: binary.LittleEndian.Uint32(p[8:]),
				}
				haveRel = true
				p = p[12:]
			} else if !haveRel {
				return malformed(at, "block %d: BKPBLOCK_SAME_REL set but no previous rel", id)
			}
			b.Rel = lastRel
			if len(p) < 4 {
				return short(fmt.Sprintf("block %d block number", id))
			}
			b.Blkno = binary.LittleEndian.Uint32(p)
			p = p[4:]
			imgLen[len(r.Blocks)], dataLen[len(r.Blocks)] = ilen, dlen
			r.Blocks = append(r.Blocks, b)
		default:
			return malformed(at, "invalid block_id %d", id)
		}
	}
	if uint64(len(p)) != datatotal {
		return malformed(at, "record with invalid length: headers announce %d bytes of data, %d follow", datatotal, len(p))
	}

	// The data area: each block's image then its data, then the main data.
	// The check above guarantees the slicing stays in bounds.
	for i := range r.Blocks {
		b := &r.Blocks[i]
		if n := imgLen[i]; b.HasImage {
			b.Image.Bytes = p[:n:n]
			p = p[n:]
		}
		if n := dataLen[i]; n > 0 {
			b.Data = p[:n:n]
			p = p[n:]
		}
	}
	if mainLen > 0 {
		r.MainData = p[:mainLen:mainLen]
	}
	return nil
}

// decodeImageHeader reads XLogRecordBlockImageHeader (and the compressed
// hole length) into im, with xlogreader.c's consistency checks, and returns
// the stored image length and the rest of p.
func decodeImageHeader(im *BlockImage, p []byte) (uint16, []byte, error) {
	if len(p) < 5 {
		return 0, p, errors.New("record with invalid length: image header cut short")
	}
	ilen := binary.LittleEndian.Uint16(p)
	im.HoleOffset = binary.LittleEndian.Uint16(p[2:])
	im.Info = p[4]
	p = p[5:]
	hasHole := im.Info&BKPIMAGE_HAS_HOLE != 0
	compressed := im.Info&bkpimageCompressed != 0
	switch {
	case compressed && hasHole:
		if len(p) < 2 {
			return 0, p, errors.New("record with invalid length: image hole length cut short")
		}
		im.HoleLength = binary.LittleEndian.Uint16(p)
		p = p[2:]
	case compressed:
		im.HoleLength = 0
	default:
		// As in C, with uint16 arithmetic: a length beyond BLCKSZ wraps and
		// is caught by Page, exactly where RestoreBlockImage would misbehave.
		im.HoleLength = BlockSize - ilen
	}
	if hasHole && (im.HoleOffset == 0 || im.HoleLength == 0 || ilen == BlockSize) {
		return 0, p, fmt.Errorf("BKPIMAGE_HAS_HOLE set, but hole offset %d length %d block image length %d",
			im.HoleOffset, im.HoleLength, ilen)
	}
	if !hasHole && (im.HoleOffset != 0 || im.HoleLength != 0) {
		return 0, p, fmt.Errorf("BKPIMAGE_HAS_HOLE not set, but hole offset %d length %d",
			im.HoleOffset, im.HoleLength)
	}
	if compressed && ilen == BlockSize {
		return 0, p, fmt.Errorf("BKPIMAGE_COMPRESSED set, but block image length %d", ilen)
	}
	if !hasHole && !compressed && ilen != BlockSize {
		return 0, p, fmt.Errorf("neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is %d", ilen)
	}
	return ilen, p, nil
}
