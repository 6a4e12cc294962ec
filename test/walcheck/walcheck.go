// Package walcheck holds the checks end-to-end tests make on WAL and on
// daemons: byte-for-byte comparison of WAL files with the primary's,
// pg_waldump over a range, and polling a condition with a deadline.
package walcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/test/pgharness"
)

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last state: %s)", timeout, what, last)
}

// ReadSegment returns a segment file's bytes from dir, trying the plain
// name, then ".partial".
func ReadSegment(dir string, segno, segSize uint64) ([]byte, error) {
	name := wal.SegmentFileName(1, segno, segSize)
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(dir, name+".partial"))
	}
	return b, err
}

// CompareWAL checks that dir holds exactly the primary's WAL bytes in [from, to).
func CompareWAL(t testing.TB, what string, primaryDir, dir string, from, to lsn.LSN, segSize uint64) {
	t.Helper()
	for seg := from.SegmentNumber(segSize); seg <= (to - 1).SegmentNumber(segSize); seg++ {
		segStart := lsn.SegmentLSN(seg, 0, segSize)
		lo := max(from, segStart).SegmentOffset(segSize)
		hi := uint64(min(to, segStart+lsn.LSN(segSize)) - segStart)
		want, err := ReadSegment(primaryDir, seg, segSize)
		if err != nil {
			t.Fatalf("primary segment %d: %v", seg, err)
		}
		got, err := ReadSegment(dir, seg, segSize)
		if err != nil {
			t.Fatalf("%s segment %d: %v", what, seg, err)
		}
		if uint64(len(got)) != segSize {
			t.Fatalf("%s segment %s is %d bytes, want %d", what, wal.SegmentFileName(1, seg, segSize), len(got), segSize)
		}
		if !bytes.Equal(got[lo:hi], want[lo:hi]) {
			i := 0
			for i < int(hi-lo) && got[lo+uint64(i)] == want[lo+uint64(i)] {
				i++
			}
			t.Fatalf("%s segment %s differs from the primary's at %v", what, wal.SegmentFileName(1, seg, segSize), segStart+lsn.LSN(lo)+lsn.LSN(i))
		}
	}
}

// Waldump copies the segments holding [from, to) out of dir under their
// plain names and checks that pg_waldump decodes every record in the range.
func Waldump(t testing.TB, c *pgharness.Cluster, dir string, from, to lsn.LSN) string {
	t.Helper()
	segSize := c.WALSegmentSize()
	out := c.MkdirShared(t, fmt.Sprintf("waldump-%d", time.Now().UnixNano()))
	for seg := from.SegmentNumber(segSize); seg <= (to - 1).SegmentNumber(segSize); seg++ {
		b, err := ReadSegment(dir, seg, segSize)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(out, wal.SegmentFileName(1, seg, segSize))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.User().Chown(p); err != nil {
			t.Fatal(err)
		}
	}
	cmd := c.Command("pg_waldump", "--path", out, "--start", from.String(), "--end", to.String(), "--stats")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_waldump over [%v, %v): %v\n%s", from, to, err, res)
	}
	return string(res)
}

// RunCmd runs cmd and fails the test with its output on error.
func RunCmd(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd.String(), err, out.String())
	}
	return out.String()
}

// EndOfWAL decodes a PostgreSQL pg_wal directory forward from from, a record
// start, and returns the end of the last intact record and that record's
// start: the end of WAL, as pg_waldump would show it.
func EndOfWAL(t testing.TB, dir string, segSize uint64, from lsn.LSN) (end, last lsn.LSN) {
	t.Helper()
	dec := wal.NewBoundaryDecoder(from, 15, segSize)
	end = from
	for pos := from; ; {
		seg, err := ReadSegment(dir, pos.SegmentNumber(segSize), segSize)
		if err != nil {
			return end, last
		}
		dec.Feed(seg[pos.SegmentOffset(segSize):])
		for {
			rec, ok, err := dec.Next()
			if err != nil {
				return end, last
			}
			if !ok {
				break
			}
			end, last = rec.EndLSN, rec.StartLSN
		}
		pos = pos.SegmentStart(segSize) + lsn.LSN(segSize)
	}
}

// LatestCheckpoint reads "Latest checkpoint location" from pg_controldata.
func LatestCheckpoint(t testing.TB, c *pgharness.Cluster) lsn.LSN {
	t.Helper()
	out, err := c.Command("pg_controldata", "-D", c.DataDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Latest checkpoint location:"); ok {
			l, err := lsn.Parse(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	}
	t.Fatalf("no latest checkpoint location in pg_controldata output:\n%s", out)
	return 0
}
