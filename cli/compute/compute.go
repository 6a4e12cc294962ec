// Package compute runs PostgreSQL computes on a cluster's timelines, from
// storage (DESIGN.md decision 3): the data directory is a pageserver
// basebackup, vanilla PostgreSQL 15 starts on it with no recovery, and a
// read-write compute gets a walproposer in front of it, streaming from the
// basebackup's LSN to the safekeepers, so every commit waits for a
// safekeeper majority. A read-only compute is static: a basebackup at a
// fixed LSN, default_transaction_read_only, no walproposer, and its own WAL
// never leaves it.
//
// A compute's data directory is disposable: every start replaces it with a
// fresh basebackup, so nothing committed lives only there.
package compute

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"strata.dev/cli/client"
	"strata.dev/cli/cluster"
	"strata.dev/cli/process"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pguser"
)

// Env is what running computes needs: the cluster and where things go.
type Env struct {
	// Dir is the cluster directory: logs and pid files.
	Dir string
	// ServerDir holds the data directories (User can reach it).
	ServerDir string
	// BinDir has the walproposer; PgBinDir PostgreSQL 15's binaries.
	BinDir, PgBinDir string
	User             pguser.User
	File             *cluster.File
	// Say prints a progress line.
	Say func(format string, args ...any)
}

// Started describes a compute that is up.
type Started struct {
	// LSN is where it started: its basebackup's LSN.
	LSN lsn.LSN
	Pid int
	URI string
	// WalproposerHTTP is the walproposer's /metrics address (read-write).
	WalproposerHTTP string
}

// URI is the connection string of a compute listening on port.
func URI(port int) string {
	return fmt.Sprintf("postgresql://postgres@127.0.0.1:%d/postgres", port)
}

// DataDir is where a compute's data directory goes unless recorded.
func (e *Env) DataDir(name string) string {
	return filepath.Join(e.ServerDir, "computes", name, "pgdata")
}

// dataDir is compute name's data directory: the recorded one, else DataDir.
func (e *Env) dataDir(name string, c cluster.Compute) string {
	if c.Datadir != "" {
		return c.Datadir
	}
	return e.DataDir(name)
}

func (e *Env) path(kind, name, ext string) string {
	return filepath.Join(e.Dir, kind+"-"+name+ext)
}

// Start starts compute name from storage. A running compute of that name
// is an error; its old data directory is replaced.
func (e *Env) Start(ctx context.Context, name string, c cluster.Compute) (Started, error) {
	if st, err := e.Status(name); err != nil {
		return Started{}, err
	} else if st.Postgres.Running || st.Walproposer.Running {
		return Started{}, fmt.Errorf("compute %s is already running (postgres pid %d, walproposer pid %d): stop it first", name, st.Postgres.Pid, st.Walproposer.Pid)
	}
	settings, err := Settings(c)
	if err != nil {
		return Started{}, err
	}
	tl, err := e.File.Timeline(c.Timeline)
	if err != nil {
		return Started{}, err
	}
	if err := process.AddrFree(fmt.Sprintf("127.0.0.1:%d", c.Port)); err != nil {
		return Started{}, fmt.Errorf("compute %s: port %d is taken by another process (stop it, or give the compute another port in %s): %w",
			name, c.Port, filepath.Join(e.Dir, cluster.FileName), err)
	}
	cl, err := client.New(e.Dir, e.File, client.DefaultTimeout)
	if err != nil {
		return Started{}, fmt.Errorf("compute %s: %w", name, err)
	}
	defer cl.Close()
	var at lsn.LSN
	if c.ReadOnly() {
		if at, err = lsn.Parse(c.LSN); err != nil {
			return Started{}, fmt.Errorf("compute %s: lsn %q: %w", name, c.LSN, err)
		}
		info, err := pageserverTimeline(ctx, cl, tl)
		if err != nil {
			return Started{}, fmt.Errorf("compute %s: %w", name, err)
		}
		if err := checkStaticLSN(c.Timeline, info, committedEnd(ctx, cl, tl), at); err != nil {
			return Started{}, fmt.Errorf("compute %s: %w", name, err)
		}
	} else if at, err = e.startLSN(ctx, cl, tl); err != nil {
		return Started{}, fmt.Errorf("compute %s: %w", name, err)
	}
	datadir := e.dataDir(name, c)
	e.Say("compute %s: basebackup of timeline %s at %s", name, c.Timeline, at)
	if err := e.fetchDataDir(ctx, cl, tl, at, datadir); err != nil {
		return Started{}, fmt.Errorf("compute %s: %w", name, err)
	}
	mode := "read-write compute, commits wait for a safekeeper majority"
	if c.ReadOnly() {
		mode = "static read-only compute at " + at.String()
	}
	if err := appendConf(filepath.Join(datadir, "postgresql.conf"), fmt.Sprintf("strata: %s on timeline %s (%s)", name, c.Timeline, mode), settings); err != nil {
		return Started{}, err
	}

	e.Say("compute %s: starting PostgreSQL on port %d", name, c.Port)
	pg, err := process.Start(process.Spec{
		Name: "compute " + name + " (PostgreSQL)", Path: filepath.Join(e.PgBinDir, "postgres"),
		Args: []string{"-D", datadir}, Dir: datadir, User: e.User,
		LogPath: e.path("compute", name, ".log"), PidPath: e.path("compute", name, ".pid"),
	})
	if err != nil {
		return Started{}, err
	}
	uri := URI(c.Port)
	if err := pg.WaitReady(ctx, time.Minute, func(ctx context.Context) error { return ping(ctx, uri) }); err != nil {
		return Started{}, err
	}
	started := Started{LSN: at, Pid: pg.Pid, URI: uri}
	if c.ReadOnly() {
		return started, nil
	}
	started.WalproposerHTTP, err = e.startWalproposer(ctx, name, c, tl, at)
	if err != nil {
		pg.Kill()
		return Started{}, err
	}
	return started, nil
}

// startWalproposer starts compute name's walproposer streaming from at and
// waits until the compute has it as its synchronous standby.
func (e *Env) startWalproposer(ctx context.Context, name string, c cluster.Compute, tl id.TimelineID, at lsn.LSN) (string, error) {
	httpAddr := c.WalproposerHTTP
	if httpAddr == "" || process.AddrFree(httpAddr) != nil {
		var err error
		if httpAddr, err = process.FreeAddr(); err != nil {
			return "", err
		}
	}
	e.Say("compute %s: starting its walproposer from %s", name, at)
	wp, err := process.Start(process.Spec{
		Name: "compute " + name + " walproposer", Path: filepath.Join(e.BinDir, "walproposer"),
		Args: []string{
			"--pgconn", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", c.Port),
			"--safekeepers", strings.Join(e.File.SafekeeperPGAddrs(), ","),
			"--tenant-id", e.File.TenantID, "--timeline-id", tl.String(),
			"--start-lsn", at.String(), "--listen-http", httpAddr,
		},
		Dir:     e.Dir,
		LogPath: e.path("walproposer", name, ".log"), PidPath: e.path("walproposer", name, ".pid"),
	})
	if err != nil {
		return "", err
	}
	uri := URI(c.Port)
	err = wp.WaitReady(ctx, time.Minute, func(ctx context.Context) error { return syncStandby(ctx, uri) })
	if err != nil {
		return "", err
	}
	return httpAddr, nil
}

// Status is whether a compute's processes run.
type Status struct {
	Postgres, Walproposer process.Status
}

// Status reads compute name's pid files.
func (e *Env) Status(name string) (Status, error) {
	pg, err := process.Check(e.path("compute", name, ".pid"))
	if err != nil {
		return Status{}, err
	}
	wp, err := process.Check(e.path("walproposer", name, ".pid"))
	if err != nil {
		return Status{}, err
	}
	return Status{Postgres: pg, Walproposer: wp}, nil
}

// Stop stops compute name: PostgreSQL with a fast shutdown (pg_ctl -m
// fast, its shutdown checkpoint still reaching the walproposer), then
// the walproposer. It returns what was running.
func (e *Env) Stop(ctx context.Context, name string, c cluster.Compute) (Status, error) {
	st, err := e.Status(name)
	if err != nil {
		return st, err
	}
	pidPath := e.path("compute", name, ".pid")
	if st.Postgres.Running {
		datadir := e.dataDir(name, c)
		cmd := execAs(e.User, filepath.Join(e.PgBinDir, "pg_ctl"), "-D", datadir, "-m", "fast", "-w", "-t", "60", "stop")
		if out, err := cmd.CombinedOutput(); err != nil {
			// SIGINT is the same fast shutdown; Stop escalates to SIGKILL.
			e.Say("compute %s: pg_ctl stop failed (%v: %s); signalling pid %d", name, err, trim(out), st.Postgres.Pid)
		}
	}
	if _, err := process.Stop(ctx, pidPath, syscall.SIGINT, 30*time.Second); err != nil {
		return st, fmt.Errorf("stop compute %s: %w", name, err)
	}
	if _, err := process.Stop(ctx, e.path("walproposer", name, ".pid"), syscall.SIGTERM, 10*time.Second); err != nil {
		return st, fmt.Errorf("stop compute %s's walproposer: %w", name, err)
	}
	return st, nil
}

// Remove deletes compute name's data directory, log and pid files (it
// must be stopped).
func (e *Env) Remove(name string, c cluster.Compute) error {
	// The compute's own directory (its data directory and what sits beside
	// it), and a data directory recorded elsewhere itself — never that
	// one's parent, which is not ours.
	paths := []string{filepath.Dir(e.DataDir(name)), e.path("compute", name, ".pid"), e.path("walproposer", name, ".pid")}
	if d := e.dataDir(name, c); d != e.DataDir(name) {
		paths = append(paths, d)
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove compute %s: %w", name, err)
		}
	}
	return nil
}

// query runs sql on the compute at uri, on a connection of its own.
func query(ctx context.Context, uri, sql string) ([]*pgconn.Result, error) {
	conn, err := pgconn.Connect(ctx, uri+"?sslmode=disable&connect_timeout=5")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	return conn.Exec(ctx, sql).ReadAll()
}

// ping checks that the compute at uri accepts queries.
func ping(ctx context.Context, uri string) error {
	_, err := query(ctx, uri, "SELECT 1")
	return err
}

// syncStandby checks that the compute at uri streams to the walproposer
// as its synchronous standby.
func syncStandby(ctx context.Context, uri string) error {
	res, err := query(ctx, uri, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'walproposer'")
	if err != nil {
		return err
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return fmt.Errorf("no walproposer in pg_stat_replication yet")
	}
	if s := string(res[0].Rows[0][0]); s != "sync" {
		return fmt.Errorf("walproposer sync_state %q", s)
	}
	return nil
}
