// Package local runs a whole Strata cluster on this machine (`strata
// local`): three safekeepers and a pageserver as detached background
// processes that outlive the CLI, a tenant with a timeline "main"
// bootstrapped by the pageserver's initdb, and the primary as a compute
// from storage with its walproposer (package compute).
//
// The cluster directory holds strata.toml, every log and pid file, and the
// safekeepers' data. The pageserver and PostgreSQL refuse to run as root, so
// when the CLI runs as root they run as the postgres user (package
// pguser), and their data goes to the server directory: the cluster
// directory if that user can reach it, else one under /var/tmp.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"strata.dev/cli/cluster"
	"strata.dev/cli/compute"
	"strata.dev/libs/pguser"
)

// DefaultPgBinDir is where Debian's PostgreSQL 15 lives.
const DefaultPgBinDir = "/usr/lib/postgresql/15/bin"

// serverAccount is who the pageserver and PostgreSQL run as when the CLI
// runs as root: the Debian packages' account, created if missing.
const serverAccount = "postgres"

// MainTimeline and MainCompute are the names `up` creates.
const (
	MainTimeline = "main"
	MainCompute  = "main"
)

// Cluster is an open local cluster: its file and how to run its processes.
type Cluster struct {
	Dir  string
	File *cluster.File
	User pguser.User
	// Bin is Strata's binaries (safekeeper, pageserver, walproposer,
	// walredo.so).
	Bin     string
	Compute compute.Env
	out     io.Writer
}

// Config says where binaries are and where to print progress.
type Config struct {
	// BinDir has Strata's binaries; empty: $STRATA_BIN_DIR, else the
	// directory of the running strata binary.
	BinDir string
	// PgBinDir has PostgreSQL 15's; empty: strata.toml's pg_bin_dir,
	// $STRATA_PG_BINDIR, else DefaultPgBinDir.
	PgBinDir string
	Out      io.Writer
}

func (c Config) binDir() (string, error) {
	if c.BinDir != "" {
		return filepath.Abs(c.BinDir)
	}
	if d := os.Getenv("STRATA_BIN_DIR"); d != "" {
		return filepath.Abs(d)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find Strata's binaries: %w (use --bin-dir)", err)
	}
	return filepath.Dir(exe), nil
}

// pgBinDir picks PostgreSQL's binary directory for a new cluster.
func (c Config) pgBinDir() string {
	if c.PgBinDir != "" {
		return c.PgBinDir
	}
	if d := os.Getenv("STRATA_PG_BINDIR"); d != "" {
		return d
	}
	return DefaultPgBinDir
}

// Open opens the local cluster in dir (it must have strata.toml).
func Open(dir string, cfg Config) (*Cluster, error) {
	f, err := cluster.Load(dir)
	if err != nil {
		return nil, err
	}
	return open(dir, f, cfg)
}

func open(dir string, f *cluster.File, cfg Config) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err := cfg.binDir()
	if err != nil {
		return nil, err
	}
	u, err := pguser.Server(serverAccount)
	if err != nil {
		return nil, err
	}
	pgBin := f.PgBinDir
	if cfg.PgBinDir != "" || pgBin == "" {
		pgBin = cfg.pgBinDir()
	}
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 not found in %s (install postgresql-15, or give --pg-bin-dir): %w", pgBin, err)
	}
	serverDir := dir
	if f.Local != nil && f.Local.ServerDir != "" {
		serverDir = f.Local.ServerDir
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	c := &Cluster{Dir: dir, File: f, User: u, Bin: bin, out: out}
	c.Compute = compute.Env{
		Dir: dir, ServerDir: serverDir, BinDir: bin, PgBinDir: pgBin, User: u, File: f, Say: c.say,
	}
	return c, nil
}

func (c *Cluster) say(format string, args ...any) {
	fmt.Fprintf(c.out, format+"\n", args...)
}

// checkBinaries checks that the Strata binaries a cluster runs are there.
func (c *Cluster) checkBinaries(names ...string) error {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(c.Bin, n)); err != nil {
			return fmt.Errorf("%s not found in %s: build first (make build), or give --bin-dir", n, c.Bin)
		}
	}
	return nil
}

// lockOps serialises the commands that start and stop processes in one
// cluster directory (two `up`s at once would start everything twice). It
// is not the strata.toml lock (cluster.Update), which is held only around
// a file change.
func lockOps(ctx context.Context, dir string, out io.Writer) (unlock func(), err error) {
	path := filepath.Join(dir, ".strata-local.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(out, "waiting for another strata command in %s to finish...\n", dir)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// update changes strata.toml (cluster.Update) and keeps c.File current.
func (c *Cluster) update(ctx context.Context, fn func(*cluster.File) error) error {
	var latest cluster.File
	err := cluster.Update(ctx, c.Dir, func(f *cluster.File) error {
		if err := fn(f); err != nil {
			return err
		}
		latest = *f
		return nil
	})
	if err == nil {
		*c.File = latest
	}
	return err
}
