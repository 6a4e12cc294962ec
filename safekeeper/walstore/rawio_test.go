package walstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestNewRawIONeedsASpareProcessor(t *testing.T) {
	if r := NewRawIO(1); r != nil {
		t.Fatalf("NewRawIO(1) = %v, want nil: a raw call would stall the only processor", r)
	}
	if r := NewRawIO(4); cap(r.tokens) != 3 {
		t.Fatalf("NewRawIO(4) allows %d raw calls at once, want 3", cap(r.tokens))
	}
}

// Every path (raw, through the runtime, nil) writes the same bytes and syncs.
func TestRawIOWritesAndSyncs(t *testing.T) {
	slow := NewRawIO(2)
	slow.avgSync.Store(int64(10 * rawSyncLimit))
	busy := NewRawIO(2)
	busy.tokens <- struct{}{} // every token taken
	for name, r := range map[string]*RawIO{"raw": NewRawIO(2), "slow disk": slow, "no token": busy, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := bytes.Repeat([]byte("0123456789abcdef"), 70000) // > 1 MiB: several pwrites may be needed
			if err := r.WriteAt(f, want[:100], 0); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteAt(f, want[100:], 100); err != nil {
				t.Fatal(err)
			}
			if err := r.Fdatasync(f); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("file holds %d bytes, not the %d written", len(got), len(want))
			}
			held := 0
			if r == busy {
				held = 1
			}
			if r != nil && len(r.tokens) != held {
				t.Fatalf("%d tokens held after the calls returned, want %d", len(r.tokens), held)
			}
		})
	}
}

// Errors name the file and keep the errno for errors.Is.
func TestRawIOErrors(t *testing.T) {
	f, err := os.Open(t.TempDir()) // a directory: write fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewRawIO(2)
	err = r.WriteAt(f, []byte("x"), 0)
	if !errors.Is(err, syscall.EBADF) || !bytes.Contains([]byte(err.Error()), []byte(f.Name())) {
		t.Fatalf("write to a directory: %v, want EBADF naming %s", err, f.Name())
	}
	if len(r.tokens) != 0 {
		t.Fatal("token not released after a failed write")
	}
	closed, err := os.Create(filepath.Join(t.TempDir(), "closed"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // its Fd is now -1
	if err := rawFdatasync(closed); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("fdatasync of a closed descriptor: %v, want EBADF", err)
	}
}

// A slow disk turns raw calls off, and a fast one back on.
func TestRawIOFollowsTheDisk(t *testing.T) {
	r := NewRawIO(2)
	for range 40 {
		r.observe(20 * time.Millisecond)
	}
	if r.acquire() {
		t.Fatal("raw calls allowed after 40 fdatasyncs of 20 ms")
	}
	for range 40 {
		r.observe(100 * time.Microsecond)
	}
	if !r.acquire() {
		t.Fatal("raw calls still refused after 40 fdatasyncs of 100 µs")
	}
	if r.acquire() {
		t.Fatal("two raw calls at once with one token")
	}
	r.release()
}
