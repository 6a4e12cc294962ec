// The streaming record-boundary decoder of SK §4.5 and PS §2.3.
//
// Guarantees:
//   - Every Record returned is whole, its CRC matches, and every page header
//     from its start to its end was validated: magic, xlp_pageaddr, long-header
//     segment and page sizes, and the XLP_FIRST_IS_CONTRECORD / xlp_rem_len
//     rules. Consecutive records are also checked to be chained by xl_prev.
//   - Record.EndLSN is Neon's record "end LSN": where the next record starts,
//     i.e. the physical end aligned up to 8, or the next segment boundary after
//     XLOG_SWITCH. The bytes between (padding) are skipped unparsed, as Neon does.
//   - Splitting the same bytes into different Feed calls yields the same
//     records and the same error.
//   - Next never reads past what was fed and always makes progress: it returns
//     a record, or reports that it needs more bytes after absorbing all that
//     was fed, or fails. A failure is sticky until Reset.
//   - Fed bytes are not copied. Only a record that spans pages or Feed calls is
//     reassembled, and only by a decoder made with NewDecoder; a boundary
//     decoder keeps constant memory.
package wal

import (
	"encoding/binary"
	"hash/crc32"
	"slices"

	"strata.dev/libs/lsn"
)

// Record is one WAL record found by a Decoder.
type Record struct {
	// StartLSN is where the record's header begins.
	StartLSN lsn.LSN
	// EndLSN is where the next record begins: the end aligned to 8, or the
	// next segment start after XLOG_SWITCH. It is the LSN the safekeeper
	// reports as flush/write_record_lsn and the pageserver stores values at.
	EndLSN lsn.LSN
	// Header is the decoded XLogRecord header.
	Header RecordHeader
	// Data is the whole record, header included, without page headers. It
	// aliases the fed bytes or the decoder's reassembly buffer and is valid
	// until the next call to Next, Feed or Reset; copy it to keep it. It is
	// nil for a boundary decoder.
	Data []byte
}

type decoderState uint8

const (
	// stWaiting: the next byte (after any page header) starts a record.
	stWaiting decoderState = iota
	// stReassembling: inside a record that is not contiguous in the input.
	stReassembling
	// stSkipping: discarding padding up to skipUntil without parsing it.
	stSkipping
)

// maxRetainedBuf bounds the reassembly buffer kept between records, so one
// huge record does not pin its memory for the life of the decoder.
const maxRetainedBuf = 1 << 20

// Decoder finds WAL records in a byte stream fed to it piece by piece.
//
// Typical use, on every chunk received or read:
//
//	d.Feed(chunk)
//	for {
//		rec, ok, err := d.Next()
//		if err != nil { ... }      // IsEndOfWAL(err) for zeros, else corruption
//		if !ok { break }            // chunk fully absorbed; it may be reused
//		... rec.EndLSN ...
//	}
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	segSize  uint64
	magic    uint16
	keepData bool
	cfgErr   error // bad version or segment size, reported by every Next

	lsn lsn.LSN // position of in[0]
	in  []byte  // fed and not yet consumed

	st        decoderState
	skipUntil lsn.LSN

	// A page header that arrived in pieces: hdrHave bytes of it are in hdr
	// and lsn is already past them.
	hdr     [LongPageHeaderSize]byte
	hdrHave int

	// firstPage is set when decoding starts at a page boundary and that
	// page's header is still to come: then a record continued from before the
	// start is skipped, as PostgreSQL's XLogFindNextRecord does.
	firstPage bool

	rec partialRecord
	buf []byte // the record being reassembled, when keepData

	prev lsn.LSN // start of the last record returned; Invalid if none yet
	err  error   // sticky

	carry, spare []byte // own copies, only when Feed is called before draining
}

// partialRecord is the record being reassembled.
type partialRecord struct {
	start    lsn.LSN
	totLen   uint32 // valid once lenKnown
	lenKnown bool   // the 4 bytes of xl_tot_len have arrived
	have     uint32 // bytes seen so far
	hdr      [RecordHeaderSize]byte
	crc      uint32 // CRC-32C of the body bytes seen so far
	discard  bool   // tail of a record begun before the decoder's start
}

// NewDecoder returns a decoder whose records carry their bytes (Data), for
// consumers that interpret records, like the pageserver. start must be a
// record boundary: a record's start or end LSN (an unaligned end is padded up
// to 8), or a page start. pgVersion is a major version or PG_VERSION_NUM.
// An unsupported version, invalid segSize or a start inside a page header is
// reported by the first Next.
func NewDecoder(start lsn.LSN, pgVersion uint32, segSize uint64) *Decoder {
	return newDecoder(start, pgVersion, segSize, true)
}

// NewBoundaryDecoder is NewDecoder for consumers that only need record
// boundaries, like the safekeeper: records have nil Data, and records
// spanning pages are checked (CRC included) without being reassembled, so
// nothing is copied at all.
func NewBoundaryDecoder(start lsn.LSN, pgVersion uint32, segSize uint64) *Decoder {
	return newDecoder(start, pgVersion, segSize, false)
}

func newDecoder(start lsn.LSN, pgVersion uint32, segSize uint64, keepData bool) *Decoder {
	d := &Decoder{segSize: segSize, keepData: keepData}
	d.magic, d.cfgErr = PageMagic(pgVersion)
	if d.cfgErr == nil {
		d.cfgErr = ValidateSegmentSize(segSize)
	}
	d.Reset(start)
	return d
}

// Reset restarts decoding at start, dropping all fed bytes and state but
// keeping buffers, as when the safekeeper's append position jumps.
func (d *Decoder) Reset(start lsn.LSN) {
	*d = Decoder{
		segSize: d.segSize, magic: d.magic, keepData: d.keepData, cfgErr: d.cfgErr,
		buf: d.buf[:0], carry: d.carry[:0], spare: d.spare[:0],
		lsn: start, err: d.cfgErr,
	}
	if d.err != nil {
		return
	}
	if off := start.PageOffset(); off != 0 && off < uint64(pageHeaderSizeAt(start.PageStart(), d.segSize)) {
		d.err = corruptAt(start, "decoder start %s is inside a page header", start)
		return
	}
	d.firstPage = start.IsPageStart()
	if a := start.Align8(); a != start {
		d.st, d.skipUntil = stSkipping, a
	}
}

// FedLSN is the LSN at which the next Feed continues the stream.
func (d *Decoder) FedLSN() lsn.LSN { return d.lsn + lsn.LSN(len(d.in)) }

// Feed appends b to the stream. b is not copied: it must stay unchanged until
// Next has reported that it needs more bytes (or failed). Feeding again
// before that is allowed but costs a copy. After an error Feed does nothing.
func (d *Decoder) Feed(b []byte) {
	if len(b) == 0 || d.err != nil {
		return
	}
	if len(d.in) == 0 {
		d.in = b
		return
	}
	buf := append(d.spare[:0], d.in...)
	buf = append(buf, b...)
	d.spare, d.carry = d.carry, buf
	d.in = buf
}

// Next returns the next complete record. ok is false when the fed bytes are
// used up (everything fed has been absorbed, so the caller may reuse it). An
// error is a *DecodeError matching ErrEndOfWAL or ErrCorrupt, or a
// configuration error from NewDecoder; it is returned again by every later
// call until Reset.
func (d *Decoder) Next() (rec Record, ok bool, err error) {
	if d.err != nil {
		return Record{}, false, d.err
	}
	rec, ok, err = d.next()
	if err != nil {
		d.err = err
	} else if !ok {
		d.in = nil
	}
	return rec, ok, err
}

func (d *Decoder) next() (Record, bool, error) {
	for {
		switch {
		case d.st == stSkipping:
			gap := d.skipUntil.Sub(d.lsn)
			if gap > uint64(len(d.in)) {
				d.advance(len(d.in))
				return Record{}, false, nil
			}
			d.advance(int(gap))
			d.st = stWaiting
			continue
		case d.hdrHave > 0 || d.lsn.IsPageStart():
			if len(d.in) == 0 {
				return Record{}, false, nil
			}
			if err := d.readPageHeader(); err != nil {
				return Record{}, false, err
			}
			continue
		case len(d.in) == 0:
			return Record{}, false, nil
		}

		pageLeft := lsn.PageSize - d.lsn.PageOffset()
		if d.st == stWaiting {
			if len(d.in) >= 4 {
				totLen := binary.LittleEndian.Uint32(d.in)
				if err := checkTotLen(totLen, d.lsn); err != nil {
					return Record{}, false, err
				}
				// The common case: the record lies whole in the input and on
				// this page, so it is checked where it lies.
				if uint64(totLen) <= pageLeft && uint64(totLen) <= uint64(len(d.in)) {
					start, data := d.lsn, d.in[:totLen:totLen]
					d.advance(int(totLen))
					crc := crc32.Update(0, castagnoli, data[RecordHeaderSize:])
					if !d.keepData {
						return d.complete(start, nil, data, crc)
					}
					return d.complete(start, data, data, crc)
				}
			}
			d.beginRecord()
		}

		r := &d.rec
		want := uint64(4 - r.have)
		if r.lenKnown {
			want = uint64(r.totLen - r.have)
		}
		n := min(want, pageLeft, uint64(len(d.in)))
		d.absorb(d.in[:n])
		d.advance(int(n))
		if !r.lenKnown {
			if r.have < 4 {
				continue
			}
			r.totLen, r.lenKnown = binary.LittleEndian.Uint32(r.hdr[:]), true
			if err := checkTotLen(r.totLen, r.start); err != nil {
				return Record{}, false, err
			}
			if d.keepData {
				d.buf = slices.Grow(d.buf, max(0, int(min(r.totLen, maxRetainedBuf))-len(d.buf)))
			}
		}
		if r.have == r.totLen {
			if r.discard {
				d.setNext(d.lsn.Align8())
				continue
			}
			var data []byte
			if d.keepData {
				data = d.buf
			}
			return d.complete(r.start, data, r.hdr[:], r.crc)
		}
	}
}

func (d *Decoder) advance(n int) {
	d.in = d.in[n:]
	d.lsn += lsn.LSN(n)
}

// setNext moves to waiting for a record at next, skipping padding first.
func (d *Decoder) setNext(next lsn.LSN) {
	if next > d.lsn {
		d.st, d.skipUntil = stSkipping, next
	} else {
		d.st = stWaiting
	}
}

func checkTotLen(totLen uint32, at lsn.LSN) error {
	switch {
	case totLen == 0:
		return endAt(at, "record at %s: xl_tot_len 0", at)
	case totLen < RecordHeaderSize:
		return corruptAt(at, "record at %s: xl_tot_len %d, want at least %d", at, totLen, RecordHeaderSize)
	case totLen > MaxRecordSize:
		return corruptAt(at, "record at %s: xl_tot_len %d exceeds the maximum %d", at, totLen, MaxRecordSize)
	}
	return nil
}

// beginRecord starts reassembling a record at the current position.
func (d *Decoder) beginRecord() {
	d.st = stReassembling
	d.rec = partialRecord{start: d.lsn}
	if cap(d.buf) > maxRetainedBuf {
		d.buf = nil
	}
	d.buf = d.buf[:0]
}

// absorb takes the next piece of the record being reassembled.
func (d *Decoder) absorb(p []byte) {
	r := &d.rec
	if !r.discard {
		if d.keepData {
			d.buf = append(d.buf, p...)
		}
		body := p
		if r.have < RecordHeaderSize {
			body = p[copy(r.hdr[r.have:], p):]
		}
		if len(body) > 0 {
			r.crc = crc32.Update(r.crc, castagnoli, body)
		}
	}
	r.have += uint32(len(p))
}

// complete checks a whole record and moves past it. hdr holds its first 24
// bytes and bodyCRC the CRC of the rest.
func (d *Decoder) complete(start lsn.LSN, data, hdr []byte, bodyCRC uint32) (Record, bool, error) {
	h := decodeRecordHeader(hdr)
	if got := finishCRC(bodyCRC, hdr); got != h.CRC {
		return Record{}, false, corruptAt(start, "record at %s: CRC mismatch: computed %08X, stored %08X", start, got, h.CRC)
	}
	if d.prev.IsValid() && h.Prev != d.prev {
		return Record{}, false, corruptAt(start, "record at %s: xl_prev %s, want %s", start, h.Prev, d.prev)
	}
	next := d.lsn.Align8()
	if h.IsSwitch() {
		// The rest of the segment is padding (PostgreSQL pretends the record
		// extends to the segment end).
		next = (d.lsn + lsn.LSN(d.segSize-1)).SegmentStart(d.segSize)
	}
	d.prev = start
	d.setNext(next)
	return Record{StartLSN: start, EndLSN: next, Header: h, Data: data}, true, nil
}

// readPageHeader consumes (part of) the page header at the current page
// start and validates it once whole.
func (d *Decoder) readPageHeader() error {
	pageStart := d.lsn - lsn.LSN(d.hdrHave)
	size := pageHeaderSizeAt(pageStart, d.segSize)
	if d.hdrHave == 0 && len(d.in) >= size {
		if err := d.checkPageHeader(d.in[:size], pageStart); err != nil {
			return err
		}
		d.advance(size)
		return nil
	}
	n := copy(d.hdr[d.hdrHave:size], d.in)
	d.hdrHave += n
	d.advance(n)
	if d.hdrHave < size {
		return nil
	}
	d.hdrHave = 0
	return d.checkPageHeader(d.hdr[:size], pageStart)
}

// checkPageHeader validates the header raw found at pageStart against the
// decoder's state, and applies what it says about a continued record.
func (d *Decoder) checkPageHeader(raw []byte, pageStart lsn.LSN) error {
	firstPage := d.firstPage
	d.firstPage = false
	r := &d.rec
	inRecord := d.st == stReassembling
	if isZero(raw) {
		if inRecord && !r.discard {
			return endAt(pageStart, "page at %s: header is zero inside record at %s", pageStart, r.start)
		}
		return endAt(pageStart, "page at %s: header is zero", pageStart)
	}
	// Where the long form is read from is decided by position, not by the
	// header's own (possibly wrong) XLP_LONG_HEADER bit.
	long := len(raw) == LongPageHeaderSize
	h := decodePageHeader(raw, long)
	switch {
	case h.Magic != d.magic:
		return corruptAt(pageStart, "invalid page header at %s: magic %04X, want %04X", pageStart, h.Magic, d.magic)
	case h.Info&^XLP_ALL_FLAGS != 0:
		return corruptAt(pageStart, "invalid page header at %s: info bits %04X", pageStart, h.Info)
	case h.IsLong() != long:
		want := "clear"
		if long {
			want = "set on a segment's first page"
		}
		return corruptAt(pageStart, "invalid page header at %s: info %04X, want XLP_LONG_HEADER %s", pageStart, h.Info, want)
	case h.PageAddr != pageStart:
		return corruptAt(pageStart, "invalid page header at %s: pageaddr %s, want %s", pageStart, h.PageAddr, pageStart)
	case long && uint64(h.SegSize) != d.segSize:
		return corruptAt(pageStart, "invalid page header at %s: xlp_seg_size %d, want %d", pageStart, h.SegSize, d.segSize)
	case long && h.XLogBlcksz != lsn.PageSize:
		return corruptAt(pageStart, "invalid page header at %s: xlp_xlog_blcksz %d, want %d", pageStart, h.XLogBlcksz, lsn.PageSize)
	}

	cont := h.Info&XLP_FIRST_IS_CONTRECORD != 0
	switch {
	case inRecord && !cont && h.Info&XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 && !r.discard:
		// The record's continuation was lost in a crash and PostgreSQL wrote
		// new WAL over it: the partial record never existed (xlogreader.c
		// restarts the same way). xl_prev of what follows points before it.
		d.st = stWaiting
	case inRecord && !cont:
		return corruptAt(pageStart, "invalid page header at %s: XLP_FIRST_IS_CONTRECORD not set, but record at %s continues",
			pageStart, r.start)
	case inRecord && h.RemLen != r.totLen-r.have:
		return corruptAt(pageStart, "invalid page header at %s: rem_len %d, want %d (record at %s)",
			pageStart, h.RemLen, r.totLen-r.have, r.start)
	case inRecord:
	case cont && firstPage:
		// Decoding starts here, in the tail of an earlier record: skip it.
		if h.RemLen > 0 {
			d.st = stReassembling
			d.rec = partialRecord{start: pageStart, totLen: h.RemLen, lenKnown: true, discard: true}
		}
	case cont:
		return corruptAt(pageStart, "invalid page header at %s: XLP_FIRST_IS_CONTRECORD set between records", pageStart)
	case h.RemLen != 0:
		return corruptAt(pageStart, "invalid page header at %s: rem_len %d between records", pageStart, h.RemLen)
	}
	return nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
