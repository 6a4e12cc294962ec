package directio

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

func TestBuffer(t *testing.T) {
	for _, n := range []int{1, Align, 3*Align + 5, 1 << 20} {
		b := Buffer(n)
		if len(b) != n || cap(b) != n || uintptr(unsafe.Pointer(&b[0]))%Align != 0 {
			t.Fatalf("Buffer(%d): len %d cap %d, address %% %d = %d", n, len(b), cap(b), Align, uintptr(unsafe.Pointer(&b[0]))%Align)
		}
	}
}

// TestEnable: a file made direct takes aligned writes and reads them back,
// and the result says whether the descriptor is direct.
func TestEnable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	direct, err := Enable(f)
	if err != nil {
		t.Fatal(err)
	}
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if got := flags&syscall.O_DIRECT != 0; got != direct {
		t.Fatalf("Open says direct %v, the descriptor's O_DIRECT is %v", direct, got)
	}
	w := Buffer(Align)
	for i := range w {
		w[i] = byte(i)
	}
	if _, err := f.WriteAt(w, Align); err != nil {
		t.Fatal(err)
	}
	r := Buffer(2 * Align)
	if _, err := f.ReadAt(r, 0); err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if r[Align+i] != w[i] || r[i] != 0 {
			t.Fatalf("read back differs at %d", i)
		}
	}
}
