package daemons

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/httpapi"
	"strata.dev/pageserver/pageservice"
	"strata.dev/test/pgharness"
)

// Pageserver is a pageserver process. It runs as pgharness.ServerUser
// (when the test runs as root, an unprivileged user: it runs initdb).
type Pageserver struct {
	*Process
	Dir      string // data directory
	HTTPAddr string
	GRPCAddr string
	PGAddr   string
}

// StartPageserver starts a pageserver with a fresh data directory and
// args (e.g. --safekeepers; --safekeepers-grpc is added for safekeepers
// this harness started, see withSafekeepersGRPC).
func StartPageserver(t testing.TB, args ...string) *Pageserver {
	t.Helper()
	p := NewPageserver(t, args...)
	p.Start()
	return p
}

// NewPageserver prepares a pageserver; Start runs it.
func NewPageserver(t testing.TB, args ...string) *Pageserver {
	t.Helper()
	base := pgharness.TempDir(t)
	p := &Pageserver{Dir: filepath.Join(base, "pageserver"), HTTPAddr: FreePort(t), GRPCAddr: FreePort(t), PGAddr: FreePort(t)}
	args = append([]string{"--id", "1", "--datadir", p.Dir,
		"--listen-http", p.HTTPAddr, "--listen-grpc", p.GRPCAddr, "--listen-pg", p.PGAddr}, args...)
	u := pgharness.ServerUser(t)
	bin, lib := Binary(t, "pageserver"), RedoLibrary(t)
	if u.Switch {
		bin, lib = reachableCopy(t, bin), reachableCopy(t, lib)
	}
	args = append([]string{"--walredo-library", lib}, args...)
	p.Process = newProcess(t, "pageserver", bin, filepath.Join(t.TempDir(), "pageserver.log"), args, p.ready)
	p.Prepare = u.Apply
	return p
}

var (
	copyMu sync.Mutex
	copies = map[string]string{}
)

// reachableCopy copies a binary, once per test process, into a directory
// every user can reach: the build or the checkout may be private to root.
func reachableCopy(t testing.TB, bin string) string {
	t.Helper()
	copyMu.Lock()
	defer copyMu.Unlock()
	if c, ok := copies[bin]; ok {
		return c
	}
	dir, err := MkdirTemp("/tmp", "strata-bin-shared-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(c, b, 0o755); err != nil {
		t.Fatal(err)
	}
	copies[bin] = c
	return c
}

func (p *Pageserver) ready() bool { return answersOK("http://" + p.HTTPAddr + "/v1/status") }

// ConnString is the libpq connection string of the pageserver's libpq
// port (pagestream, basebackup).
func (p *Pageserver) ConnString() string {
	host, port, _ := net.SplitHostPort(p.PGAddr)
	return fmt.Sprintf("host=%s port=%s user=strata database=postgres sslmode=disable", host, port)
}

// Basebackup writes the libpq basebackup command's tar for ttid to w;
// args follow the timeline id (an LSN, --gzip). The command waits for WAL
// up to the pageserver's --wait-lsn-timeout; ctx bounds the whole fetch.
func (p *Pageserver) Basebackup(ctx context.Context, w io.Writer, ttid id.TenantTimeline, args ...string) error {
	pc, err := pgconn.Connect(ctx, p.ConnString())
	if err != nil {
		return fmt.Errorf("connect to the pageserver's libpq port %s: %w", p.PGAddr, err)
	}
	defer pc.Close(context.Background())
	cmd := strings.Join(append([]string{"basebackup", ttid.Tenant.String(), ttid.Timeline.String()}, args...), " ")
	if _, err := pc.CopyTo(ctx, w, cmd); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// Pagestream connects to the pageserver's pagestream for ttid with
// protocol v (30 s at most to connect); the connection closes when the
// test ends.
func (p *Pageserver) Pagestream(t testing.TB, ttid id.TenantTimeline, v pageservice.Version) *pageservice.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cl, err := pageservice.Dial(ctx, p.PGAddr, ttid, v)
	if err != nil {
		t.Fatalf("pagestream of %s: %v", ttid, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TimelineDir is where the pageserver keeps a timeline's files.
func (p *Pageserver) TimelineDir(ttid id.TenantTimeline) string {
	return filepath.Join(p.Dir, "tenants", ttid.Tenant.String(), "timelines", ttid.Timeline.String())
}

// Call makes a management API request and decodes a 2xx JSON reply into
// out (if not nil). Any other status is an error carrying the reply.
func (p *Pageserver) Call(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, "http://"+p.HTTPAddr+path, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Status: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// HTTPError is a management API reply with a non-2xx status.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// TimelinePath is the management API path of a timeline.
func TimelinePath(ttid id.TenantTimeline) string {
	return "/v1/tenant/" + ttid.Tenant.String() + "/timeline/" + ttid.Timeline.String()
}

// Timeline reads a timeline's status, failing the test on error.
func (p *Pageserver) Timeline(t testing.TB, ttid id.TenantTimeline) httpapi.TimelineInfo {
	t.Helper()
	var ti httpapi.TimelineInfo
	if err := p.Call("GET", TimelinePath(ttid), nil, &ti); err != nil {
		t.Fatalf("pageserver: timeline %s: %v", ttid, err)
	}
	return ti
}

// ImportBasebackup uploads a data directory tar as a new timeline.
func (p *Pageserver) ImportBasebackup(ttid id.TenantTimeline, tarball io.Reader, base, end lsn.LSN) error {
	q := "?pg_version=15"
	if base != lsn.Invalid {
		q += "&base_lsn=" + base.String()
	}
	if end != lsn.Invalid {
		q += "&end_lsn=" + end.String()
	}
	return p.Call("PUT", TimelinePath(ttid)+"/import_basebackup"+q, tarball, nil)
}

// ImportWAL uploads a tar of WAL segments for a timeline imported with an end LSN.
func (p *Pageserver) ImportWAL(ttid id.TenantTimeline, tarball io.Reader, start, end lsn.LSN) error {
	return p.Call("PUT", TimelinePath(ttid)+"/import_wal?start_lsn="+start.String()+"&end_lsn="+end.String(), tarball, nil)
}

// WaitLastRecord waits (up to timeout) until the timeline's last record
// LSN reaches l, and returns its status then.
func (p *Pageserver) WaitLastRecord(t testing.TB, ttid id.TenantTimeline, l lsn.LSN, timeout time.Duration) httpapi.TimelineInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ti := p.Timeline(t, ttid)
		if ti.LastRecordLSN >= l {
			return ti
		}
		if time.Now().After(deadline) {
			t.Fatalf("pageserver: timeline %s at %s after %v, want %s (state %s %s, receiver error %q)",
				ttid, ti.LastRecordLSN, timeout, l, ti.State, ti.StateError, ti.WALReceiverLastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DataDirTar is a tar of a stopped cluster's data directory, as
// ImportBasebackup uploads it.
func DataDirTar(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	if err := w.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Metric reads one unlabelled sample from the pageserver's /metrics,
// failing the test if it is missing.
func (p *Pageserver) Metric(t testing.TB, name string) float64 {
	t.Helper()
	v, err := readMetric(p.HTTPAddr, name)
	if err != nil {
		t.Fatalf("pageserver: %v", err)
	}
	return v
}
