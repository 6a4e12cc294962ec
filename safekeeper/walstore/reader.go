package walstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"strata.dev/libs/directio"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// Reader reads a timeline's WAL from its segment files for a WAL sender
// (SK §5.2). It is independent of the Store and may run concurrently with it:
// it only reads bytes the caller knows to be written (below the commit or
// flush LSN), and a segment renamed or removed while open stays readable.
type Reader struct {
	dir       string
	segSize   uint64
	pgVersion uint32
	systemID  uint64
	// timelineStart is where the timeline's WAL begins; bytes before it in its
	// segment are served from the synthetic image of SK §4.4.4.
	timelineStart lsn.LSN
	// localStart is where this safekeeper's WAL begins.
	localStart lsn.LSN
	// recent is the store's latest WAL in memory (nil: none).
	recent *Recent

	pos  lsn.LSN
	file *os.File
	seg  uint64
	// direct says file is open with O_DIRECT: reads then go through blk.
	direct bool
	// end bounds the WAL known to be written for good (SetEnd).
	end lsn.LSN
	// blk holds WAL read ahead from file: the bytes from blkStart to blkEnd.
	blk              []byte
	blkStart, blkEnd lsn.LSN
	// ahead is the read of the block after blk, in flight into spare.
	ahead *readAhead
	spare []byte
	// blockSize is readBlockSize; tests make it smaller than a segment.
	blockSize int
}

// readAhead is a direct read of the block after the current one, run while
// the caller sends the current one: a 1 MiB direct read waits ~0.75 ms for
// the device, which a sender catching a pageserver up would otherwise spend
// idle once per MiB.
type readAhead struct {
	start, valid lsn.LSN // the bytes it will hold, as blkStart and blkEnd
	done         chan bool
}

// readBlockSize is how much a reader reads ahead when it reads around the
// page cache.
const readBlockSize = 1 << 20

// ReaderOptions describe the timeline a Reader reads.
type ReaderOptions struct {
	Dir              string
	SegSize          uint64
	PgVersion        uint32
	SystemID         uint64
	TimelineStartLSN lsn.LSN
	LocalStartLSN    lsn.LSN
	// Recent is the Store's (Store.Recent): WAL found there is not read
	// from the files. Nil: everything comes from the files.
	Recent *Recent
}

// ErrSegmentMissing means the WAL at the requested position is not on this
// safekeeper (removed, or before its local start).
var ErrSegmentMissing = errors.New("WAL segment is not found")

// NewReader returns a reader positioned at start.
func NewReader(o ReaderOptions, start lsn.LSN) (*Reader, error) {
	if o.LocalStartLSN == 0 {
		return nil, fmt.Errorf("timeline state uninitialized: no WAL has been received yet")
	}
	if start < o.TimelineStartLSN.SegmentStart(o.SegSize) {
		return nil, fmt.Errorf("requested WAL position %v is before the timeline's first segment (timeline starts at %v)", start, o.TimelineStartLSN)
	}
	return &Reader{
		dir: o.Dir, segSize: o.SegSize, pgVersion: o.PgVersion, systemID: o.SystemID,
		timelineStart: o.TimelineStartLSN, localStart: o.LocalStartLSN, recent: o.Recent, pos: start, blockSize: readBlockSize,
	}, nil
}

// SetEnd tells the reader that the WAL below end is written and will not
// change (a commit LSN), so Read may read ahead up to it.
func (r *Reader) SetEnd(end lsn.LSN) { r.end = end }

// Pos is the position of the next byte Read returns.
func (r *Reader) Pos() lsn.LSN { return r.pos }

// Read fills p with WAL from Pos on, never crossing a segment boundary.
// The caller bounds len(p) by what is known to be written.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	segEnd := lsn.SegmentLSN(r.pos.SegmentNumber(r.segSize)+1, 0, r.segSize)
	p = p[:min(uint64(len(p)), uint64(segEnd-r.pos))]
	if r.pos < r.timelineStart {
		p = p[:min(uint64(len(p)), uint64(r.timelineStart-r.pos))]
		im := wal.InitialImage{Start: r.timelineStart, SystemID: r.systemID, PGVersion: r.pgVersion, SegSize: r.segSize}
		n, err := im.ReadAt(p, int64(r.pos.SegmentOffset(r.segSize)))
		r.pos += lsn.LSN(n)
		if err != nil {
			return n, fmt.Errorf("synthesize first segment: %w", err)
		}
		return n, nil
	}
	if r.pos < r.localStart && r.pos.SegmentNumber(r.segSize) != r.localStart.SegmentNumber(r.segSize) {
		return 0, fmt.Errorf("%w: WAL at %v precedes this safekeeper's local start %v", ErrSegmentMissing, r.pos, r.localStart)
	}
	if n := r.recent.readAt(p, r.pos); n > 0 {
		// Just written: no need to go to the disk.
		r.pos += lsn.LSN(n)
		return n, nil
	}
	seg := r.pos.SegmentNumber(r.segSize)
	if r.file == nil || r.seg != seg {
		if err := r.open(seg); err != nil {
			return 0, err
		}
	}
	if r.direct {
		n := 0
		for n < len(p) {
			if r.pos < r.blkStart || r.pos >= r.blkEnd {
				if err := r.readBlock(segEnd, r.pos+lsn.LSN(len(p)-n)); err != nil {
					return n, err
				}
			}
			k := copy(p[n:], r.blk[r.pos-r.blkStart:r.blkEnd-r.blkStart])
			n += k
			r.pos += lsn.LSN(k)
		}
		return n, nil
	}
	n, err := r.file.ReadAt(p, int64(r.pos.SegmentOffset(r.segSize)))
	if n == len(p) {
		err = nil
	}
	r.pos += lsn.LSN(n)
	if err != nil {
		return n, r.readError(err)
	}
	return n, nil
}

// open makes seg's file the one read, with O_DIRECT where the file system
// takes it: the store writes segments around the page cache (pagebuf.go),
// so a buffered read of recent WAL would fill the cache from disk anyway,
// at a CPU cost a direct read does not have.
func (r *Reader) open(seg uint64) error {
	r.waitAhead()
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
	r.blkStart, r.blkEnd = 0, 0
	f, err := openSegment(r.dir, seg, r.segSize)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s at %v", ErrSegmentMissing, wal.SegmentFileName(1, seg, r.segSize), r.pos)
	}
	if err != nil {
		return err
	}
	direct, err := directio.Enable(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("open WAL segment: %w", err)
	}
	r.file, r.seg, r.direct = f, seg, direct
	if direct && r.blk == nil {
		r.blk = directio.Buffer(r.blockSize)
	}
	return nil
}

// readBlock fills blk with whole pages from the one holding Pos, as far as
// the WAL known to be written (at least to want, at most to segEnd) goes.
// Bytes past that are never kept: they may still change.
func (r *Reader) readBlock(segEnd, want lsn.LSN) error {
	start := r.pos - r.pos%cachePage
	if a := r.ahead; a != nil {
		r.ahead = nil
		if <-a.done && a.start == start {
			r.blk, r.spare = r.spare, r.blk
			r.blkStart, r.blkEnd = a.start, a.valid
			r.readNextAhead(segEnd)
			return nil
		}
		// Failed or not what is wanted (a seek): read it here, where a
		// failure is reported.
	}
	valid := min(max(want, r.end), segEnd, start+lsn.LSN(r.blockSize))
	n := wholePages(int(valid - start))
	if got, err := r.file.ReadAt(r.blk[:n], int64(start.SegmentOffset(r.segSize))); got != n {
		return r.readError(err)
	}
	r.blkStart, r.blkEnd = start, valid
	r.readNextAhead(segEnd)
	return nil
}

// readNextAhead starts reading the block after blk into spare if more WAL
// of the segment is known to be written and not in memory (Recent). Not
// after a block that ends in the middle of a page: that page's tail may
// still change.
func (r *Reader) readNextAhead(segEnd lsn.LSN) {
	start := r.blkEnd
	valid := min(r.end, segEnd, start+lsn.LSN(r.blockSize))
	if from, ok := r.recent.heldFrom(); ok {
		valid = min(valid, max(from, start))
	}
	if start%cachePage != 0 || valid <= start {
		return
	}
	if r.spare == nil {
		r.spare = directio.Buffer(r.blockSize)
	}
	n := wholePages(int(valid - start))
	a := &readAhead{start: start, valid: valid, done: make(chan bool, 1)}
	f, buf, off := r.file, r.spare[:n], int64(start.SegmentOffset(r.segSize))
	go func() {
		got, _ := f.ReadAt(buf, off)
		a.done <- got == n
	}()
	r.ahead = a
}

// waitAhead waits for a read ahead in flight: its file and buffer are about
// to be closed or reused.
func (r *Reader) waitAhead() {
	if r.ahead != nil {
		<-r.ahead.done
		r.ahead = nil
	}
}

func (r *Reader) readError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("WAL segment %s is shorter than the segment size", r.file.Name())
	}
	return fmt.Errorf("read WAL segment %s: %w", r.file.Name(), err)
}

// Close releases the open segment.
func (r *Reader) Close() error {
	r.waitAhead()
	r.blkStart, r.blkEnd = 0, 0
	if r.file != nil {
		err := r.file.Close()
		r.file = nil
		return err
	}
	return nil
}
