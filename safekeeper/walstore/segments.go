package walstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// segmentFile is a WAL segment file found in a timeline directory.
type segmentFile struct {
	name    string
	segno   uint64
	partial bool
}

// listSegments returns the segment files in dir sorted by segment number.
func listSegments(dir string, segSize uint64) ([]segmentFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list WAL segments: %w", err)
	}
	var out []segmentFile
	for _, e := range entries {
		tli, segno, partial, err := wal.ParseSegmentFileName(e.Name(), segSize)
		if err != nil || tli != 1 {
			continue
		}
		out = append(out, segmentFile{name: e.Name(), segno: segno, partial: partial})
	}
	slices.SortFunc(out, func(a, b segmentFile) int {
		switch {
		case a.segno < b.segno:
			return -1
		case a.segno > b.segno:
			return 1
		}
		return 0
	})
	return out, nil
}

// openSegment opens segment segno for reading: the .partial file first, then
// the complete one (SK §4.2). It returns fs.ErrNotExist (wrapped) if neither exists.
func openSegment(dir string, segno, segSize uint64) (*os.File, error) {
	name := wal.SegmentFileName(1, segno, segSize)
	// A rename from .partial to the final name can happen between the two
	// attempts; one more round covers it.
	for attempt := 0; attempt < 2; attempt++ {
		for _, n := range []string{name + ".partial", name} {
			f, err := os.Open(filepath.Join(dir, n))
			if err == nil {
				return f, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("open WAL segment %s: %w", n, err)
			}
		}
	}
	return nil, fmt.Errorf("WAL segment %s: %w", name, fs.ErrNotExist)
}

// FindEndOfWAL returns the end of the last complete, intact record, decoding
// forward from start, a record boundary known to be durable (SK §4.5). It
// never returns less than start.
//
// Restart time must not grow with the WAL kept, so when start lies further
// back the scan begins at the first record of the segment before the last
// one instead: that segment is complete and was fsync'd before the last one
// got its first byte, so its records are durable, and starting there lets
// the record that crosses into the last segment be fully checked. At most
// two segments are read.
func FindEndOfWAL(dir string, segSize uint64, pgVersion uint32, start lsn.LSN) (lsn.LSN, error) {
	segs, err := listSegments(dir, segSize)
	if err != nil {
		return 0, err
	}
	if len(segs) == 0 {
		return start, nil
	}
	from := start
	last := segs[len(segs)-1].segno
	for s := last - 1; last > 0 && s > start.SegmentNumber(segSize); s-- {
		b, ok, err := firstRecordStart(dir, s, segSize, pgVersion)
		if err != nil {
			return 0, err
		}
		if ok {
			from = max(b, start)
			break
		}
	}
	return scanForward(dir, segSize, pgVersion, from)
}

// scanForward decodes records from start until the WAL ends or stops making sense.
func scanForward(dir string, segSize uint64, pgVersion uint32, start lsn.LSN) (lsn.LSN, error) {
	result := start
	pos := start
	dec := wal.NewBoundaryDecoder(start, pgVersion, segSize)
	buf := make([]byte, lsn.PageSize)
	for {
		segno := pos.SegmentNumber(segSize)
		f, err := openSegment(dir, segno, segSize)
		if errors.Is(err, fs.ErrNotExist) {
			return result, nil
		}
		if err != nil {
			return 0, err
		}
		if _, err := f.Seek(int64(pos.SegmentOffset(segSize)), io.SeekStart); err != nil {
			f.Close()
			return 0, fmt.Errorf("find end of WAL: seek: %w", err)
		}
		segEnd := lsn.SegmentLSN(segno+1, 0, segSize)
		for pos < segEnd {
			n, err := f.Read(buf[:min(uint64(len(buf)), uint64(segEnd-pos))])
			if n == 0 || errors.Is(err, io.EOF) {
				f.Close()
				return result, nil
			}
			if err != nil {
				f.Close()
				return 0, fmt.Errorf("find end of WAL: read %s: %w", f.Name(), err)
			}
			pos += lsn.LSN(n)
			dec.Feed(buf[:n])
			for {
				rec, ok, err := dec.Next()
				if err != nil {
					// Zeros or garbage: the WAL ends at the last good record.
					f.Close()
					return result, nil
				}
				if !ok {
					break
				}
				result = rec.EndLSN
			}
		}
		f.Close()
	}
}

// firstRecordStart finds where the first record that begins in segment segno
// starts, by reading the segment's page headers past a record continued from
// the previous segment. ok is false if the segment holds no record start.
func firstRecordStart(dir string, segno, segSize uint64, pgVersion uint32) (lsn.LSN, bool, error) {
	magic, err := wal.PageMagic(pgVersion)
	if err != nil {
		return 0, false, err
	}
	f, err := openSegment(dir, segno, segSize)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	page := lsn.SegmentLSN(segno, 0, segSize)
	segEnd := lsn.SegmentLSN(segno+1, 0, segSize)
	hdrBuf := make([]byte, wal.LongPageHeaderSize)
	var remaining uint64
	for first := true; page < segEnd; first = false {
		if _, err := f.ReadAt(hdrBuf, int64(page.SegmentOffset(segSize))); err != nil {
			return 0, false, nil
		}
		h, err := wal.DecodePageHeader(hdrBuf)
		if err != nil || h.Magic != magic || h.PageAddr != page || h.IsLong() != first {
			return 0, false, nil
		}
		cont := h.Info&wal.XLP_FIRST_IS_CONTRECORD != 0
		if first {
			if !cont {
				return page + lsn.LSN(h.Size()), true, nil
			}
			remaining = uint64(h.RemLen)
		} else if !cont || uint64(h.RemLen) != remaining {
			return 0, false, nil
		}
		body := uint64(lsn.PageSize - h.Size())
		if remaining <= body {
			return (page + lsn.LSN(uint64(h.Size())+remaining)).Align8(), true, nil
		}
		remaining -= body
		page += lsn.PageSize
	}
	return 0, false, nil
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
