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
// requests in flight on one process (pipelining): the reader goroutine
// hands each 8192-byte answer to the oldest waiting call.
type process struct {
	id     int
	dir    string
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	log    zerolog.Logger

	mu    sync.Mutex // serialises writes; with them, the order of calls
	calls chan *call // written, not yet answered, oldest first
	err   error      // why the process failed; set once, under mu
	dead  chan struct{}

	inflight atomic.Int32 // calls reserved or running
	lastUsed atomic.Int64 // unix nanoseconds
	exited   chan struct{}
	stderr   stderrTail
}

// call is one request waiting for its answer.
type call struct {
	page []byte
	err  error
	done chan struct{}
}

// spawn starts a redo process on a fresh copy of the template and waits
// until it is ready to serve.
func spawn(ctx context.Context, o *Options, tmpl string, id int) (*process, error) {
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

	p := &process{id: id, dir: dir, log: o.Log.With().Int("redo_process", id).Logger(),
		calls: make(chan *call, 4096), dead: make(chan struct{}), exited: make(chan struct{})}
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
		removeSharedMemory(dir, p.cmd.Process.Pid)
		removeProcessDir(dir)
		p.log.Debug().Err(err).Msg("WAL redo process ended")
		close(p.exited)
	}()

	if err := p.handshake(ctx, o.Timeout); err != nil {
		p.kill(err)
		<-p.exited
		p.stdout.Close()
		return nil, err
	}
	p.lastUsed.Store(time.Now().UnixNano())
	go p.readAnswers()
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
// answer. A timeout kills the process.
func (p *process) request(ctx context.Context, req []byte, timeout time.Duration) ([]byte, error) {
	c := &call{page: make([]byte, pgpage.BlockSize), done: make(chan struct{})}
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return nil, err
	}
	p.calls <- c
	_, werr := p.stdin.Write(req)
	p.mu.Unlock()
	if werr != nil {
		// The reader fails c once the process is gone.
		p.kill(p.errorf("write request: %w", werr))
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.page, c.err
	case <-timer.C:
		p.kill(p.errorf("request timed out after %v", timeout))
		<-c.done
		return nil, c.err
	case <-ctx.Done():
		// c stays queued: the reader still takes its answer off the pipe.
		return nil, ctx.Err()
	}
}

// readAnswers hands answers to calls in order until the process fails,
// then fails every call left.
func (p *process) readAnswers() {
	for {
		select {
		case c := <-p.calls:
			if _, err := io.ReadFull(p.stdout, c.page); err != nil {
				// Let the process finish dying, so the error says how.
				p.kill(nil)
				select {
				case <-p.exited:
				case <-time.After(time.Second):
				}
				p.kill(p.errorf("read answer: %w", err))
				c.finish(p.failure())
				continue
			}
			c.finish(nil)
		case <-p.dead:
			for {
				select {
				case c := <-p.calls:
					c.finish(p.failure())
				default:
					p.stdout.Close()
					return
				}
			}
		}
	}
}

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
	close(p.dead)
	p.stdin.Close()
}

func (p *process) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
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
