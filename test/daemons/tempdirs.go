package daemons

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// Directories that serve the whole test process (built binaries, copies of
// them): they outlive every test, so t.Cleanup cannot remove them.
var (
	processDirsMu sync.Mutex
	processDirs   []string
)

// MkdirTemp is os.MkdirTemp for a directory that lives as long as the test
// process; RunTests removes it after the last test. A test package that
// calls it (or Binary, RedoLibrary, StartPageserver, ...) needs RunTests in
// its TestMain, or the directory is left behind.
func MkdirTemp(dir, pattern string) (string, error) {
	d, err := os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	processDirsMu.Lock()
	processDirs = append(processDirs, d)
	processDirsMu.Unlock()
	return d, nil
}

// RunTests runs the tests, then removes the directories made with MkdirTemp.
// Every test package using this package calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(daemons.RunTests(m)) }
//
// A directory it cannot remove fails the run, as t.TempDir does.
func RunTests(m *testing.M) int {
	code := m.Run()
	processDirsMu.Lock()
	defer processDirsMu.Unlock()
	for _, d := range processDirs {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(os.Stderr, "daemons: remove the test process's directory: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	processDirs = nil
	return code
}
