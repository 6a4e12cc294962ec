// End-to-end tests of bin/strata: the real binary, with --dir in a temporary
// directory and loopback ports nobody else uses, starting the real
// safekeepers, pageserver, walproposer and PostgreSQL 15 as detached
// processes, exactly as an operator's `strata local up` does.
package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binDir is a directory with every Strata binary and walredo.so:
// $STRATA_BIN_DIR after `make build`, else built once per test process.
func binDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("STRATA_BIN_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "strata")); err == nil {
			return d
		}
	}
	lib := daemons.RedoLibrary(t)
	buildOnce.Do(func() {
		buildDir, buildErr = daemons.MkdirTemp("", "strata-cli-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./safekeeper/cmd/...", "./pageserver/cmd/...",
			"./libs/walproposer/cmd/...", "./cli/cmd/...")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		var b []byte
		if b, buildErr = os.ReadFile(lib); buildErr == nil {
			buildErr = os.WriteFile(filepath.Join(buildDir, "walredo.so"), b, 0o644)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return buildDir
}

// cli runs bin/strata on one cluster directory.
type cli struct {
	t        *testing.T
	bin, dir string
}

// newCLI is a strata CLI for a new, empty cluster directory the server
// user can reach. When the test ends, `strata local down` stops what the
// cluster runs, and anything a pid file still names is killed.
func newCLI(t *testing.T) *cli {
	c := &cli{t: t, bin: binDir(t), dir: pgharness.TempDir(t)}
	t.Cleanup(c.cleanup)
	return c
}

// run runs strata with args.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return runStrata(c.t, c.strata(), c.dir, args...)
}

// ok runs strata and fails the test unless it exits 0; it returns the
// standard output.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	return wantExit(c.t, c.strata(), c.dir, 0, args...).stdout
}

// fail runs strata, expects exit code 1 and returns standard error.
func (c *cli) fail(args ...string) string {
	c.t.Helper()
	return wantExit(c.t, c.strata(), c.dir, 1, args...).stderr
}

func (c *cli) strata() string { return filepath.Join(c.bin, "strata") }

// result is one run of bin/strata.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("strata %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runStrata runs bin (strata) --dir dir with args, 3 minutes at most, and
// logs what it printed. STRATA_BIN_DIR and STRATA_PG_BINDIR point at the
// binaries the test uses.
func runStrata(t *testing.T, bin, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), "STRATA_BIN_DIR="+filepath.Dir(bin), "STRATA_PG_BINDIR="+pgharness.BinDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("strata %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ strata %s  (exit %d)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// wantExit runs bin/strata and fails the test unless it exits with code.
func wantExit(t *testing.T, bin, dir string, code int, args ...string) result {
	t.Helper()
	r := runStrata(t, bin, dir, args...)
	if r.code != code {
		t.Fatalf("want exit %d: %v", code, r)
	}
	return r
}

var uriRE = regexp.MustCompile(`postgresql://postgres@127\.0\.0\.1:\d+/postgres`)

// lastURI is the last connection URI strata printed.
func lastURI(t *testing.T, out string) string {
	t.Helper()
	all := uriRE.FindAllString(out, -1)
	if len(all) == 0 {
		t.Fatalf("no postgresql:// URI in the output:\n%s", out)
	}
	return all[len(all)-1]
}

// pidFiles reads every pid file of the cluster directory.
func (c *cli) pidFiles() map[string]int {
	c.t.Helper()
	paths, err := filepath.Glob(filepath.Join(c.dir, "*.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pids := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			c.t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			c.t.Fatalf("empty pid file %s", p)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			c.t.Fatalf("pid file %s: %q", p, b)
		}
		pids[filepath.Base(p)] = pid
	}
	return pids
}

// running reports whether pid is a live process (a zombie has ended: it
// only waits for its parent, here init, to reap it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

func (c *cli) cleanup() {
	pids := c.pidFiles()
	if len(pids) > 0 {
		c.run("local", "down")
	}
	for name, pid := range c.pidFiles() {
		if running(pid) {
			c.t.Errorf("cleanup: %s (pid %d) still runs after `strata local down`: killing it", name, pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
}

// dumpLogs writes the end of every log of the cluster to the test output.
func (c *cli) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		c.t.Logf("--- %s (last %d lines) ---\n%s", filepath.Base(l), len(lines), strings.Join(lines, "\n"))
	}
}

// freePort is a loopback port nobody listens on now.
func freePort(t *testing.T) string {
	_, p, err := net.SplitHostPort(daemons.FreePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// portFlags are `local up` flags choosing free ports for every daemon and
// the primary, which it returns.
func portFlags(t *testing.T) (flags []string, primary string) {
	list := func() string { return freePort(t) + "," + freePort(t) + "," + freePort(t) }
	primary = freePort(t)
	return []string{
		"--safekeeper-pg-ports", list(), "--safekeeper-grpc-ports", list(), "--safekeeper-http-ports", list(),
		"--pageserver-pg-port", freePort(t), "--pageserver-grpc-port", freePort(t), "--pageserver-http-port", freePort(t),
		"--pg-port", primary,
	}, primary
}

// pgbench runs pgbench against uri.
func pgbench(t *testing.T, uri string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(pgharness.BinDir(), "pgbench"), append(args, uri)...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listen keeps a loopback port busy until the test ends and returns it.
func listen(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
