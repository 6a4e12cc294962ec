package redo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"strata.dev/pageserver/pgpage"
)

// processDirPrefix names the per-process copies of the template.
const processDirPrefix = "proc-"

// Settings of every redo process (see ../../shared/walredo.md): 1024
// buffers (see maxBufferUnits), invalid-page reports only warnings, nothing
// logged below ERROR, no fsync of a scratch directory.
var processSettings = []string{
	"-c", "shared_buffers=8MB",
	"-c", "ignore_invalid_pages=on",
	"-c", "log_min_messages=error",
	"-c", "fsync=off",
	"-c", "max_connections=1",
	"-c", "max_wal_senders=0",
	"-c", "max_worker_processes=0",
	"-c", "max_parallel_workers=0",
}

// process is one running redo process. Requests are written whole, in
// turn, and answered in the order written, so several callers can have
// requests in flight on one process (pipelining). There is no reader
// goroutine: the caller that holds the read token reads answers, in order,
// handing each to its call, until its own has come; then it passes the
// token on. A caller alone on the process waits for its answer in a
// blocking poll(2), woken straight by the pipe (no goroutine hand-offs);
// otherwise the wait goes through the runtime's poller, so that a blocked
// thread does not hold up the other callers.
type process struct {
	id     int
	dir    string
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	outRC  syscall.RawConn // stdout's, for waits through the poller
	outFD  int
	log    zerolog.Logger

	writeMu sync.Mutex // serialises writes, and with them the order of calls
	mu      sync.Mutex // guards queue and err; never held across I/O
	queue   []*call    // written, not yet answered, oldest first
	err     error      // why the process failed; set once
	dead    chan struct{}
	token   chan struct{} // held by the caller reading answers
	answer  []byte        // the token holder reads each answer here first

	inflight   atomic.Int32  // calls reserved or running
	poolActive *atomic.Int32 // requests in flight on the whole pool
	lastUsed   atomic.Int64  // unix nanoseconds
	reaped     chan struct{} // closed once the process has exited and stderr is read
	exited     chan struct{} // closed once it is reaped and cleaned up
	stderr     stderrTail
}

// call is one request waiting for its answer. It is finished once, under
// process.mu.
type call struct {
	page      []byte // where the answer goes, unless abandoned
	abandoned bool   // its caller is gone (guarded by process.mu)
	err       error
	done      chan struct{}
}

// spawn starts a redo process on a fresh copy of the template and waits
// until it is ready to serve.
func spawn(ctx context.Context, o *Options, tmpl string, id int, poolActive *atomic.Int32) (*process, error) {
	dir, err := os.MkdirTemp(o.Dir, processDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("%w: scratch copy: %w", ErrProcess, err)
	}
	// The copy is the data directory: only its owner may use it.
	if err := os.Remove(dir); err != nil {
		return nil, fmt.Errorf("%w: scratch copy: %w", ErrProcess, err)
	}
	if err := copyTree(tmpl, dir, o.User); err != nil {
		removeProcessDir(dir)
		return nil, fmt.Errorf("%w: copy the template to %s: %w", ErrProcess, dir, err)
	}

	p := &process{id: id, dir: dir, poolActive: poolActive, log: o.Log.With().Int("redo_process", id).Logger(),
		dead: make(chan struct{}), token: make(chan struct{}, 1), answer: make([]byte, pgpage.BlockSize),
		reaped: make(chan struct{}), exited: make(chan struct{})}
	p.token <- struct{}{}
	args := append([]string{"--single", "-D", dir}, processSettings...)
	p.cmd = exec.Command(filepath.Join(o.PGBinDir, "postgres"), append(args, redoDB)...)
	p.cmd.Env = redoEnv()
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.User, Pdeathsig: syscall.SIGKILL}

	var childEnds []*os.File
	pipe := func() (r, w *os.File) {
		if err == nil {
			r, w, err = os.Pipe()
		}
		return r, w
	}
	stdinR, stdinW := pipe()
	stdoutR, stdoutW := pipe()
	stderrR, stderrW := pipe()
	childEnds = append(childEnds, stdinR, stdoutW, stderrW)
	if err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW)
		removeProcessDir(dir)
		return nil, fmt.Errorf("%w: pipes: %w", ErrProcess, err)
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = stdinR, stdoutW, stderrW
	p.stdin, p.stdout = stdinW, stdoutR
	if p.outRC, err = stdoutR.SyscallConn(); err == nil {
		err = p.outRC.Control(func(fd uintptr) { p.outFD = int(fd) })
	}
	if err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW)
		removeProcessDir(dir)
		return nil, fmt.Errorf("%w: pipes: %w", ErrProcess, err)
	}
	err = p.cmd.Start()
	closeAll(childEnds...)
	if err != nil {
		closeAll(stdinW, stdoutR, stderrR)
		removeProcessDir(dir)
		return nil, fmt.Errorf("%w: start postgres: %w", ErrProcess, err)
	}

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		p.drainStderr(stderrR)
	}()
	go func() {
		err := p.cmd.Wait()
		<-drained
		stderrR.Close()
		p.fail(fmt.Errorf("exited: %v", err))
		close(p.reaped)
		removeSharedMemory(dir, p.cmd.Process.Pid)
		removeProcessDir(dir)
		// The last reader may still hold the token; it returns on EOF.
		<-p.token
		p.stdout.Close()
		p.log.Debug().Err(err).Msg("WAL redo process ended")
		close(p.exited)
	}()

	if err := p.handshake(ctx, o.Timeout); err != nil {
		p.kill(err)
		<-p.exited
		return nil, err
	}
	p.lastUsed.Store(time.Now().UnixNano())
	p.log.Debug().Int("pid", p.cmd.Process.Pid).Msg("WAL redo process started")
	return p, nil
}

// handshake sends the SQL line that enters walredo_main() and waits for its
// ready marker, a 0x00 byte after whatever single-user mode printed. The
// protocol must not start before it: postgres reads the SQL line through
// stdio, which would swallow bytes sent with it.
func (p *process) handshake(ctx context.Context, timeout time.Duration) error {
	ready := make(chan error, 1)
	go func() {
		if _, err := p.stdin.Write([]byte("SELECT walredo_main();\n")); err != nil {
			ready <- fmt.Errorf("write: %w", err)
			return
		}
		var b [512]byte
		for {
			n, err := p.stdout.Read(b[:])
			if i := bytes.IndexByte(b[:n], 0); i >= 0 {
				if i != n-1 {
					ready <- fmt.Errorf("%d bytes after the ready marker", n-1-i)
				} else {
					ready <- nil
				}
				return
			}
			if err != nil {
				ready <- fmt.Errorf("read: %w", err)
				return
			}
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-ready:
	case <-timer.C:
		err = fmt.Errorf("not ready after %v", timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return p.errorf("start: %w", err)
	}
	return nil
}

// request sends req (whole requests, see appendRequest) and waits for its
// answer, read into into (nil: a new page). A timeout kills the process.
func (p *process) request(ctx context.Context, req []byte, timeout time.Duration, into []byte) ([]byte, error) {
	if into == nil {
		into = make([]byte, pgpage.BlockSize)
	}
	c := &call{page: into, done: make(chan struct{})}
	p.poolActive.Add(1)
	defer p.poolActive.Add(-1)
	// The write can block on a full pipe until the token holder reads
	// answers, which needs mu: only writeMu is held across it.
	p.writeMu.Lock()
	p.mu.Lock()
	err := p.err
	p.queue = append(p.queue, c)
	alone := len(p.queue) == 1
	p.mu.Unlock()
	if err != nil {
		p.writeMu.Unlock()
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	werr := p.stdin.SetWriteDeadline(deadline)
	if werr == nil {
		_, werr = p.stdin.Write(req)
	}
	p.writeMu.Unlock()
	if werr != nil {
		p.kill(p.errorf("write request: %w", werr))
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-c.done:
	case <-p.token:
		switch err := p.readUntil(c, deadline, alone); {
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.kill(p.errorf("request timed out after %v", timeout))
		case err != nil:
			p.kill(p.errorf("read answer: %w", err))
		}
		p.token <- struct{}{}
		<-c.done
	case <-timer.C:
		p.kill(p.errorf("request timed out after %v", timeout))
		<-c.done
	case <-ctx.Done():
		// c stays queued: whoever reads next takes its answer off the
		// pipe, and drops it, for c.page is the caller's again.
		p.mu.Lock()
		c.abandoned = true
		p.mu.Unlock()
		return nil, ctx.Err()
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.page, nil
}

// readUntil reads answers for the oldest calls until c has its own (or the
// process failed: then fail finished every call).
func (p *process) readUntil(c *call, deadline time.Time, alone bool) error {
	for {
		p.mu.Lock()
		if p.err != nil || len(p.queue) == 0 {
			p.mu.Unlock()
			return nil
		}
		head := p.queue[0]
		p.mu.Unlock()
		if err := p.readPage(p.answer, deadline, alone && head == c); err != nil {
			if errors.Is(err, io.EOF) {
				// Let the process finish dying, so the error says how.
				p.kill(nil)
				select {
				case <-p.reaped:
				case <-time.After(time.Second):
				}
			}
			return err
		}
		p.mu.Lock()
		if p.err == nil && len(p.queue) > 0 && p.queue[0] == head {
			p.queue = p.queue[1:]
			if !head.abandoned {
				copy(head.page, p.answer)
			}
			head.finish(nil)
		}
		p.mu.Unlock()
		if head == c {
			return nil
		}
	}
}

// readPage fills page from stdout with raw system calls (the pipe is
// non-blocking). When the pipe is empty it waits in poll(2) if block, else
// through the runtime's poller.
func (p *process) readPage(page []byte, deadline time.Time, block bool) error {
	n := 0
	var spun time.Duration
	var spinStart time.Time
	for n < len(page) {
		m, errno := rawRead(p.outFD, page[n:])
		switch {
		case m > 0:
			n += m
			continue
		case m == 0 && errno == 0:
			return io.EOF
		case errno == syscall.EINTR:
			continue
		case errno != syscall.EAGAIN:
			return errno
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return os.ErrDeadlineExceeded
		}
		if block && spun < spinFor && p.poolActive.Load() == 1 {
			// The answer of a short request comes within tens of
			// microseconds: waiting for it awake saves the wake-up of a
			// sleeping thread, which on a VM costs as much again.
			if spun == 0 {
				spinStart = time.Now()
			}
			spun = time.Since(spinStart) + 1
			continue
		}
		if block {
			fds := []unix.PollFd{{Fd: int32(p.outFD), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, int(wait/time.Millisecond)+1); err != nil && err != unix.EINTR {
				return err
			}
			continue
		}
		if err := p.stdout.SetReadDeadline(deadline); err != nil {
			return err
		}
		// Read calls the function, and again each time the poller says
		// the pipe is readable, until it returns true. The read must be
		// made inside it: Read first clears the poller's readiness, so a
		// wait alone could miss data that came after our last read.
		var rerr error
		err := p.outRC.Read(func(fd uintptr) bool {
			m, errno := rawRead(int(fd), page[n:])
			switch {
			case m > 0:
				n += m
				return n == len(page)
			case m == 0 && errno == 0:
				rerr = io.EOF
			case errno == syscall.EAGAIN:
				return false
			case errno != syscall.EINTR:
				rerr = errno
			}
			return true
		})
		if rerr != nil {
			return rerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// spinFor is how long a caller polls for its answer before it sleeps in
// poll(2), when it is the only request in flight on the whole pool. With
// more, the CPU it would spin on is one a redo process needs (a
// basebackup rebuilds pages from 8 goroutines on a 2-CPU machine).
const spinFor = 50 * time.Microsecond

// rawRead is read(2) without the runtime's system call bookkeeping: the
// pipe is non-blocking, so it never blocks (see libs/rawconn).
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), errno
}

// finish completes c; process.mu is held.
func (c *call) finish(err error) {
	c.err = err
	close(c.done)
}

// kill records why the process failed (the first reason wins; nil only
// kills) and kills it. Waiting and cleanup happen in spawn's goroutine.
func (p *process) kill(why error) {
	if why != nil {
		p.fail(why)
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

// fail marks the process failed; new requests are refused, the calls in
// flight fail.
func (p *process) fail(why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	p.err = why
	if !errors.Is(why, ErrProcess) {
		p.err = p.errorf("%w", why)
	}
	for _, c := range p.queue {
		c.finish(p.err)
	}
	p.queue = nil
	close(p.dead)
	p.stdin.Close()
}

func (p *process) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
		return true
	}
}

// errorf wraps ErrProcess and adds the last errors the process printed.
func (p *process) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if tail := p.stderr.lines(); tail != "" {
		return fmt.Errorf("%w: process %d: %w: %s", ErrProcess, p.id, err, tail)
	}
	return fmt.Errorf("%w: process %d: %w", ErrProcess, p.id, err)
}

// drainStderr forwards what the process prints to the log: PostgreSQL's
// ERROR, FATAL and PANIC reports at error level, the rest at debug.
func (p *process) drainStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "ERROR:") || strings.Contains(line, "FATAL:") || strings.Contains(line, "PANIC:") {
			p.stderr.add(line)
			p.log.Error().Str("stderr", line).Msg("WAL redo process")
		} else {
			p.log.Debug().Str("stderr", line).Msg("WAL redo process")
		}
	}
}

// stderrTail keeps the last few error lines of a process.
type stderrTail struct {
	mu   sync.Mutex
	last []string
}

func (t *stderrTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.last) == 3 {
		t.last = t.last[1:]
	}
	t.last = append(t.last, line)
}

func (t *stderrTail) lines() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.last, "; ")
}

// removeSharedMemory removes the System V segment of a dead redo process
// if it is still there. walredo_main() marks it for removal as soon as it
// starts, so this matters only for a process killed before that: the key
// and id are on line 7 of postmaster.pid.
func removeSharedMemory(dir string, pid int) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return
	}
	shmid, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(shmid, unix.IPC_STAT, &ds); err != nil {
		return
	}
	if int(ds.Cpid) == pid && ds.Nattch == 0 {
		_, _ = unix.SysvShmCtl(shmid, unix.IPC_RMID, nil)
	}
}

func removeProcessDir(dir string) { _ = os.RemoveAll(dir) }

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
