package daemons

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/pageserver/redo"
	"strata.dev/test/pgharness"
)

var (
	redoLibOnce sync.Once
	redoLib     string
	redoLibErr  error
)

// RedoLibrary returns the path of walredo.so: $STRATA_BIN_DIR's (the
// Makefile builds it into bin/), or one built once per test process from
// pageserver/pgxn/walredo in a temporary directory (never in the source
// tree, which other test processes may be building in at the same time)
// that RunTests removes.
func RedoLibrary(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("STRATA_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, "walredo.so")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	redoLibOnce.Do(func() { redoLib, redoLibErr = buildRedoLibrary() })
	if redoLibErr != nil {
		t.Fatalf("build walredo.so: %v", redoLibErr)
	}
	return redoLib
}

func buildRedoLibrary() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	dir, err := MkdirTemp("", "strata-walredo-")
	if err != nil {
		return "", err
	}
	for _, f := range []string{"Makefile", "walredo.c"} {
		b, err := os.ReadFile(filepath.Join(root, "pageserver", "pgxn", "walredo", f))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		if err != nil {
			return "", err
		}
	}
	cmd := exec.Command("make", "-s", "PG_CONFIG="+filepath.Join(pgharness.BinDir(), "pg_config"), "with_llvm=no")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make: %v\n%s", err, out)
	}
	return filepath.Join(dir, "walredo.so"), nil
}

// RedoOptions are pool options for a test: PostgreSQL's binaries, the
// library, a scratch directory the server user owns, that user, a short
// timeout and log lines in the test log (errors only).
func RedoOptions(t testing.TB, processes int) redo.Options {
	t.Helper()
	u := pgharness.ServerUser(t)
	return redo.Options{
		PGBinDir:  pgharness.BinDir(),
		Library:   RedoLibrary(t),
		Dir:       filepath.Join(pgharness.TempDir(t), "walredo"),
		Processes: processes,
		Timeout:   30 * time.Second,
		User:      u.Credential(),
		Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
	}
}

// NewRedoPool returns a pool made with opts, closed when the test ends.
func NewRedoPool(t testing.TB, opts redo.Options) *redo.Pool {
	t.Helper()
	p, err := redo.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
