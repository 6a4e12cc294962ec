// Package process runs a local cluster's daemons as detached background
// processes that outlive the CLI: each in its own session (a Ctrl-C in the
// terminal does not reach it, and its children share its process group),
// output appended to a log file, and a pid file holding the pid and the
// process's start time, so that a later strata command can find, check and
// stop it, and never mistakes a recycled pid for it.
package process

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"strata.dev/libs/pguser"
)

// Spec describes a process to start.
type Spec struct {
	// Name is for messages, e.g. "safekeeper 1".
	Name    string
	Path    string
	Args    []string
	Dir     string // working directory; empty: the current one
	LogPath string
	PidPath string
	// User is who it runs as; the zero value: the CLI's own user.
	User pguser.User
}

// Proc is a process Start started in this invocation of the CLI.
type Proc struct {
	Spec
	Pid  int
	proc *os.Process
}

// Start starts spec detached and writes its pid file.
func Start(spec Spec) (*Proc, error) {
	logf, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", spec.Name, err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	defer null.Close()
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	spec.User.Apply(cmd)
	fmt.Fprintf(logf, "--- %s: strata starts %s %s\n", time.Now().Format(time.RFC3339), spec.Path, strings.Join(spec.Args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Proc{Spec: spec, Pid: cmd.Process.Pid, proc: cmd.Process}
	start, err := startTime(p.Pid)
	if err == nil {
		err = writePidFile(spec.PidPath, p.Pid, start)
	}
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	return p, nil
}

// Exited reports whether the process has ended (and reaps it).
func (p *Proc) Exited() bool {
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(p.Pid, &ws, syscall.WNOHANG, nil)
	return pid == p.Pid || err != nil
}

// Kill kills the process and its group, reaps it and removes its pid file:
// for a process that failed to come up.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_, _ = p.proc.Wait()
	os.Remove(p.PidPath)
}

// WaitReady polls ready until it succeeds, the process exits, or timeout
// passes. On failure the process is killed and the error carries the end
// of its log.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p.Exited() {
			os.Remove(p.PidPath)
			return fmt.Errorf("%s exited during startup; end of %s:\n%s", p.Name, p.LogPath, LogTail(p.LogPath, 20))
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			p.Kill()
			return fmt.Errorf("%s not ready after %v (%v); end of %s:\n%s", p.Name, timeout, last, p.LogPath, LogTail(p.LogPath, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Status is what a pid file says about its process.
type Status struct {
	// Pid is the recorded pid; 0 if there is no pid file.
	Pid     int
	Running bool
}

// Check reads pidPath and checks whether its process still runs.
func Check(pidPath string) (Status, error) {
	pid, start, err := readPidFile(pidPath)
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, err
	}
	return Status{Pid: pid, Running: alive(pid, start)}, nil
}

// Stop ends the process of pidPath: sig (SIGTERM for a daemon), then
// SIGKILL to its whole process group if it is still there after grace. It
// returns once the process is gone (or an error if it is not), having
// removed the pid file; the status is what it was before.
func Stop(ctx context.Context, pidPath string, sig syscall.Signal, grace time.Duration) (Status, error) {
	pid, start, err := readPidFile(pidPath)
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, err
	}
	st := Status{Pid: pid, Running: alive(pid, start)}
	if st.Running {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return st, fmt.Errorf("signal pid %d: %w", pid, err)
		}
		if err := Await(ctx, pidPath, grace); err != nil {
			return st, err
		}
	}
	if err := os.Remove(pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("remove %s: %w", pidPath, err)
	}
	return st, nil
}

// Await waits up to grace for the process of pidPath (and its process
// group) to end, then kills the group and waits for it to go.
func Await(ctx context.Context, pidPath string, grace time.Duration) error {
	pid, start, err := readPidFile(pidPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	gone := func() bool { return !alive(pid, start) }
	if waitUntil(ctx, grace, gone) {
		// Children (backends, WAL-redo processes) normally end with their
		// parent; the group is ours while its leader was verified ours.
		if waitUntil(ctx, time.Second, func() bool { return !groupExists(pid) }) {
			return nil
		}
	}
	if !gone() || groupExists(pid) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !waitUntil(ctx, 10*time.Second, func() bool { return gone() && !groupExists(pid) }) {
		return fmt.Errorf("pid %d is still running after SIGKILL", pid)
	}
	return nil
}

// waitUntil polls cond until it holds (true) or d or ctx ends (false).
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupExists reports whether any process of process group pgid is left
// (zombies included: they still need their parent to reap them, which
// is nothing left for us to stop).
func groupExists(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if err != nil {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			return true
		}
	}
	return false
}

// alive reports whether pid runs and is the process that started at
// start (a zombie counts as gone).
func alive(pid int, start uint64) bool {
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	if st.state == 'Z' || st.state == 'X' {
		// Our own child from this invocation: reap it.
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		return false
	}
	return st.start == start
}

func startTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.start, nil
}

// stat is what we use of /proc/<pid>/stat.
type stat struct {
	state byte
	pgrp  int
	start uint64 // clock ticks after boot
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	return parseStat(string(b))
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp ...",
// comm may hold spaces and parentheses, so fields count from the last ')'.
func parseStat(s string) (stat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("malformed /proc stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("malformed /proc stat %q", s)
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return stat{}, fmt.Errorf("malformed /proc stat pgrp %q", f[2])
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("malformed /proc stat starttime %q", f[19])
	}
	return stat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

func writePidFile(path string, pid int, start uint64) error {
	if err := os.WriteFile(path, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

func readPidFile(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	return parsePidFile(path, string(b))
}

func parsePidFile(path, s string) (pid int, start uint64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("pid file %s: want \"<pid> <start time>\", got %q", path, s)
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("pid file %s: bad pid %q", path, f[0])
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("pid file %s: bad start time %q", path, f[1])
	}
	return pid, start, nil
}

// LogTail returns the last n lines of the file at path.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AddrFree checks that nothing listens on addr (host:port) by listening
// on it for a moment.
func AddrFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is in use: %w", addr, err)
	}
	return ln.Close()
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
