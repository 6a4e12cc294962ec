package walstore

import (
	"bytes"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"strata.dev/libs/directio"
	"strata.dev/libs/lsn"
)

// TestDirectWrites: where the file system takes O_DIRECT, the segment being
// written is open with it, and a reader sees every flushed write at once,
// also the small ones that rewrite the page it has just read: it reads ahead
// only as far as SetEnd says the WAL is written.
func TestDirectWrites(t *testing.T) {
	dir := t.TempDir()
	if !takesDirectIO(t, dir) {
		t.Skipf("the file system of %s refuses O_DIRECT", dir)
	}
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1) + 0x28
	w := newWALStream(t, base)
	if err := s.InitializeFirstSegment(base); err != nil {
		t.Fatal(err)
	}
	truncate(t, s, w, base)
	r := rand.New(rand.NewPCG(5, 5))
	w.fill(r, segLSN(2)+200*kib)
	rd := newReader(t, readerOpts(dir, base, base), base)
	for at := base; at < w.end(); {
		n := lsn.LSN(1 + r.IntN([]int{100, 3000, 20000}[r.IntN(3)]))
		n = min(n, lsn.LSN(w.end()-at))
		if err := s.Write(at, w.bytes(at, at+n)); err != nil {
			t.Fatal(err)
		}
		flush(t, s)
		at += n
		if s.file != nil && s.buffered {
			t.Fatal("the segment is written through the page cache although the file system takes O_DIRECT")
		}
		if s.file != nil && !hasDirectFlag(t, s.file) {
			t.Fatal("the segment's descriptor lacks O_DIRECT")
		}
		end := s.FlushLSN()
		rd.SetEnd(end)
		if got := readTo(t, rd, r, end); !bytes.Equal(got, w.bytes(end-lsn.LSN(len(got)), end)) {
			want := w.bytes(end-lsn.LSN(len(got)), end)
			i := firstDiff(got, want)
			t.Fatalf("reader at %s: %d bytes read differ from the WAL written at byte %d: %x vs %x", end, len(got), i, got[i:min(i+16, len(got))], want[i:min(i+16, len(want))])
		}
	}
}

// takesDirectIO says whether files in dir can be made direct.
func takesDirectIO(t *testing.T, dir string) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	direct, err := directio.Enable(f)
	if err != nil {
		t.Fatal(err)
	}
	return direct
}

func hasDirectFlag(t *testing.T, f *os.File) bool {
	flags, err := fcntlFlags(f)
	if err != nil {
		t.Fatal(err)
	}
	return flags&syscall.O_DIRECT != 0
}

func fcntlFlags(f *os.File) (int, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var flags int
	var ferr error
	if err := raw.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		flags = int(r)
		if e != 0 {
			ferr = e
		}
	}); err != nil {
		return 0, err
	}
	return flags, ferr
}

// TestPageBuffer: writes cover whole pages from a page boundary, the last
// partial page stays as the head of the next one, and the padding is zeros
// even where the buffer held other bytes before.
func TestPageBuffer(t *testing.T) {
	b := newPageBuffer()
	if uintptr(len(b.mem)) != writeBufferSize || uintptr(unsafe.Pointer(&b.mem[0]))%directio.Align != 0 {
		t.Fatalf("buffer of %d bytes at an address %% %d = %d", len(b.mem), directio.Align, uintptr(unsafe.Pointer(&b.mem[0]))%directio.Align)
	}
	b.loaded, b.base = true, segLSN(1)
	b.append(bytes.Repeat([]byte{1}, cachePage+10))
	p := b.pages()
	if len(p) != 2*cachePage || p[cachePage+9] != 1 || !allZero(p[cachePage+10:]) {
		t.Fatalf("pages: %d bytes, want %d: WAL then zeros", len(p), 2*cachePage)
	}
	b.wrote()
	if b.base != segLSN(1)+cachePage || b.fill != 10 || b.written != 10 || b.unwritten() != 0 || b.startLSN() != segLSN(1)+cachePage+10 {
		t.Fatalf("after a write: base %s fill %d written %d", b.base, b.fill, b.written)
	}
	// The old bytes after the head must not come back as padding.
	b.append([]byte{2, 2})
	p = b.pages()
	if len(p) != cachePage || !bytes.Equal(p[:12], append(bytes.Repeat([]byte{1}, 10), 2, 2)) || !allZero(p[12:]) {
		t.Fatal("second write: want the head, the new bytes, then zeros")
	}
	b.wrote()
	b.append(bytes.Repeat([]byte{3}, cachePage-12))
	b.wrote()
	if b.base != segLSN(1)+2*cachePage || b.fill != 0 {
		t.Fatalf("a write ending on a page boundary keeps no head: base %s fill %d", b.base, b.fill)
	}
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
