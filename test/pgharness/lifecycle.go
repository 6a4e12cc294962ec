package pgharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// startAttempts bounds how often Start moves to a new port after
	// postgres could not bind the one it was given.
	startAttempts = 3
	// pgCtlWait is pg_ctl's -t: how long start and stop may take.
	pgCtlWait = "60"
	// readyTimeout bounds the wait for the first TCP connection after
	// pg_ctl reported the server started.
	readyTimeout = 30 * time.Second
	// exitTimeout bounds the wait for a killed postmaster to be gone.
	exitTimeout = 10 * time.Second
	// slowOp is when starting or stopping a server is slow enough to be
	// worth a log line: on a busy CI machine that is the only trace of why a
	// test took long.
	slowOp = 10 * time.Second
)

// logIfSlow logs what took since start if that was longer than slowOp.
func logIfSlow(t testing.TB, what string, start time.Time) {
	if d := time.Since(start); d > slowOp {
		t.Logf("pgharness: %s took %v", what, d.Round(time.Millisecond))
	}
}

// errPortInUse means postgres exited because its port was taken.
var errPortInUse = errors.New("port in use")

// Start starts the server with pg_ctl -w and returns once it accepts TCP
// connections. If the port was taken meanwhile, it moves to a new one
// (Port changes) and tries again.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	defer logIfSlow(t, "start", time.Now())
	for attempt := 1; ; attempt++ {
		err := c.start()
		if err == nil {
			return
		}
		if attempt == startAttempts || !errors.Is(err, errPortInUse) {
			t.Fatalf("pgharness: start server: %v", err)
		}
		t.Logf("pgharness: port %d was taken, trying another", c.port)
		if c.port, err = FreePort(); err != nil {
			t.Fatalf("pgharness: %v", err)
		}
		if err := c.writeConf(); err != nil {
			t.Fatalf("pgharness: %v", err)
		}
	}
}

func (c *Cluster) start() error {
	logStart := fileSize(c.logPath)
	out, err := c.run("pg_ctl", "start", "-w", "-t", pgCtlWait, "-D", c.dataDir, "-l", c.logPath)
	if err != nil {
		log := c.logSince(logStart)
		if strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") {
			return fmt.Errorf("port %d: %w", c.port, errPortInUse)
		}
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, log)
	}
	err = poll(readyTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		return fmt.Errorf("server on port %d does not accept connections: %w\nserver log:\n%s",
			c.port, err, c.logSince(logStart))
	}
	return nil
}

// Stop shuts the server down in fast mode (clean, with a checkpoint).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	defer logIfSlow(t, "fast shutdown", time.Now())
	if err := c.stop("fast"); err != nil {
		t.Fatalf("pgharness: stop server: %v", err)
	}
}

// Kill shuts the server down in immediate mode: no checkpoint, so the next
// Start performs crash recovery.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	defer logIfSlow(t, "immediate shutdown", time.Now())
	if err := c.stop("immediate"); err != nil {
		t.Fatalf("pgharness: kill server: %v", err)
	}
}

// Restart is Stop then Start.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

func (c *Cluster) stop(mode string) error {
	out, err := c.run("pg_ctl", "stop", "-w", "-t", pgCtlWait, "-D", c.dataDir, "-m", mode)
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	return nil
}

// cleanup runs at the end of the test: it shows the end of the server log if
// the test failed, makes sure no server is left, and removes BaseDir.
func (c *Cluster) cleanup(t testing.TB) {
	defer logIfSlow(t, "cleanup", time.Now())
	if t.Failed() {
		if tail, err := tailLines(c.logPath, logTailLines); err == nil && tail != "" {
			t.Logf("pgharness: last %d lines of %s:\n%s", logTailLines, c.logPath, tail)
		}
	}
	if err := c.shutdown(); err != nil {
		t.Errorf("pgharness: cleanup: %v", err)
	}
	if err := os.RemoveAll(c.baseDir); err != nil {
		t.Errorf("pgharness: cleanup: %v", err)
	}
}

// shutdown stops a server that may be running, may be half started, or may
// never have existed. It asks pg_ctl for an immediate stop and kills the
// postmaster itself if that fails.
func (c *Cluster) shutdown() error {
	pid, err := c.postmasterPID()
	if err != nil || pid == 0 {
		return err
	}
	if err := c.stop("immediate"); err == nil {
		return nil
	}
	return c.killPostmaster(pid)
}

// postmasterPID reads postmaster.pid; 0 means there is no such file.
func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		// A file still being written by a starting postmaster: nothing
		// to signal by pid.
		return 0, nil
	}
	return pid, nil
}

// killPostmaster SIGKILLs the postmaster and its children (each child is in
// its own session, so a process-group kill would miss them) and waits until
// they are gone. A stale postmaster.pid may name a recycled pid, so it acts
// only on a process whose working directory is this cluster's data
// directory: a postmaster and its children chdir there.
func (c *Cluster) killPostmaster(pid int) error {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return nil
	}
	if data, err := filepath.EvalSymlinks(c.dataDir); err != nil || cwd != data {
		return nil
	}
	pids := append(childrenOf(pid), pid)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	err = poll(exitTimeout, func() error {
		for _, p := range pids {
			if processAlive(p) {
				return fmt.Errorf("process %d still alive", p)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kill postmaster %d: %w", pid, err)
	}
	return nil
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

// processAlive reports whether pid exists and is not a zombie. Zombies count
// as gone: in a container whose init does not reap, an orphaned postmaster
// stays a zombie forever.
func processAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat returns the state and parent pid from /proc/pid/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The command name in parentheses may contain spaces; fields after the
	// last ')' are "state ppid ...".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the last logTailLines lines the server logged after
// offset, or a note why it cannot.
func (c *Cluster) logSince(offset int64) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<62))
	if err != nil {
		return fmt.Sprintf("(read server log: %v)", err)
	}
	return lastLines(string(b), logTailLines)
}

// tailLines returns the last n lines of the file at path.
func tailLines(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return lastLines(string(b), n), nil
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
