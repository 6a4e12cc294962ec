package pgharness

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"strata.dev/libs/lsn"
)

// xlogPageMagic is XLOG_PAGE_MAGIC of PostgreSQL 15, the first two bytes of
// every WAL page header.
const xlogPageMagic = 0xD110

func TestCluster(t *testing.T) {
	t.Parallel()
	c := New(t)

	t.Run("owner", func(t *testing.T) {
		fi, err := os.Stat(c.DataDir())
		if err != nil {
			t.Fatal(err)
		}
		u := c.User()
		if got := fi.Sys().(*syscall.Stat_t).Uid; got != u.UID {
			t.Errorf("data directory owned by uid %d, want %d (%s)", got, u.UID, u.Name)
		}
		if os.Geteuid() == 0 && (!u.Switch || u.UID == 0) {
			t.Errorf("running as root but server user is %+v", u)
		}
		var who string
		c.QueryRow(t, "SELECT current_user").Scan(&who)
		if who != "postgres" {
			t.Errorf("current_user = %q, want postgres", who)
		}
	})

	t.Run("sql", func(t *testing.T) {
		c.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
		tag := c.Exec(t, "INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, $1::int) g", 100)
		if tag.RowsAffected() != 100 {
			t.Errorf("inserted %d rows, want 100", tag.RowsAffected())
		}
		var n int64
		var v *string
		c.QueryRow(t, "SELECT count(*), max(v) FILTER (WHERE false) FROM t").Scan(&n, &v)
		if n != 100 || v != nil {
			t.Errorf("count, null = %d, %v; want 100, nil", n, v)
		}
	})

	t.Run("system id", func(t *testing.T) {
		out, err := c.Command("pg_controldata").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_controldata: %v\n%s", err, out)
		}
		want := controlField(t, out, "Database system identifier")
		if got := strconv.FormatUint(c.SystemID(t), 10); got != want {
			t.Errorf("SystemID = %s, pg_controldata says %s", got, want)
		}
	})

	t.Run("replication connection", func(t *testing.T) {
		ctx := t.Context()
		conn, err := pgconn.Connect(ctx, c.ReplicationConnString())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		sys, err := pglogrepl.IdentifySystem(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.FormatUint(c.SystemID(t), 10); sys.SystemID != want || sys.Timeline != 1 {
			t.Errorf("IDENTIFY_SYSTEM = %s timeline %d, want %s timeline 1", sys.SystemID, sys.Timeline, want)
		}
	})

	t.Run("wal files", func(t *testing.T) {
		at := c.CurrentWALLSN(t)
		seg := c.WALSegmentSize()
		if seg != lsn.DefaultSegmentSize {
			t.Errorf("WALSegmentSize = %d, want %d", seg, lsn.DefaultSegmentSize)
		}
		b, err := os.ReadFile(filepath.Join(c.WALDir(), segmentName(1, at, seg)))
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(b)) != seg {
			t.Errorf("segment is %d bytes, want %d", len(b), seg)
		}
		if m := binary.LittleEndian.Uint16(b); m != xlogPageMagic {
			t.Errorf("page magic %#x, want %#x", m, xlogPageMagic)
		}
	})

	t.Run("pgbench", func(t *testing.T) {
		c.RunPgbench(t, "-i", "-s", "1", "-q")
		out := c.RunPgbench(t, "-n", "-c", "2", "-t", "100")
		if !strings.Contains(out, "actually processed: 200/200") {
			t.Errorf("pgbench output lacks 200/200 transactions:\n%s", out)
		}
	})

	t.Run("pg_waldump", func(t *testing.T) {
		c.Exec(t, "CREATE TABLE dumped (x int)")
		start := c.CurrentWALLSN(t)
		c.Exec(t, "INSERT INTO dumped VALUES (1)")
		end := c.CurrentWALLSN(t)
		out, err := c.Command("pg_waldump", "-p", c.WALDir(),
			"-s", start.String(), "-e", end.String(), "-r", "Heap").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_waldump: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("desc: INSERT")) {
			t.Errorf("pg_waldump shows no heap INSERT between %s and %s:\n%s", start, end, out)
		}
	})

	t.Run("pg_basebackup into shared dir", func(t *testing.T) {
		dir := c.MkdirShared(t, "backups/one")
		out, err := c.Command("pg_basebackup", "-D", dir, "-X", "stream", "-c", "fast", "--no-sync").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_basebackup: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
			t.Error(err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		port := c.Port()
		c.Restart(t)
		if c.Port() != port {
			t.Logf("port moved from %d to %d", port, c.Port())
		}
		var n int64
		c.QueryRow(t, "SELECT count(*) FROM t").Scan(&n)
		if n != 100 {
			t.Errorf("after restart count = %d, want 100", n)
		}
	})

	t.Run("kill and recover", func(t *testing.T) {
		c.Exec(t, "INSERT INTO t VALUES (1000, 'committed before crash')")
		c.Kill(t)
		logStart := fileSize(c.LogFile())
		c.Start(t)
		if log := c.logSince(logStart); !strings.Contains(log, "automatic recovery in progress") {
			t.Errorf("no crash recovery in server log:\n%s", log)
		}
		var v string
		c.QueryRow(t, "SELECT v FROM t WHERE id = 1000").Scan(&v)
		if v != "committed before crash" {
			t.Errorf("row after recovery = %q", v)
		}
	})
}

func TestOptions(t *testing.T) {
	t.Parallel()
	c := New(t, NoStart(), WithDataChecksums(), WithWALSegSize(1), WithFsync(true),
		WithConf("work_mem", "8MB"), WithConf("application_name", `it's a \ test`))
	if _, err := os.Stat(filepath.Join(c.DataDir(), "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NoStart: postmaster.pid: %v", err)
	}
	if c.WALSegmentSize() != 1<<20 {
		t.Errorf("WALSegmentSize = %d, want 1 MiB", c.WALSegmentSize())
	}
	c.Start(t)
	for setting, want := range map[string]string{
		"data_checksums":   "on",
		"wal_segment_size": "1MB",
		"fsync":            "on",
		"work_mem":         "8MB",
		"wal_level":        "replica",
		"application_name": `it's a \ test`,
	} {
		var got string
		c.QueryRow(t, "SELECT current_setting($1)", setting).Scan(&got)
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	t.Parallel()
	var base string
	var pid int
	t.Run("cluster", func(t *testing.T) {
		c := New(t)
		base = c.BaseDir()
		c.QueryRow(t, "SELECT pg_backend_pid()").Scan(new(int32))
		var err error
		if pid, err = c.postmasterPID(); err != nil || pid == 0 {
			t.Fatalf("postmaster pid = %d, %v", pid, err)
		}
	})
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base directory %s after cleanup: %v", base, err)
	}
	if processAlive(pid) {
		t.Errorf("postmaster %d alive after cleanup", pid)
	}
}

// TestFailedStartCleansUp starts a cluster with a setting postgres rejects,
// through a TB whose Fatal only ends the goroutine, and checks that the
// server log was shown and the half-made cluster removed.
func TestFailedStartCleansUp(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	var c *Cluster
	done := make(chan struct{})
	go func() {
		defer close(done)
		c = New(ft, WithConf("max_connections", "not a number"))
	}()
	<-done
	if c != nil || !ft.Failed() {
		t.Fatal("New succeeded with an invalid setting")
	}
	ft.runCleanups()
	out := ft.output()
	if !strings.Contains(out, "max_connections") {
		t.Errorf("failure output does not show the server's complaint:\n%s", out)
	}
	m := regexp.MustCompile(`last 60 lines of (\S+):`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("cleanup did not show the server log:\n%s", out)
	}
	if base := filepath.Dir(m[1]); !strings.HasPrefix(filepath.Base(base), "strata-pg-") {
		t.Errorf("log %s is not in a base directory", m[1])
	} else if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base directory %s after cleanup: %v", base, err)
	}
}

func TestStartMovesOffBusyPort(t *testing.T) {
	t.Parallel()
	c := New(t, NoStart())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c.port = busy.Addr().(*net.TCPAddr).Port
	if err := c.writeConf(); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	if c.Port() == busy.Addr().(*net.TCPAddr).Port {
		t.Fatalf("server claims busy port %d", c.Port())
	}
	c.Exec(t, "SELECT 1")
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"a\n\n", 1, "a"},
	} {
		if got := lastLines(tc.in, tc.n); got != tc.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestQuoting(t *testing.T) {
	if got := quoteConf(`a'b\c`); got != `'a''b\\c'` {
		t.Errorf("quoteConf = %s", got)
	}
	if got := quoteConnValue("my db"); got != `'my db'` {
		t.Errorf("quoteConnValue = %s", got)
	}
	if got := quoteConnValue("postgres"); got != "postgres" {
		t.Errorf("quoteConnValue = %s", got)
	}
}

// segmentName is XLogFileName for timeline tli.
func segmentName(tli uint32, at lsn.LSN, segSize uint64) string {
	perID := uint64(1<<32) / segSize
	no := at.SegmentNumber(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, no/perID, no%perID)
}

func controlField(t *testing.T, out []byte, name string) string {
	t.Helper()
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pg_controldata output has no %q:\n%s", name, out)
	return ""
}

// fakeTB records what a test would report, and ends the calling goroutine on
// Fatal as testing does, so that a failing New can be observed.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	log      strings.Builder
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(&f.log, format+"\n", args...)
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.Logf(format, args...)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) Context() context.Context { return context.Background() }

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func (f *fakeTB) output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.String()
}
