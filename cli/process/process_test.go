package process

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     stat
		bad      bool
	}{
		{name: "plain", in: "123 (sleep) S 1 123 123 0 -1 4194560 96 0 0 0 0 0 0 0 20 0 1 0 4242 5660672 128 18446744073709551615",
			want: stat{state: 'S', pgrp: 123, start: 4242}},
		{name: "comm with spaces and parentheses", in: "77 (a) b (c) Z 1 70 70 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0 0",
			want: stat{state: 'Z', pgrp: 70, start: 99}},
		{name: "no comm", in: "77 S 1 70", bad: true},
		{name: "too short", in: "77 (x) S 1 70 70", bad: true},
		{name: "bad start", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 zz 0", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseStat(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParsePidFile(t *testing.T) {
	if pid, start, err := parsePidFile("p", "42 1234\n"); err != nil || pid != 42 || start != 1234 {
		t.Errorf("parsePidFile: %d %d %v", pid, start, err)
	}
	for _, in := range []string{"", "42", "x 1", "42 y", "-1 5", "1 2 3"} {
		if _, _, err := parsePidFile("p", in); err == nil || !strings.Contains(err.Error(), "pid file p") {
			t.Errorf("parsePidFile(%q): %v, want an error naming the file", in, err)
		}
	}
}

func spec(t *testing.T, name string, args ...string) Spec {
	dir := t.TempDir()
	return Spec{Name: name, Path: args[0], Args: args[1:], LogPath: filepath.Join(dir, name+".log"), PidPath: filepath.Join(dir, name+".pid")}
}

// A started process runs detached in its own session, Check sees it, and
// Stop ends it, removes the pid file, and reports it was running.
func TestStartCheckStop(t *testing.T) {
	s := spec(t, "sleeper", "/bin/sleep", "60")
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) })
	if sid, err := syscall.Getpgid(p.Pid); err != nil || sid != p.Pid {
		t.Errorf("process group %d, %v; want its own (%d)", sid, err, p.Pid)
	}
	st, err := Check(s.PidPath)
	if err != nil || !st.Running || st.Pid != p.Pid {
		t.Fatalf("Check: %+v, %v; want running pid %d", st, err, p.Pid)
	}
	st, err = Stop(context.Background(), s.PidPath, syscall.SIGTERM, 10*time.Second)
	if err != nil || !st.Running || st.Pid != p.Pid {
		t.Fatalf("Stop: %+v, %v", st, err)
	}
	if isRunning(p.Pid) {
		t.Errorf("pid %d still runs after Stop", p.Pid)
	}
	if _, err := os.Stat(s.PidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left after Stop: %v", err)
	}
	st, err = Check(s.PidPath)
	if err != nil || st.Running || st.Pid != 0 {
		t.Errorf("Check after Stop: %+v, %v", st, err)
	}
	// Stopping again is not an error.
	if st, err := Stop(context.Background(), s.PidPath, syscall.SIGTERM, time.Second); err != nil || st.Running {
		t.Errorf("second Stop: %+v, %v", st, err)
	}
	log, _ := os.ReadFile(s.LogPath)
	if !strings.Contains(string(log), "strata starts /bin/sleep 60") {
		t.Errorf("log lacks the start line:\n%s", log)
	}
}

// isRunning reports whether pid is a live (not zombie) process.
func isRunning(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// A process that ignores SIGTERM is killed with its whole group after the
// grace period.
func TestStopEscalatesToSIGKILL(t *testing.T) {
	s := spec(t, "stubborn", "/bin/sh", "-c", `trap "" TERM; sleep 60 & while :; do sleep 0.05; done`)
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) })
	// Wait until the background sleep exists in the group.
	deadline := time.Now().Add(30 * time.Second)
	for !groupHasOther(p.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("the shell never started its child")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := Stop(context.Background(), s.PidPath, syscall.SIGTERM, 300*time.Millisecond)
	if err != nil || !st.Running {
		t.Fatalf("Stop: %+v, %v", st, err)
	}
	if isRunning(p.Pid) || groupExists(p.Pid) {
		t.Errorf("pid %d or its group survived Stop", p.Pid)
	}
}

func groupHasOther(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		if st, err := readStat(pid); err == nil && st.pgrp == pgid && st.state != 'Z' {
			return true
		}
	}
	return false
}

// A pid file whose pid now belongs to another process (another start
// time) does not count as running, and Stop does not signal that process.
func TestRecycledPid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	start, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(path, os.Getpid(), start+1); err != nil {
		t.Fatal(err)
	}
	st, err := Check(path)
	if err != nil || st.Running || st.Pid != os.Getpid() {
		t.Fatalf("Check: %+v, %v; want pid %d, not running", st, err, os.Getpid())
	}
	if _, err := Stop(context.Background(), path, syscall.SIGKILL, time.Second); err != nil {
		t.Fatal(err) // had it signalled us, the test would be dead
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(path); err == nil {
		t.Error("Check of a garbage pid file: no error")
	}
}

// A process that exits during startup is reported with its log.
func TestWaitReadyExited(t *testing.T) {
	s := spec(t, "crasher", "/bin/sh", "-c", "echo boom: bad config >&2; exit 3")
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), 30*time.Second, func(context.Context) error { return os.ErrNotExist })
	if err == nil || !strings.Contains(err.Error(), "exited during startup") || !strings.Contains(err.Error(), "boom: bad config") {
		t.Fatalf("WaitReady: %v", err)
	}
	if _, err := os.Stat(s.PidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
}

func TestWaitReadyTimeout(t *testing.T) {
	s := spec(t, "slow", "/bin/sleep", "60")
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), 200*time.Millisecond, func(context.Context) error { return os.ErrDeadlineExceeded })
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("WaitReady: %v", err)
	}
	if isRunning(p.Pid) {
		t.Errorf("a process that never became ready was left running")
	}
}

func TestAddrFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := ln.Addr().String()
	if err := AddrFree(taken); err == nil || !strings.Contains(err.Error(), taken+" is in use") {
		t.Errorf("AddrFree(%s) while listening: %v", taken, err)
	}
	ln.Close()
	free, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if err := AddrFree(free); err != nil {
		t.Errorf("AddrFree(FreeAddr()): %v", err)
	}
}
