// Package walstore keeps one timeline's WAL on a safekeeper's disk, the way
// SK §4.2–§4.5 lays it out: segment files of exactly wal_seg_size bytes named
// like PostgreSQL's, the one being written carrying a ".partial" suffix.
//
// Guarantees:
//   - Segment files are created full size (reading as zeros) through a
//     temporary file, fsync and rename, so a crash never leaves a
//     half-created segment under a real name. The next segment is prepared
//     in the background (preparer.go), so a write that crosses into it
//     rarely waits for the disk.
//   - Bytes after the end of the WAL in the last segment are zeros: a
//     truncation zeroes them durably before it returns.
//   - FlushRecordLSN only covers bytes that were fdatasync'ed and ends on a
//     record boundary: it is what an AppendResponse may promise.
//   - A completed segment is fdatasync'ed before it is renamed to its final
//     name and before any byte of the next segment is written.
//
// A Store is not safe for concurrent use; its timeline serializes calls.
// Readers of the WAL open the files themselves (reader.go).
package walstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"strata.dev/libs/directio"
	"strata.dev/libs/durable"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// writeBufferSize is how much WAL is gathered in memory before a write(2):
// small appends become few system calls, and a flush writes at most this much.
const writeBufferSize = 1 << 20

// cachePage is the unit of writes to a segment (pagebuf.go): the page size
// of the kernel's page cache and a multiple of any disk's logical block.
const cachePage = directio.Align

// ErrTruncationPending is returned by Write after a restart until the elected
// proposer's truncation has run (SK §4.4.2).
var ErrTruncationPending = errors.New("WAL write refused: truncation to the elected proposer's start point is pending")

// Options configure a Store.
type Options struct {
	Dir       string
	SegSize   uint64
	PgVersion uint32 // PG_VERSION_NUM of the timeline's server
	SystemID  uint64
	// NoSync turns every fsync into a no-op (tests only: unsafe).
	NoSync bool
	// Prealloc is how new segment files get their blocks (empty: zero).
	Prealloc Prealloc
	// Observer, if set, is told about writes and flushes (for metrics).
	Observer Observer
	// RawIO, shared by the process's stores, makes writes and flushes raw
	// system calls while the disk is fast; nil: ordinary ones.
	RawIO *RawIO
	// RecentSize is how many bytes of the latest WAL are kept in memory
	// for readers (see Recent); 0: none.
	RecentSize int
}

// Observer receives timings and volumes of disk operations.
type Observer interface {
	WALWritten(bytes int, d time.Duration)
	WALFlushed(d time.Duration)
}

// Store is the WAL of one timeline.
type Store struct {
	opts Options

	// writeLSN is the end of the WAL handed to Write (buffered or in the file).
	writeLSN lsn.LSN
	// writeRecordLSN is the end of the last complete record written.
	writeRecordLSN lsn.LSN
	// flushLSN is the end of the bytes known durable.
	flushLSN lsn.LSN
	// flushRecordLSN is the end of the last complete record ≤ flushLSN.
	flushRecordLSN lsn.LSN
	// pending is set after a restart (and during a truncation): no writes
	// until a truncation succeeds.
	pending bool

	file    *os.File // the .partial segment being written, or nil
	fileSeg uint64
	// buffered says the file is not open with O_DIRECT: the file system
	// refused it (tests set it to cover that case).
	buffered bool
	pb       pageBuffer // WAL on its way to file
	// dirtyEnd bounds the possibly non-zero bytes of the open segment. After a
	// restart it is unknown, and a truncation zeroes to the segment's end.
	dirtyEnd lsn.LSN

	dec    *wal.Decoder
	pre    *preparer
	recent *Recent
	// epoch changes with every truncation, so a flush prepared before one
	// cannot complete after it (see PrepareFlush).
	epoch uint64
}

// Open loads the WAL in opts.Dir, finding its end by decoding from start, a
// record boundary known to be durable (the persisted commit LSN or the local
// start LSN, whichever is higher); start 0 means there is no WAL yet. The
// store refuses writes until Truncate is called (SK §4.4.2).
func Open(opts Options, start lsn.LSN) (*Store, error) {
	if err := wal.ValidateSegmentSize(opts.SegSize); err != nil {
		return nil, err
	}
	if _, err := wal.PageMagic(opts.PgVersion); err != nil {
		return nil, err
	}
	if err := removeTempFiles(opts.Dir); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, pb: newPageBuffer(), recent: newRecent(opts.RecentSize)}
	prealloc, err := ParsePrealloc(string(opts.Prealloc))
	if err != nil {
		return nil, err
	}
	s.pre = newPreparer(opts.Dir, opts.SegSize, !opts.NoSync, prealloc)
	if start == 0 {
		// No durable WAL, but files may remain from a run that crashed
		// before it persisted a commit LSN: what they hold must not survive
		// the first truncation, or it could chain onto new records.
		segs, err := listSegments(opts.Dir, opts.SegSize)
		if err != nil {
			return nil, err
		}
		if len(segs) > 0 {
			s.dirtyEnd = lsn.LSN(^uint64(0))
		}
		return s, nil
	}
	end, err := FindEndOfWAL(opts.Dir, opts.SegSize, opts.PgVersion, start)
	if err != nil {
		return nil, err
	}
	s.writeLSN, s.writeRecordLSN, s.flushLSN, s.flushRecordLSN = end, end, end, end
	s.pending = true
	s.dirtyEnd = lsn.LSN(^uint64(0)) // unknown: zero everything after end on truncation
	return s, nil
}

// Close releases the open file and stops background work. Unflushed data is dropped.
func (s *Store) Close() error {
	s.pre.close()
	if s.file != nil {
		err := s.file.Close()
		s.file = nil
		return err
	}
	return nil
}

// Recent is the latest WAL kept in memory for readers (ReaderOptions); nil
// if Options.RecentSize is 0.
func (s *Store) Recent() *Recent { return s.recent }

// WriteLSN is the end of the bytes written (durable or not).
func (s *Store) WriteLSN() lsn.LSN { return s.writeLSN }

// WriteRecordLSN is the end of the last complete record written.
func (s *Store) WriteRecordLSN() lsn.LSN { return s.writeRecordLSN }

// FlushLSN is the end of the bytes known durable.
func (s *Store) FlushLSN() lsn.LSN { return s.flushLSN }

// FlushRecordLSN is the end of the last complete durable record: flush_lsn
// everywhere else (SK §4.3).
func (s *Store) FlushRecordLSN() lsn.LSN { return s.flushRecordLSN }

// SegSize is the segment size.
func (s *Store) SegSize() uint64 { return s.opts.SegSize }

// Dir is the timeline directory.
func (s *Store) Dir() string { return s.opts.Dir }

func (s *Store) segPath(segno uint64, partial bool) string {
	name := wal.SegmentFileName(1, segno, s.opts.SegSize)
	if partial {
		name += ".partial"
	}
	return filepath.Join(s.opts.Dir, name)
}

// Write appends data at start (SK §4.4.3). Nothing is fsync'd except a
// segment that this write completes.
//
// A failed write (a full disk, an I/O error) may leave part of data written;
// the store then refuses writes until a truncation, which an election always
// does first, puts the WAL back on a record boundary (Neon #11605).
func (s *Store) Write(start lsn.LSN, data []byte) (err error) {
	if s.pending {
		return ErrTruncationPending
	}
	if s.writeLSN > start {
		return fmt.Errorf("write at %v rewrites WAL written before (written up to %v)", start, s.writeLSN)
	}
	if s.writeLSN < start && s.writeLSN != 0 {
		return fmt.Errorf("write at %v creates a gap after %v", start, s.writeLSN)
	}
	// From here on a failure may leave part of data written.
	defer func() {
		if err != nil {
			s.pending = true
		}
	}()
	t0 := time.Now()
	if s.writeLSN == 0 {
		s.writeLSN = start
	}
	for rest := data; len(rest) > 0; {
		seg := s.writeLSN.SegmentNumber(s.opts.SegSize)
		if err := s.openForWrite(seg); err != nil {
			return err
		}
		if !s.pb.loaded {
			if err := s.pb.load(s.file, s.writeLSN, s.opts.SegSize); err != nil {
				return err
			}
		}
		segEnd := lsn.SegmentLSN(seg+1, 0, s.opts.SegSize)
		n := min(uint64(len(rest)), uint64(segEnd-s.writeLSN), uint64(s.pb.room()))
		s.pb.append(rest[:n])
		s.writeLSN += lsn.LSN(n)
		rest = rest[n:]
		s.dirtyEnd = max(s.dirtyEnd, s.writeLSN)
		if s.writeLSN == segEnd {
			if err := s.completeSegment(); err != nil {
				return err
			}
		} else if s.pb.room() == 0 {
			if err := s.writeOut(); err != nil {
				return err
			}
		}
	}
	if err := s.decode(start, data); err != nil {
		return err
	}
	s.recent.append(start, data)
	if s.opts.Observer != nil {
		s.opts.Observer.WALWritten(len(data), time.Since(t0))
	}
	return nil
}

// decode advances the record LSNs over newly written bytes.
func (s *Store) decode(start lsn.LSN, data []byte) error {
	if s.writeRecordLSN <= s.flushLSN {
		s.flushRecordLSN = s.writeRecordLSN
	}
	if s.dec == nil || s.dec.FedLSN() != start {
		s.dec = wal.NewBoundaryDecoder(start, s.opts.PgVersion, s.opts.SegSize)
	}
	s.dec.Feed(data)
	for {
		rec, ok, err := s.dec.Next()
		if err != nil {
			// Incoming WAL that does not decode must not be acknowledged.
			s.dec = nil
			return fmt.Errorf("decode WAL appended at %v: %w", start, err)
		}
		if !ok {
			return nil
		}
		s.writeRecordLSN = rec.EndLSN
		if rec.EndLSN <= s.flushLSN {
			s.flushRecordLSN = rec.EndLSN
		}
	}
}

// openForWrite makes s.file the .partial file of segment seg.
func (s *Store) openForWrite(seg uint64) error {
	if s.file != nil && s.fileSeg == seg {
		return nil
	}
	if s.file != nil {
		// Only reachable if a segment was left without completing it.
		if err := s.closeFile(); err != nil {
			return err
		}
	}
	f, err := s.openOrCreate(seg)
	if err != nil {
		return err
	}
	if !s.buffered {
		// The store's own descriptor writes around the page cache
		// (pagebuf.go) where the file system allows it.
		direct, err := directio.Enable(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("open WAL segment: %w", err)
		}
		s.buffered = !direct
	}
	s.file, s.fileSeg = f, seg
	s.pre.request()
	return nil
}

// openOrCreate opens segment seg for writing (SK §4.4.1): the complete file,
// else the .partial one, else a freshly prepared zero-filled .partial.
func (s *Store) openOrCreate(seg uint64) (*os.File, error) {
	for _, partial := range []bool{false, true} {
		f, err := os.OpenFile(s.segPath(seg, partial), os.O_RDWR, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open WAL segment: %w", err)
		}
	}
	if err := s.pre.install(s.segPath(seg, true)); err != nil {
		return nil, fmt.Errorf("create WAL segment %s: %w", filepath.Base(s.segPath(seg, true)), err)
	}
	f, err := os.OpenFile(s.segPath(seg, true), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open new WAL segment: %w", err)
	}
	return f, nil
}

// writeOut hands the buffered WAL to the kernel, in whole pages.
func (s *Store) writeOut() error {
	if s.pb.unwritten() == 0 {
		return nil
	}
	if s.file == nil {
		return fmt.Errorf("internal error: %d bytes of WAL at %v buffered with no open segment", s.pb.unwritten(), s.pb.startLSN())
	}
	off := int64(s.pb.base.SegmentOffset(s.opts.SegSize))
	if err := s.opts.RawIO.WriteAt(s.file, s.pb.pages(), off); err != nil {
		return fmt.Errorf("write WAL at %v to %s: %w", s.pb.startLSN(), filepath.Base(s.file.Name()), err)
	}
	s.pb.wrote()
	return nil
}

func (s *Store) fdatasync(f *os.File) error {
	if s.opts.NoSync {
		return nil
	}
	return s.opts.RawIO.Fdatasync(f)
}

// completeSegment makes a full segment durable and gives it its final name.
func (s *Store) completeSegment() error {
	if err := s.writeOut(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.fdatasync(s.file); err != nil {
		return fmt.Errorf("fdatasync completed WAL segment %s: %w", filepath.Base(s.file.Name()), err)
	}
	if s.opts.Observer != nil {
		s.opts.Observer.WALFlushed(time.Since(t0))
	}
	seg := s.fileSeg
	if err := s.closeFile(); err != nil {
		return err
	}
	if err := os.Rename(s.segPath(seg, true), s.segPath(seg, false)); err != nil {
		return fmt.Errorf("rename completed WAL segment: %w", err)
	}
	s.flushLSN = s.writeLSN
	s.dirtyEnd = 0
	return nil
}

func (s *Store) closeFile() error {
	f := s.file
	s.file = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("close WAL segment %s: %w", filepath.Base(f.Name()), err)
	}
	return nil
}

// Flush makes all written WAL durable (SK §4.4.6).
func (s *Store) Flush() error {
	if s.flushRecordLSN == s.writeRecordLSN {
		// Nothing, or only part of a record, is unflushed: an fsync would
		// not let us promise more.
		return nil
	}
	if err := s.writeOut(); err != nil {
		return err
	}
	if s.file != nil {
		t0 := time.Now()
		if err := s.fdatasync(s.file); err != nil {
			return fmt.Errorf("fdatasync WAL segment %s: %w", filepath.Base(s.file.Name()), err)
		}
		if s.opts.Observer != nil {
			s.opts.Observer.WALFlushed(time.Since(t0))
		}
	} else if s.flushLSN != s.writeLSN {
		return fmt.Errorf("internal error: unflushed WAL up to %v but no open segment", s.writeLSN)
	}
	s.flushLSN = s.writeLSN
	s.flushRecordLSN = s.writeRecordLSN
	return nil
}

// FlushTarget is what a prepared flush makes durable.
type FlushTarget struct {
	epoch  uint64
	bytes  lsn.LSN // end of the bytes written when it was prepared
	record lsn.LSN // end of the last complete record among them
}

// PrepareFlush is Flush in two steps, so the fsync can run while more WAL
// is written: it hands the written WAL to the kernel and returns a job that
// makes it durable (safe to run on another goroutine, concurrently with
// Write) and the target to give CompleteFlush once the job succeeded. A nil
// job means there is nothing to flush.
func (s *Store) PrepareFlush() (job func() error, t FlushTarget, err error) {
	if s.flushRecordLSN == s.writeRecordLSN {
		return nil, t, nil
	}
	if err := s.writeOut(); err != nil {
		return nil, t, err
	}
	t = FlushTarget{epoch: s.epoch, bytes: s.writeLSN, record: s.writeRecordLSN}
	if s.file == nil {
		// The last segment was just completed, which fsync'd it already.
		return func() error { return nil }, t, nil
	}
	if s.opts.NoSync {
		return func() error { return nil }, t, nil
	}
	// A duplicate descriptor: the store may close its file (a segment
	// completes) while the job runs; fdatasync through either one flushes
	// the same file.
	fd, err := syscall.Dup(int(s.file.Fd()))
	if err != nil {
		return nil, t, fmt.Errorf("dup WAL segment descriptor: %w", err)
	}
	f := os.NewFile(uintptr(fd), s.file.Name())
	obs, rawIO := s.opts.Observer, s.opts.RawIO
	return func() error {
		defer f.Close()
		t0 := time.Now()
		if err := rawIO.Fdatasync(f); err != nil {
			return fmt.Errorf("fdatasync WAL segment %s: %w", filepath.Base(f.Name()), err)
		}
		if obs != nil {
			obs.WALFlushed(time.Since(t0))
		}
		return nil
	}, t, nil
}

// CompleteFlush records that the job of a PrepareFlush succeeded. A flush
// prepared before a truncation is ignored: what it covered may be gone.
func (s *Store) CompleteFlush(t FlushTarget) {
	if t.epoch != s.epoch {
		return
	}
	s.flushLSN = max(s.flushLSN, t.bytes)
	s.flushRecordLSN = max(s.flushRecordLSN, t.record)
}

// Truncate removes all WAL from end on (SK §4.4.5): later segments are
// deleted and the rest of end's segment is zeroed, durably.
func (s *Store) Truncate(end lsn.LSN) error {
	if s.writeLSN != 0 && end > s.writeRecordLSN {
		return fmt.Errorf("truncate at %v is beyond the last complete record %v", end, s.writeRecordLSN)
	}
	// Readers must not find the removed WAL in memory either.
	s.recent.truncate(end)
	if !s.pending && end == s.writeLSN && end == s.flushRecordLSN {
		return nil
	}
	// Reset first: deletion cannot be undone, so until this finishes no
	// write may happen and no LSN may claim what is being removed.
	s.pending = true
	s.epoch++
	// WAL still in the buffer may lie below end: it must reach the file
	// before the fdatasync below, or the LSNs would claim bytes that are not
	// there. What lies past end is zeroed again further down.
	if err := s.writeOut(); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	oldDirty := s.dirtyEnd
	if s.writeLSN > end {
		oldDirty = max(oldDirty, s.writeLSN)
	}
	s.writeLSN, s.writeRecordLSN, s.flushLSN, s.flushRecordLSN = end, end, end, end
	s.pb.loaded = false
	s.dec = nil
	if s.file != nil {
		if err := s.fdatasync(s.file); err != nil {
			return fmt.Errorf("truncate: fdatasync: %w", err)
		}
		if err := s.closeFile(); err != nil {
			return err
		}
	}
	endSeg := end.SegmentNumber(s.opts.SegSize)
	segs, err := listSegments(s.opts.Dir, s.opts.SegSize)
	if err != nil {
		return err
	}
	for _, sg := range segs {
		if sg.segno > endSeg {
			if err := os.Remove(filepath.Join(s.opts.Dir, sg.name)); err != nil {
				return fmt.Errorf("truncate: remove %s: %w", sg.name, err)
			}
		}
	}
	f, err := s.openOrCreate(endSeg)
	if err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	zeroTo := min(max(oldDirty, end), lsn.SegmentLSN(endSeg+1, 0, s.opts.SegSize))
	if err := zeroRange(f, end.SegmentOffset(s.opts.SegSize), uint64(zeroTo-end)); err != nil {
		f.Close()
		return fmt.Errorf("truncate: zero %s after %v: %w", filepath.Base(f.Name()), end, err)
	}
	if !s.opts.NoSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("truncate: fsync %s: %w", filepath.Base(f.Name()), err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("truncate: close: %w", err)
	}
	if _, err := os.Stat(s.segPath(endSeg, false)); err == nil {
		// A complete segment becomes the one being written again.
		if err := os.Rename(s.segPath(endSeg, false), s.segPath(endSeg, true)); err != nil {
			return fmt.Errorf("truncate: rename back to .partial: %w", err)
		}
		if err := s.syncDir(); err != nil {
			return err
		}
	}
	if end.SegmentOffset(s.opts.SegSize) == 0 && endSeg > 0 {
		// WAL ends exactly at the end of the previous segment (after an
		// XLOG_SWITCH whose zero padding never arrived, say): that segment
		// is complete and gets its final name, as if its last byte had come.
		if err := s.completeByName(endSeg - 1); err != nil {
			return err
		}
	}
	s.dirtyEnd = end
	s.pending = false
	return nil
}

// completeByName fsyncs a .partial segment that holds all its WAL and
// renames it to its final name; it does nothing if there is no such file.
func (s *Store) completeByName(seg uint64) error {
	f, err := os.OpenFile(s.segPath(seg, true), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("truncate: open previous segment: %w", err)
	}
	err = s.fdatasync(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("truncate: fdatasync previous segment: %w", err)
	}
	if err := os.Rename(s.segPath(seg, true), s.segPath(seg, false)); err != nil {
		return fmt.Errorf("truncate: rename previous segment: %w", err)
	}
	return s.syncDir()
}

// InitializeFirstSegment writes the synthetic headers of SK §4.4.4 in front
// of start in its segment, so WAL tools can parse the first segment. It is
// not fsync'd: the truncation that follows every election does that.
func (s *Store) InitializeFirstSegment(start lsn.LSN) error {
	seg := start.SegmentNumber(s.opts.SegSize)
	f, err := s.openOrCreate(seg)
	if err != nil {
		return err
	}
	defer f.Close()
	head, err := wal.InitialImage{Start: start, SystemID: s.opts.SystemID, PGVersion: s.opts.PgVersion, SegSize: s.opts.SegSize}.Prefix()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(head, 0); err != nil {
		return fmt.Errorf("write first segment headers: %w", err)
	}
	s.pb.loaded = false
	return nil
}

func (s *Store) syncDir() error {
	if s.opts.NoSync {
		return nil
	}
	return durable.SyncDir(s.opts.Dir)
}

// zeroRange overwrites n bytes at off with zeros.
func zeroRange(f *os.File, off, n uint64) error {
	if n == 0 {
		return nil
	}
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, uint64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], int64(off)); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}
