package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
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
	s.ps = daemons.StartPageserver(t, append(daemons.SafekeeperArgs(s.sks), "--no-sync", "--wait-lsn-timeout", "20s")...)

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

// run runs bin/strata --dir s.dir with args.
func (s *storage) run(t *testing.T, args ...string) result {
	t.Helper()
	return runStrata(t, s.bin, s.dir, args...)
}

// ok runs bin/strata and fails the test unless it exits 0.
func (s *storage) ok(t *testing.T, args ...string) result {
	t.Helper()
	return wantExit(t, s.bin, s.dir, 0, args...)
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
	var summary string
	// bin/strata runs as this test's user; the harness gives the directory
	// to the server user.
	r.ReplaceDataDirWith(t, func(dir string) error {
		summary = strings.TrimSpace(s.ok(t, append([]string{"basebackup", "-o", dir, "--no-sync"}, args...)...).stdout)
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("basebackup directory mode %v, want 0700", fi.Mode().Perm())
		}
		if fi, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("global/pg_control: %v, mode %v; want 0600", err, fi.Mode().Perm())
		}
		return nil
	})
	r.StartFromBasebackup(t)
	return r, summary
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
