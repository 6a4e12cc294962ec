package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// storage is 3 safekeepers and a pageserver started by test/daemons, and a
// cluster directory whose strata.toml, written as an operator would, points
// the strata CLI at them.
type storage struct {
	bin    string // bin/strata
	dir    string // the cluster directory
	tenant id.TenantID
	sks    []*daemons.Safekeeper
	ps     *daemons.Pageserver
}

func startStorage(t *testing.T) *storage {
	t.Helper()
	s := &storage{bin: filepath.Join(binDir(t), "strata"), dir: t.TempDir(), tenant: id.Generate()}
	for i := 1; i <= 3; i++ {
		s.sks = append(s.sks, daemons.StartSafekeeper(t, i, "--no-sync"))
	}
	var grpcAddrs []string
	for _, sk := range s.sks {
		grpcAddrs = append(grpcAddrs, sk.GRPCAddr)
	}
	s.ps = daemons.StartPageserver(t, "--safekeepers", strings.Join(daemons.PGAddrs(s.sks), ","),
		"--safekeepers-grpc", strings.Join(grpcAddrs, ","), "--no-sync", "--wait-lsn-timeout", "20s")

	var b strings.Builder
	fmt.Fprintf(&b, "tenant_id = %q\n\n[pageserver]\nid = 1\nlisten_pg = %q\nlisten_grpc = %q\nlisten_http = %q\n",
		s.tenant, s.ps.PGAddr, s.ps.GRPCAddr, s.ps.HTTPAddr)
	for _, sk := range s.sks {
		fmt.Fprintf(&b, "\n[[safekeepers]]\nid = %d\nlisten_pg = %q\nlisten_grpc = %q\nlisten_http = %q\n", sk.ID, sk.PGAddr, sk.GRPCAddr, sk.HTTPAddr)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "strata.toml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// result is one run of bin/strata.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("strata %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// run runs bin/strata --dir s.dir with args (2 minutes at most).
func (s *storage) run(t *testing.T, args ...string) result {
	t.Helper()
	return runStrata(t, s.bin, s.dir, args...)
}

// ok runs bin/strata and fails the test unless it exits 0.
func (s *storage) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := s.run(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

func runStrata(t *testing.T, bin, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--dir", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("strata %v: %v", args, err)
	}
	return r
}

// listedTimeline is a timeline of `strata timeline list -o json`.
type listedTimeline struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Ancestor *struct {
		Name string  `json:"name"`
		ID   string  `json:"id"`
		LSN  lsn.LSN `json:"lsn"`
	} `json:"ancestor"`
	LastRecordLSN       lsn.LSN  `json:"last_record_lsn"`
	DiskConsistentLSN   lsn.LSN  `json:"disk_consistent_lsn"`
	State               string   `json:"state"`
	SafekeeperCommitLSN *lsn.LSN `json:"safekeeper_commit_lsn"`
}

// timelines runs `strata timeline list -o json`.
func (s *storage) timelines(t *testing.T) map[string]listedTimeline {
	t.Helper()
	r := s.ok(t, "timeline", "list", "-o", "json")
	var doc struct {
		TenantID  string           `json:"tenant_id"`
		Timelines []listedTimeline `json:"timelines"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("timeline list -o json: %v\n%s", err, r.stdout)
	}
	if doc.TenantID != s.tenant.String() {
		t.Fatalf("timeline list: tenant %q, want %s", doc.TenantID, s.tenant)
	}
	m := map[string]listedTimeline{}
	for _, tl := range doc.Timelines {
		key := tl.Name
		if key == "" {
			key = tl.ID
		}
		m[key] = tl
	}
	return m
}

// waitIngested polls `strata timeline list` (60 s at most) until the
// pageserver's last record on timeline name reaches l, and returns it.
func (s *storage) waitIngested(t *testing.T, name string, l lsn.LSN) lsn.LSN {
	t.Helper()
	var last lsn.LSN
	walcheck.WaitFor(t, fmt.Sprintf("the pageserver to ingest %s up to %s", name, l), time.Minute, func() (bool, string) {
		last = s.timelines(t)[name].LastRecordLSN
		return last >= l, "last record " + last.String()
	})
	return last
}

// computeOptions are the settings of every compute the test starts.
func computeOptions(extra ...pgharness.Option) []pgharness.Option {
	return append([]pgharness.Option{
		pgharness.WithConf("autovacuum", "off"),
		pgharness.WithConf("checkpoint_timeout", "1h"),
	}, extra...)
}

// computeFromCLI starts unmodified PostgreSQL on the data directory that
// `strata basebackup` writes (args: --timeline, --lsn), checking the
// directory's modes and that PostgreSQL did no recovery. It returns the
// server and the summary line strata printed.
func (s *storage) computeFromCLI(t *testing.T, opts []pgharness.Option, args ...string) (*pgharness.Cluster, string) {
	t.Helper()
	r := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart()}, opts...)...)
	dir := r.DataDir()
	// The harness's own files (port, socket, settings; authentication).
	keep := map[string][]byte{}
	for _, name := range []string{"strata.conf", "pg_hba.conf"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		keep[name] = b
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	res := s.ok(t, append([]string{"basebackup", "-o", dir, "--no-sync"}, args...)...)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("basebackup directory mode %v, want 0700", fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("global/pg_control: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	for name, b := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = conf.WriteString("include 'strata.conf'\n")
		if cerr := conf.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// bin/strata ran as this test's user; PostgreSQL runs as the server user.
	err = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return r.User().Chown(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(t)
	log, err := os.ReadFile(r.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "redo starts") || !strings.Contains(string(log), "database system was shut down at") {
		t.Errorf("PostgreSQL started from `strata basebackup %v` did recovery:\n%s", args, log)
	}
	return r, strings.TrimSpace(res.stdout)
}

// streamToSafekeepers starts a walproposer in front of primary, streaming
// its WAL from start to the safekeepers as timeline tl of s's tenant, and
// waits until it is connected.
func (s *storage) streamToSafekeepers(t *testing.T, primary *pgharness.Cluster, tl string, start lsn.LSN) *daemons.Walproposer {
	t.Helper()
	wp := daemons.NewWalproposer(t, "--pgconn", primary.ConnString("postgres"), "--safekeepers", strings.Join(daemons.PGAddrs(s.sks), ","),
		"--tenant-id", s.tenant.String(), "--timeline-id", tl,
		"--start-lsn", start.String(), "--reconnect-delay", "50ms", "--heartbeat-interval", "200ms")
	wp.Start()
	walcheck.WaitFor(t, "the walproposer to stream", 30*time.Second, func() (bool, string) {
		return daemons.Metric(wp.HTTPAddr, "walproposer_primary_connected") == 1, wp.Log()
	})
	return wp
}

// recordEnd is a lower bound of the end of the last record c inserted
// (nothing else writing): the insert position, moved back over a page
// header it may point past and over the alignment padding.
func recordEnd(t *testing.T, c *pgharness.Cluster) lsn.LSN {
	t.Helper()
	l := c.InsertWALLSN(t)
	switch {
	case l.SegmentOffset(c.WALSegmentSize()) == 40: // long page header
		l -= 40
	case l.PageOffset() == 24: // short page header
		l -= 24
	}
	return l - 7
}
