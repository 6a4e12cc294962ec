package walreceiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/walreceiver"
)

// recordingSink is a sink that behaves like ingest as far as the receiver
// can tell: it decodes the stream into records (so last_record_lsn is a real
// record end), restarts from there at every Begin, and keeps every byte it
// was given by LSN. It checks the stream contract on the way: each call
// continues the previous one, the first call after Begin starts at the
// normalized last_record_lsn, and bytes given again after a restart are the
// same as before.
type recordingSink struct {
	mu       sync.Mutex
	base     lsn.LSN // LSN of data[0]
	data     []byte
	last     lsn.LSN // last_record_lsn: end of the last whole record
	next     lsn.LSN // where the next call must start; 0 right after Begin
	dec      *wal.Decoder
	begins   int
	calls    int
	problems []string

	// positions, when set, derives the reported positions from last.
	positions func(last lsn.LSN) walreceiver.Positions
	// failAt makes the first call whose data reaches past it fail, once.
	failAt lsn.LSN
	failed bool
	// pauseAt blocks the first call that reaches past it until release is
	// closed; paused is closed when that happens.
	pauseAt lsn.LSN
	paused  chan struct{}
	release chan struct{}
	// beginErr is returned by Begin.
	beginErr error
}

var errInjected = errors.New("injected ingest failure")

func newRecordingSink(start lsn.LSN) *recordingSink {
	return &recordingSink{last: start, paused: make(chan struct{}), release: make(chan struct{})}
}

func (s *recordingSink) Begin() (lsn.LSN, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.begins++
	s.next, s.dec = 0, nil
	return s.last, s.beginErr
}

// expectedStart is PS §2.1's start point, computed independently of the
// receiver: aligned to 8 and past a page header.
func expectedStart(last lsn.LSN) lsn.LSN {
	l := last.Align8()
	if l.IsSegmentStart(segSize) {
		return l + wal.LongPageHeaderSize
	}
	if l.IsPageStart() {
		return l + wal.ShortPageHeaderSize
	}
	return l
}

func (s *recordingSink) WAL(ctx context.Context, start lsn.LSN, data []byte) error {
	end := start + lsn.LSN(len(data))
	s.mu.Lock()
	pause := s.pauseAt != 0 && end > s.pauseAt
	if pause {
		s.pauseAt = 0
	}
	s.mu.Unlock()
	if pause {
		close(s.paused)
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failAt != 0 && !s.failed && end > s.failAt {
		s.failed = true
		return errInjected
	}
	if s.next == 0 {
		if want := expectedStart(s.last); start != want {
			s.problem("first WAL after Begin at %v, want %v (last_record_lsn %v)", start, want, s.last)
		}
		s.dec = wal.NewBoundaryDecoder(start, 15, segSize)
	} else if start != s.next {
		s.problem("WAL at %v, expected %v", start, s.next)
	}
	s.next = end
	s.store(start, data)
	s.dec.Feed(data)
	for {
		rec, ok, err := s.dec.Next()
		if err != nil {
			s.problem("decode at %v: %v", start, err)
			return fmt.Errorf("decode: %w", err)
		}
		if !ok {
			break
		}
		s.last = rec.EndLSN
	}
	return nil
}

// store keeps data at start, checking that bytes given before are equal.
func (s *recordingSink) store(start lsn.LSN, data []byte) {
	if s.data == nil {
		s.base = start
	}
	if start < s.base || start > s.base+lsn.LSN(len(s.data)) {
		s.problem("WAL at %v leaves a hole in what the sink holds [%v, %v)", start, s.base, s.base+lsn.LSN(len(s.data)))
		return
	}
	off := int(start - s.base)
	overlap := min(len(data), len(s.data)-off)
	if !bytes.Equal(s.data[off:off+overlap], data[:overlap]) {
		s.problem("WAL at %v differs from what was streamed there before", start)
	}
	s.data = append(s.data, data[overlap:]...)
}

func (s *recordingSink) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *recordingSink) Positions() walreceiver.Positions {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.positions != nil {
		return s.positions(s.last)
	}
	// Nothing is "uploaded": the safekeepers keep all WAL, so several
	// receivers can start anywhere in it.
	return walreceiver.Positions{LastReceived: s.last, DiskConsistent: s.last}
}

func (s *recordingSink) lastRecord() lsn.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *recordingSink) beginCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begins
}

func (s *recordingSink) end() lsn.LSN {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base + lsn.LSN(len(s.data))
}

func (s *recordingSink) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

// bytes returns a copy of [from, to), or nil if the sink does not hold it all.
func (s *recordingSink) bytes(from, to lsn.LSN) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from < s.base || to > s.base+lsn.LSN(len(s.data)) {
		return nil
	}
	return bytes.Clone(s.data[from-s.base : to-s.base])
}
