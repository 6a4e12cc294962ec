package pgharness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// superuser is passed to initdb -U so the bootstrap superuser's name does
	// not depend on who ran initdb.
	superuser     = "postgres"
	defaultBinDir = "/usr/lib/postgresql/15/bin"
	binDirEnv     = "STRATA_PG_BINDIR"

	// toolTimeout bounds initdb, pg_ctl and pg_controldata runs so that a
	// wedged binary fails the test instead of hanging it until go test's
	// global timeout, which skips every Cleanup.
	toolTimeout = 2 * time.Minute
	// logTailLines is how much of the server log a failed test prints.
	logTailLines = 60
)

// BinDir returns the directory of the PostgreSQL binaries: $STRATA_PG_BINDIR,
// or the Debian location of PostgreSQL 15.
func BinDir() string {
	if d := os.Getenv(binDirEnv); d != "" {
		return d
	}
	return defaultBinDir
}

// Cluster is one throw-away PostgreSQL cluster. Methods that take a
// testing.TB are meant for the test's goroutine; the accessors may be called
// from any goroutine except while Start runs (it may move the port).
type Cluster struct {
	user    User
	binDir  string
	baseDir string
	dataDir string
	sockDir string
	logPath string
	confSet []setting // from WithConf, written after the defaults
	fsync   bool
	port    int
	segSize uint64
}

// New creates a cluster with initdb, configures it for tests and, unless
// NoStart is given, starts it and waits until it accepts connections. The
// cluster is stopped and its files removed when the test ends.
func New(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	return newCluster(t, opts, func(c *Cluster, cfg config) error {
		initdbStart := time.Now()
		if out, err := c.run("initdb", cfg.initdbCommandArgs(c.dataDir)...); err != nil {
			return fmt.Errorf("initdb: %v\n%s", err, out)
		}
		logIfSlow(t, "initdb", initdbStart)
		return nil
	})
}

// NewStandby creates a cluster from a base backup of primary, taken with
// pg_basebackup -X none, so every byte of WAL after the backup's start must
// arrive by streaming, and starts it in standby mode. Say where it streams
// from with WithConf("primary_conninfo", ...).
func NewStandby(t testing.TB, primary *Cluster, opts ...Option) *Cluster {
	t.Helper()
	return newCluster(t, opts, func(c *Cluster, _ config) error {
		if err := c.mkdirOwned(c.dataDir); err != nil {
			return err
		}
		out, err := c.run("pg_basebackup", "-D", c.dataDir, "-h", "127.0.0.1", "-p", fmt.Sprint(primary.Port()),
			"-U", "postgres", "-X", "none", "--checkpoint=fast", "--no-manifest")
		if err != nil {
			return fmt.Errorf("pg_basebackup: %v\n%s", err, out)
		}
		return c.writeOwned(filepath.Join(c.dataDir, "standby.signal"), "")
	})
}

// newCluster makes the cluster's directories, lets create fill the data
// directory, configures it and starts it unless told not to.
func newCluster(t testing.TB, opts []Option, create func(*Cluster, config) error) *Cluster {
	t.Helper()
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		t.Fatalf("pgharness: %v", cfg.err)
	}
	binDir := BinDir()
	if _, err := os.Stat(filepath.Join(binDir, "postgres")); err != nil {
		t.Fatalf("pgharness: no PostgreSQL server in %s (set %s): %v", binDir, binDirEnv, err)
	}
	u := ServerUser(t)
	base, err := makeBaseDir(u)
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	c := &Cluster{
		user:    u,
		binDir:  binDir,
		baseDir: base,
		dataDir: filepath.Join(base, "data"),
		sockDir: filepath.Join(base, "sock"),
		logPath: filepath.Join(base, "postgresql.log"),
		confSet: cfg.conf,
		fsync:   cfg.fsync,
	}
	// Registered before anything can fail so that a half-made cluster is
	// still stopped and removed.
	t.Cleanup(func() { c.cleanup(t) })

	// Before initdb: its environment carries PGPORT, and initdb's
	// bootstrap postgres rejects port 0.
	if c.port, err = FreePort(); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	if err := c.mkdirOwned(c.sockDir); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	if err := create(c, cfg); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	if c.segSize, err = c.readSegmentSize(); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	if err := c.configure(); err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	if cfg.start {
		c.Start(t)
	}
	return c
}

// TempDir creates a directory owned by ServerUser, for the data of other
// programs that run as that user; it is removed when the test ends.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := makeBaseDir(ServerUser(t))
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// makeBaseDir creates the cluster's private directory, owned by u. Root's
// TMPDIR may be unreachable for u; /tmp then serves.
func makeBaseDir(u User) (string, error) {
	parent := os.TempDir()
	if !u.CanTraverse(parent) {
		parent = "/tmp"
	}
	base, err := os.MkdirTemp(parent, "strata-pg-")
	if err != nil {
		return "", fmt.Errorf("create base directory: %w", err)
	}
	if err := u.Chown(base); err != nil {
		_ = os.RemoveAll(base)
		return "", err
	}
	return base, nil
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// BaseDir is the directory holding everything of this cluster.
func (c *Cluster) BaseDir() string { return c.baseDir }

// DataDir is the PGDATA directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// WALDir is DataDir/pg_wal.
func (c *Cluster) WALDir() string { return filepath.Join(c.dataDir, "pg_wal") }

// SocketDir is the server's unix_socket_directories.
func (c *Cluster) SocketDir() string { return c.sockDir }

// LogFile is the server log (pg_ctl -l), appended to across restarts.
func (c *Cluster) LogFile() string { return c.logPath }

// BinDir is the directory of the PostgreSQL binaries this cluster uses.
func (c *Cluster) BinDir() string { return c.binDir }

// WALSegmentSize is the cluster's WAL segment size in bytes, from pg_control.
func (c *Cluster) WALSegmentSize() uint64 { return c.segSize }

// User is the identity the cluster's binaries run as.
func (c *Cluster) User() User { return c.user }

// Command returns a command running the PostgreSQL binary name (pg_waldump,
// pgbench, psql, ...) from BinDir as ServerUser, in BaseDir, with the clean
// environment described in the package comment, whose PG* variables point at
// this cluster as of now. Output files must go to a directory ServerUser can
// write, such as one from MkdirShared.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	c.prepare(cmd)
	return cmd
}

func (c *Cluster) prepare(cmd *exec.Cmd) {
	cmd.Dir = c.baseDir
	cmd.Env = []string{
		"PATH=" + c.binDir + ":/usr/local/bin:/usr/bin:/bin",
		"LANG=C",
		"LC_ALL=C",
		"TZ=UTC",
		"HOME=" + c.baseDir,
		"TMPDIR=" + c.baseDir,
		"PGHOST=127.0.0.1",
		"PGPORT=" + strconv.Itoa(c.port),
		"PGUSER=" + superuser,
		"PGDATABASE=postgres",
		"PGSSLMODE=disable",
		"PGDATA=" + c.dataDir,
	}
	c.user.Apply(cmd)
}

// run runs a binary the harness itself needs, bounded by toolTimeout, and
// returns its combined output.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	c.prepare(cmd)
	// A daemon that inherited the output pipe must not keep us waiting.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// RunPgbench runs pgbench against the "postgres" database and returns its
// output; it fails the test with that output if pgbench fails.
func (c *Cluster) RunPgbench(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.Command("pgbench", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgharness: pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// MkdirShared creates BaseDir/shared/name (and missing parents) owned by
// ServerUser, for tools from Command to write into, and returns its path.
// name must be a local relative path.
func (c *Cluster) MkdirShared(t testing.TB, name string) string {
	t.Helper()
	if !filepath.IsLocal(name) {
		t.Fatalf("pgharness: MkdirShared(%q): not a local relative path", name)
	}
	dir := c.baseDir
	for _, part := range strings.Split(filepath.Join("shared", name), string(filepath.Separator)) {
		dir = filepath.Join(dir, part)
		if err := c.mkdirOwned(dir); err != nil {
			t.Fatalf("pgharness: MkdirShared: %v", err)
		}
	}
	return dir
}

func (c *Cluster) mkdirOwned(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if os.IsExist(err) {
			return nil
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return c.user.Chown(dir)
}

// writeOwned writes a file the server reads; as root it must be given to
// ServerUser, since PostgreSQL reads its configuration as itself.
func (c *Cluster) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return c.user.Chown(path)
}

func (c *Cluster) readSegmentSize() (uint64, error) {
	out, err := c.run("pg_controldata", "-D", c.dataDir)
	if err != nil {
		return 0, fmt.Errorf("pg_controldata: %w\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Bytes per WAL segment:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pg_controldata: WAL segment size %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("pg_controldata: no WAL segment size in output:\n%s", out)
}
