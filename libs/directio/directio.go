// Package directio opens files for I/O around the kernel's page cache
// (O_DIRECT) and makes the aligned buffers that needs.
//
// On the VMs Strata runs on, a buffered write (or a first read) gets a
// freshly allocated cache page for every 4 KiB, and the host takes cold
// pages back again: measured with three writers on one disk, buffered
// writes cost the kernel 2–4 times the CPU of direct ones. Safekeepers
// write and read WAL segments this way, the pageserver writes layer files.
package directio

import (
	"os"
	"syscall"
	"unsafe"
)

// Align is what offsets, lengths and buffer addresses of direct I/O are
// multiples of: the page size, a multiple of any disk's logical block.
const Align = 4096

// Enable turns O_DIRECT on for the open file f. It returns false and leaves
// f as it was if f's file system refuses direct I/O (tmpfs before Linux 6.6,
// for one). Being
// a change to an open descriptor, it cannot race with a rename of the file.
func Enable(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		flags, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if e == 0 {
			_, _, e = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, flags|syscall.O_DIRECT)
		}
		errno = e
	}); err != nil {
		return false, err
	}
	switch errno {
	case 0:
		return true, nil
	case syscall.EINVAL:
		return false, nil
	}
	return false, &os.PathError{Op: "fcntl O_DIRECT", Path: f.Name(), Err: errno}
}

// Buffer returns n zero bytes at an address that is a multiple of Align.
func Buffer(n int) []byte {
	raw := make([]byte, n+Align)
	skip := (Align - int(uintptr(unsafe.Pointer(&raw[0]))%Align)) % Align
	return raw[skip : skip+n : skip+n]
}
