// Package redo rebuilds pages from a base image and WAL records (PS §4)
// with a pool of unmodified PostgreSQL 15 processes.
//
// A redo process is `postgres --single` on its own scratch copy of an
// initdb'd template cluster, running walredo_main() from the C extension in
// pageserver/pgxn/walredo, which serves the B/P/A/G/H protocol of PS §4.2
// on its stdin and stdout (the design and its gotchas: walredo.md in the
// project's shared notes, and the comments of walredo.c). What needs no
// PostgreSQL is done in Go: the newest record carrying a full-page image
// of the page restarts it from that image (nothing older is sent), and the
// pageserver's own records (CLOG, multixact, visibility map bits: package
// neonredo) are applied here.
//
// The pool spawns processes lazily, one at a time (callers that find no
// process wait for that one spawn), up to its size; a caller that finds
// every process busy pipelines its request behind the others on the least
// loaded one. A process that fails, times out or returns short is killed,
// waited for and its scratch directory removed; the request is retried
// once on another. A redo process is untrusted: it runs as an
// unprivileged user with an empty environment, and all it can do is answer
// 8192 wrong bytes to the requests sent to it (with pipelining, those of
// the other callers on the same process too).
package redo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of Options.
const (
	DefaultTimeout     = 60 * time.Second
	DefaultIdleTimeout = 5 * time.Minute
)

// ErrProcess is wrapped by failures of a redo process (it died, answered
// short, timed out, could not start). Requests that fail this way were
// already retried once.
var ErrProcess = errors.New("WAL redo process failed")

// ErrClosed is returned once the pool is closed.
var ErrClosed = errors.New("WAL redo pool closed")

// Options configure a Pool.
type Options struct {
	// PGBinDir holds postgres and initdb (PostgreSQL 15).
	PGBinDir string
	// Library is the walredo.so built from pageserver/pgxn/walredo. The
	// pool copies it into Dir, where the redo user can read it.
	Library string
	// Dir is the pool's scratch directory: the template cluster and one
	// copy of it per process. Created if missing.
	Dir string
	// Processes is the pool size; default runtime.NumCPU().
	Processes int
	// Timeout bounds one request, and a process start; default 60 s.
	Timeout time.Duration
	// IdleTimeout stops a process nobody used for this long; default
	// 5 minutes, negative never.
	IdleTimeout time.Duration
	// User is who redo processes run as; required when the pageserver runs
	// as root (PostgreSQL refuses root). Nil: the pageserver's own user.
	User *syscall.Credential
	// NoGoRedo sends every PostgreSQL record to a redo process, even
	// the heap and btree records goredo applies in Go (tests compare the
	// two; the pageserver's --walredo-in-go=false sets it).
	NoGoRedo bool
	// Log receives process starts, stops and what they print on stderr.
	Log zerolog.Logger
}

func (o *Options) setDefaults() error {
	if o.PGBinDir == "" || o.Library == "" || o.Dir == "" {
		return fmt.Errorf("redo: PGBinDir, Library and Dir are required")
	}
	if o.Processes <= 0 {
		o.Processes = runtime.NumCPU()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.User == nil && os.Geteuid() == 0 {
		return fmt.Errorf("redo: running as root, WAL redo processes need an unprivileged user (PostgreSQL refuses root)")
	}
	lib, err := filepath.Abs(o.Library)
	if err != nil {
		return fmt.Errorf("redo: library path: %w", err)
	}
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("redo: WAL redo library: %w (built by `make build` into bin/walredo.so)", err)
	}
	o.Library = lib
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return fmt.Errorf("redo: scratch directory path: %w", err)
	}
	return nil
}
