package walstore

import "testing"

// A flush prepared before more writes covers exactly what was written when
// it was prepared; one prepared before a truncation is ignored.
func TestPrepareCompleteFlush(t *testing.T) {
	s := openStore(t, testOpts(t.TempDir()), 0)
	w := newWALStream(t, segLSN(1))
	for w.end() < segLSN(3) {
		w.msg(3000)
	}
	if err := s.InitializeFirstSegment(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	if job, _, err := s.PrepareFlush(); err != nil || job != nil {
		t.Fatalf("nothing written: job %v, err %v", job != nil, err)
	}
	a := w.lastEndWithin(segLSN(1) + 100000)
	writeRange(t, s, w, segLSN(1), a, nil)
	job, target, err := s.PrepareFlush()
	if err != nil || job == nil {
		t.Fatalf("PrepareFlush: %v (a %s, write record %s, flush record %s)", err, a, s.WriteRecordLSN(), s.FlushRecordLSN())
	}
	// More WAL arrives while the flush runs.
	b := w.lastEndWithin(segLSN(1) + 300000)
	writeRange(t, s, w, a, b, nil)
	if err := job(); err != nil {
		t.Fatal(err)
	}
	s.CompleteFlush(target)
	if s.FlushRecordLSN() != a {
		t.Fatalf("after the async flush: flush record LSN %s, want %s", s.FlushRecordLSN(), a)
	}
	if err := s.Flush(); err != nil || s.FlushRecordLSN() != b {
		t.Fatalf("sync flush: %s, %v", s.FlushRecordLSN(), err)
	}
	// A late completion never moves the flush LSN back.
	s.CompleteFlush(target)
	if s.FlushRecordLSN() != b {
		t.Fatalf("late completion moved flush back to %s", s.FlushRecordLSN())
	}
	// Prepared, then truncated: the completion is stale and ignored.
	c := w.lastEndWithin(segLSN(2) + 5000)
	writeRange(t, s, w, b, c, nil)
	job, target, err = s.PrepareFlush()
	if err != nil || job == nil {
		t.Fatal(err)
	}
	if err := s.Truncate(b); err != nil {
		t.Fatal(err)
	}
	if err := job(); err != nil {
		t.Fatal(err)
	}
	s.CompleteFlush(target)
	if s.FlushRecordLSN() != b || s.FlushLSN() != b {
		t.Fatalf("a flush prepared before the truncation moved the flush LSN to %s", s.FlushRecordLSN())
	}
}
