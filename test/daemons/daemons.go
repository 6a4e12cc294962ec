// Package daemons starts Strata's real binaries for tests, on loopback ports,
// and stops them when the test ends. It is the one harness for daemons, as
// pgharness is the one for PostgreSQL.
//
// Binaries come from $STRATA_BIN_DIR (the Makefile sets it to bin/ after
// building); without it they are built once per test process into a
// temporary directory.
package daemons

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "strata.dev/proto/safekeeper/v1"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary returns the path of a Strata binary (safekeeper, pageserver, ...).
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("STRATA_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "strata-bin-")
		if buildErr != nil {
			return
		}
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./safekeeper/cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build %s: %v", name, buildErr)
	}
	return filepath.Join(buildDir, name)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.work not found above the test directory")
		}
		dir = parent
	}
}

// FreePort returns a loopback address with a port nobody listens on now.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Safekeeper is a running (or stopped) safekeeper process.
type Safekeeper struct {
	ID       int
	Dir      string
	PGAddr   string
	GRPCAddr string
	HTTPAddr string
	Args     []string // extra flags

	t       testing.TB
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	conn    *grpc.ClientConn
}

// StartSafekeeper starts safekeeper id with a fresh data directory.
func StartSafekeeper(t testing.TB, id int, extraArgs ...string) *Safekeeper {
	t.Helper()
	s := &Safekeeper{
		ID: id, Dir: filepath.Join(t.TempDir(), fmt.Sprintf("sk%d", id)),
		PGAddr: FreePort(t), GRPCAddr: FreePort(t), HTTPAddr: FreePort(t),
		Args: extraArgs, t: t,
	}
	s.logPath = s.Dir + ".log"
	t.Cleanup(func() {
		s.stop(syscall.SIGKILL)
		if s.conn != nil {
			s.conn.Close()
		}
		if t.Failed() {
			s.dumpLog()
		}
	})
	s.Start()
	return s
}

// Start (re)starts the process on the same directory and ports and waits
// until its gRPC health check answers.
func (s *Safekeeper) Start() {
	t := s.t
	t.Helper()
	if s.cmd != nil {
		t.Fatalf("safekeeper %d is already running", s.ID)
	}
	args := append([]string{
		"--id", strconv.Itoa(s.ID), "--datadir", s.Dir,
		"--listen-pg", s.PGAddr, "--listen-grpc", s.GRPCAddr, "--listen-http", s.HTTPAddr,
	}, s.Args...)
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(Binary(t, "safekeeper"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start safekeeper %d: %v", s.ID, err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			s.cmd = nil
			s.dumpLog()
			t.Fatalf("safekeeper %d exited during startup", s.ID)
		default:
		}
		if s.healthy() {
			return
		}
		if time.Now().After(deadline) {
			s.dumpLog()
			t.Fatalf("safekeeper %d did not become healthy in 30 s", s.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Safekeeper) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.grpcConn()).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
}

func (s *Safekeeper) grpcConn() *grpc.ClientConn {
	if s.conn == nil {
		c, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.t.Fatal(err)
		}
		s.conn = c
	}
	return s.conn
}

// GRPCConn is the shared gRPC connection to the safekeeper.
func (s *Safekeeper) GRPCConn() *grpc.ClientConn { return s.grpcConn() }

// Client returns a gRPC client of the safekeeper.
func (s *Safekeeper) Client() pb.SafekeeperClient { return pb.NewSafekeeperClient(s.grpcConn()) }

// Kill sends SIGKILL and waits for the process to go.
func (s *Safekeeper) Kill() { s.t.Helper(); s.stop(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to go.
func (s *Safekeeper) Stop() { s.t.Helper(); s.stop(syscall.SIGTERM) }

// Pid is the process id while it runs, else 0.
func (s *Safekeeper) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process is up.
func (s *Safekeeper) Running() bool { return s.cmd != nil }

func (s *Safekeeper) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Log returns what the process wrote so far.
func (s *Safekeeper) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *Safekeeper) dumpLog() {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	s.t.Logf("--- safekeeper %d log (last %d lines) ---\n%s", s.ID, len(lines), bytes.Join(lines, []byte("\n")))
}

// TimelineDir is where the safekeeper keeps a timeline's files.
func (s *Safekeeper) TimelineDir(tenant, timeline string) string {
	return filepath.Join(s.Dir, tenant, timeline)
}
