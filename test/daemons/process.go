package daemons

import (
	"bytes"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is one run-able daemon: its binary and arguments, its log file,
// and the way to tell that it is up. Start, Stop and Kill can be repeated.
type Process struct {
	Name    string // for messages, e.g. "safekeeper 2"
	Binary  string
	Args    []string
	LogPath string
	// Ready reports whether a started process is serving; Start waits for it.
	Ready func() bool
	// Prepare, if set, adjusts the command before each start (e.g. the
	// user it runs as).
	Prepare func(*exec.Cmd)

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status once done is closed
}

func newProcess(t testing.TB, name, binary, logPath string, args []string, ready func() bool) *Process {
	p := &Process{Name: name, Binary: binary, Args: args, LogPath: logPath, Ready: ready, t: t}
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			p.DumpLog()
		}
	})
	return p
}

// Start runs the process and waits until Ready (30 s at most).
func (p *Process) Start() {
	p.t.Helper()
	if p.cmd != nil {
		p.t.Fatalf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.Binary, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test process dies (a timeout, a crash), so do its daemons.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.Prepare != nil {
		p.Prepare(cmd)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() { p.err = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			p.cmd = nil
			p.DumpLog()
			p.t.Fatalf("%s exited during startup: %v", p.Name, p.err)
		default:
		}
		if p.Ready == nil || p.Ready() {
			return
		}
		if time.Now().After(deadline) {
			p.DumpLog()
			p.t.Fatalf("%s did not become ready in 30 s", p.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to go.
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

// Running reports whether the process is up.
func (p *Process) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the process exits, and its status then.
func (p *Process) Exited() (<-chan struct{}, func() error) {
	return p.done, func() error { return p.err }
}

// Pid is the process id while it runs, else 0.
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Process) signal(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Log returns what the process wrote so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// DumpLog writes the end of the log to the test output.
func (p *Process) DumpLog() {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	p.t.Logf("--- %s log (last %d lines) ---\n%s", p.Name, len(lines), bytes.Join(lines, []byte("\n")))
}
