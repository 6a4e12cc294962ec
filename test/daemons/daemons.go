// Package daemons starts Strata's real binaries for tests, on loopback ports,
// and stops them when the test ends. It is the one harness for daemons, as
// pgharness is the one for PostgreSQL.
//
// Binaries come from $STRATA_BIN_DIR (the Makefile sets it to bin/ after
// building); without it they are built once per test process into a
// temporary directory, which RunTests removes when the tests are done: test
// packages using daemons call it from TestMain.
package daemons

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/test/pgharness"
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
		buildDir, buildErr = MkdirTemp("", "strata-bin-")
		if buildErr != nil {
			return
		}
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./safekeeper/cmd/...", "./pageserver/cmd/...", "./libs/walproposer/cmd/...")
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

// FreePort returns a loopback address with a port nobody listens on now
// (pgharness.FreePort says how it avoids ports a connection could take).
func FreePort(t testing.TB) string {
	t.Helper()
	p, err := pgharness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// Safekeeper is a safekeeper process with its own data directory and ports.
type Safekeeper struct {
	*Process
	ID       int
	Dir      string
	PGAddr   string
	GRPCAddr string
	HTTPAddr string

	t    testing.TB
	conn *grpc.ClientConn
}

// StartSafekeeper starts safekeeper id with a fresh data directory.
func StartSafekeeper(t testing.TB, id int, extraArgs ...string) *Safekeeper {
	t.Helper()
	s := &Safekeeper{
		ID: id, Dir: filepath.Join(t.TempDir(), fmt.Sprintf("sk%d", id)),
		PGAddr: FreePort(t), GRPCAddr: FreePort(t), HTTPAddr: FreePort(t), t: t,
	}
	args := append([]string{
		"--id", strconv.Itoa(id), "--datadir", s.Dir,
		"--listen-pg", s.PGAddr, "--listen-grpc", s.GRPCAddr, "--listen-http", s.HTTPAddr,
	}, extraArgs...)
	s.Process = newProcess(t, fmt.Sprintf("safekeeper %d", id), Binary(t, "safekeeper"), s.Dir+".log", args, s.healthy)
	t.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
	})
	s.Start()
	return s
}

func (s *Safekeeper) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.GRPCConn()).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
}

// GRPCConn is the shared gRPC connection to the safekeeper.
func (s *Safekeeper) GRPCConn() *grpc.ClientConn {
	if s.conn == nil {
		c, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			s.t.Fatal(err)
		}
		s.conn = c
	}
	return s.conn
}

// Client returns a gRPC client of the safekeeper.
func (s *Safekeeper) Client() pb.SafekeeperClient { return pb.NewSafekeeperClient(s.GRPCConn()) }

// Timeline returns the safekeeper's view of a timeline, failing the test on error.
func (s *Safekeeper) Timeline(t testing.TB, ttid id.TenantTimeline) *pb.TimelineInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := s.Client().GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String()})
	if err != nil {
		t.Fatalf("GetTimeline on safekeeper %d: %v", s.ID, err)
	}
	return info
}

// PGAddrs are the safekeepers' libpq addresses.
func PGAddrs(sks []*Safekeeper) []string {
	var a []string
	for _, sk := range sks {
		a = append(a, sk.PGAddr)
	}
	return a
}

// GRPCAddrs are the safekeepers' gRPC addresses.
func GRPCAddrs(sks []*Safekeeper) []string {
	var a []string
	for _, sk := range sks {
		a = append(a, sk.GRPCAddr)
	}
	return a
}

// SafekeeperArgs are the pageserver flags that name sks: their libpq
// addresses (--safekeepers) and gRPC addresses (--safekeepers-grpc), in the
// same order: a pageserver so started watches them and reports to them over
// gRPC, as a configured one does.
func SafekeeperArgs(sks []*Safekeeper) []string {
	return []string{"--safekeepers", strings.Join(PGAddrs(sks), ","), "--safekeepers-grpc", strings.Join(GRPCAddrs(sks), ",")}
}

// WaitFlushed waits (60 s at most) until every safekeeper reports flush_lsn ≥ l.
func WaitFlushed(t testing.TB, sks []*Safekeeper, ttid id.TenantTimeline, l lsn.LSN) {
	t.Helper()
	for _, sk := range sks {
		deadline := time.Now().Add(60 * time.Second)
		for {
			f := lsn.LSN(sk.Timeline(t, ttid).FlushLsn)
			if f >= l {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("safekeeper %d did not flush %v in 60 s (at %v)", sk.ID, l, f)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TimelineDir is where the safekeeper keeps a timeline's files.
func (s *Safekeeper) TimelineDir(tenant, timeline string) string {
	return filepath.Join(s.Dir, tenant, timeline)
}

// Walproposer is a walproposer process.
type Walproposer struct {
	*Process
	HTTPAddr string
}

// NewWalproposer prepares a walproposer with args (plus --listen-http); call
// Start to run it. It counts as ready once its metrics endpoint answers.
func NewWalproposer(t testing.TB, args ...string) *Walproposer {
	t.Helper()
	w := &Walproposer{HTTPAddr: FreePort(t)}
	args = append(append([]string{}, args...), "--listen-http", w.HTTPAddr)
	w.Process = newProcess(t, "walproposer", Binary(t, "walproposer"), filepath.Join(t.TempDir(), "walproposer.log"), args, w.ready)
	return w
}

func (w *Walproposer) ready() bool { return answersOK("http://" + w.HTTPAddr + "/metrics") }

// answersOK reports whether a GET of url answers 200 OK.
func answersOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// RunSyncSafekeepers runs walproposer --sync-safekeepers with args and
// returns its standard output, standard error and exit error.
func RunSyncSafekeepers(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(Binary(t, "walproposer"), append([]string{"--sync-safekeepers", "--listen-http", ""}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Metric reads one unlabelled sample from the /metrics page at addr; 0 if
// the daemon or the sample is not there.
func Metric(addr, name string) float64 {
	v, _ := readMetric(addr, name)
	return v
}

// readMetric reads one unlabelled sample from the /metrics page at addr.
func readMetric(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", name, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("metric %s not in /metrics", name)
}
