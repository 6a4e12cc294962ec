package walstore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountTiny mounts a tmpfs of size bytes for the test, or skips the test
// where that is not possible (not root, no mount permission).
func mountTiny(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A full disk is a clear error on the write that needs space, never a
// half-made segment, and nothing acknowledged before is lost.
func TestDiskFull(t *testing.T) {
	for _, method := range []Prealloc{PreallocFallocate, PreallocZero} {
		t.Run(string(method), func(t *testing.T) {
			dir := mountTiny(t, "3m")
			opts := testOpts(dir)
			opts.NoSync = false
			opts.Prealloc = method
			s := openStore(t, opts, 0)
			w := newWALStream(t, segLSN(1))
			w.fillExactly(segLSN(5))
			if err := s.InitializeFirstSegment(segLSN(1)); err != nil {
				t.Fatal(err)
			}
			if err := s.Truncate(segLSN(1)); err != nil {
				t.Fatal(err)
			}
			// The first segment and one spare fit; a third segment does not.
			var werr error
			var acked = s.FlushRecordLSN()
			for p := segLSN(1); p < segLSN(5) && werr == nil; p += 64 << 10 {
				if werr = s.Write(p, w.bytes(p, p+64<<10)); werr == nil {
					if werr = s.Flush(); werr == nil {
						acked = s.FlushRecordLSN()
					}
				}
			}
			if werr == nil || !errors.Is(werr, syscall.ENOSPC) || !strings.Contains(werr.Error(), "no space left on device") {
				t.Fatalf("filling the disk: %v; want an ENOSPC error that says so", werr)
			}
			if acked < segLSN(2) {
				t.Fatalf("only %s acknowledged before the disk filled", acked)
			}
			if err := s.Write(s.WriteLSN(), w.bytes(s.WriteLSN(), s.WriteLSN()+1)); !errors.Is(err, ErrTruncationPending) {
				t.Fatalf("write after a failed write: %v; want ErrTruncationPending", err)
			}
			written := s.WriteLSN()
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tmpPrefix) {
					t.Fatalf("half-made file %s left behind", e.Name())
				}
			}
			s.Close()
			// Everything acknowledged is there after a restart.
			s2 := openStore(t, opts, segLSN(1))
			if s2.FlushRecordLSN() < acked {
				t.Fatalf("after restart the WAL ends at %s, before the acknowledged %s", s2.FlushRecordLSN(), acked)
			}
			checkDisk(t, dir, w, segLSN(1), acked, written)
		})
	}
}

// A write refused by validation (a stale connection's gap or rewrite) must
// not stop the store from taking the valid writes that follow.
func TestRefusedWriteDoesNotBlock(t *testing.T) {
	s := openStore(t, testOpts(t.TempDir()), 0)
	w := newWALStream(t, segLSN(1))
	w.fillExactly(segLSN(2))
	if err := s.InitializeFirstSegment(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	mid := segLSN(1) + 4096
	writeRange(t, s, w, segLSN(1), mid, nil)
	if err := s.Write(mid+8, w.bytes(mid+8, mid+16)); err == nil {
		t.Fatal("gap accepted")
	}
	if err := s.Write(segLSN(1), w.bytes(segLSN(1), segLSN(1)+8)); err == nil {
		t.Fatal("rewrite accepted")
	}
	writeRange(t, s, w, mid, segLSN(2), nil)
}
