package walstore

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// RawIO issues the WAL's writes and fdatasyncs as raw system calls while the
// disk answers fast.
//
// A Go system call hands its processor back to the scheduler (entersyscall),
// and the first one after the process was idle wakes the runtime's monitor
// thread, which then polls every 20 µs; one that lasts longer than a poll
// also moves the goroutine's processor to another thread. A safekeeper goes
// idle and wakes once per commit, so that bookkeeping cost it about a fifth
// of its CPU time and ~25 µs per fdatasync (test/bench, commit latency). A
// raw system call skips it, but holds its processor until the call returns,
// so RawIO bounds that: at most maxRaw calls at once (one processor less than
// GOMAXPROCS, so the network is always served), and none while the moving
// average of fdatasync time is above rawSyncLimit, when a slow disk would
// make the runtime's stop-the-world pauses wait for it. Otherwise the calls
// go through the runtime as usual.
//
// A nil *RawIO always goes through the runtime. Safe for concurrent use; one
// per process.
type RawIO struct {
	tokens chan struct{}
	// avgSync is an exponential moving average of fdatasync durations (ns).
	avgSync atomic.Int64
}

// rawSyncLimit is the average fdatasync time above which the disk is slow
// enough that a raw call's saving does not matter and its held processor does.
const rawSyncLimit = time.Millisecond

// NewRawIO returns a RawIO for a process running GOMAXPROCS processors, or
// nil if there is no processor to spare.
func NewRawIO(gomaxprocs int) *RawIO {
	if gomaxprocs < 2 {
		return nil
	}
	return &RawIO{tokens: make(chan struct{}, gomaxprocs-1)}
}

// acquire reports whether a raw call may run now; release must follow.
func (r *RawIO) acquire() bool {
	if r == nil || r.avgSync.Load() > int64(rawSyncLimit) {
		return false
	}
	select {
	case r.tokens <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *RawIO) release() { <-r.tokens }

// observe folds one fdatasync duration into the average (weight 1/8). Racing
// updates may lose one sample, which an average can afford.
func (r *RawIO) observe(d time.Duration) {
	if r == nil {
		return
	}
	avg := r.avgSync.Load()
	r.avgSync.Store(avg + (int64(d)-avg)/8)
}

// Fdatasync makes f's data durable.
func (r *RawIO) Fdatasync(f *os.File) error {
	t0 := time.Now()
	var err error
	if r.acquire() {
		err = rawFdatasync(f)
		r.release()
	} else {
		err = fdatasync(f)
	}
	r.observe(time.Since(t0))
	return err
}

// WriteAt writes all of b to f at off.
func (r *RawIO) WriteAt(f *os.File, b []byte, off int64) error {
	if !r.acquire() {
		_, err := f.WriteAt(b, off)
		return err
	}
	defer r.release()
	return rawPwrite(f, b, off)
}

func rawFdatasync(f *os.File) error {
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, f.Fd(), 0, 0)
		if e == 0 {
			return nil
		}
		if e != syscall.EINTR {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: e}
		}
	}
}

func rawPwrite(f *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITE64, f.Fd(),
			uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return &os.PathError{Op: "write", Path: f.Name(), Err: e}
		case n == 0:
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EIO}
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}
