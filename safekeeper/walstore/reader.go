package walstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

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

	pos  lsn.LSN
	file *os.File
	seg  uint64
}

// ReaderOptions describe the timeline a Reader reads.
type ReaderOptions struct {
	Dir              string
	SegSize          uint64
	PgVersion        uint32
	SystemID         uint64
	TimelineStartLSN lsn.LSN
	LocalStartLSN    lsn.LSN
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
		timelineStart: o.TimelineStartLSN, localStart: o.LocalStartLSN, pos: start,
	}, nil
}

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
	seg := r.pos.SegmentNumber(r.segSize)
	if r.file == nil || r.seg != seg {
		if r.file != nil {
			r.file.Close()
			r.file = nil
		}
		f, err := openSegment(r.dir, seg, r.segSize)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("%w: %s at %v", ErrSegmentMissing, wal.SegmentFileName(1, seg, r.segSize), r.pos)
		}
		if err != nil {
			return 0, err
		}
		r.file, r.seg = f, seg
	}
	n, err := r.file.ReadAt(p, int64(r.pos.SegmentOffset(r.segSize)))
	if n == len(p) {
		err = nil
	}
	r.pos += lsn.LSN(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("WAL segment %s is shorter than the segment size", r.file.Name())
		}
		return n, fmt.Errorf("read WAL segment %s: %w", r.file.Name(), err)
	}
	return n, nil
}

// Close releases the open segment.
func (r *Reader) Close() error {
	if r.file != nil {
		err := r.file.Close()
		r.file = nil
		return err
	}
	return nil
}
