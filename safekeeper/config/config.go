// Package config is the safekeeper's configuration: built-in defaults, then
// a TOML file (--config), then command-line flags, each overriding the one
// before. Flag names follow Neon's safekeeper where they exist (SK §9), so
// operators and scripts can keep them.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"strata.dev/libs/daemon"
	"strata.dev/libs/durable"
	"strata.dev/safekeeper/walstore"
)

// Config is everything the daemon needs to start.
type Config struct {
	ID         uint64 `toml:"id"`
	Datadir    string `toml:"datadir"`
	ListenPG   string `toml:"listen_pg"`
	ListenGRPC string `toml:"listen_grpc"`
	ListenHTTP string `toml:"listen_http"`
	// ListenPGTenantOnly is a second libpq port that only accepts
	// tenant-scoped tokens (computes are pointed there when auth is on).
	ListenPGTenantOnly string `toml:"listen_pg_tenant_only"`
	// PgAuthPublicKeyPath enables JWT (EdDSA) auth on ListenPG: a PEM file or
	// a directory of them. Empty means trust.
	PgAuthPublicKeyPath           string `toml:"pg_auth_public_key_path"`
	PgTenantOnlyAuthPublicKeyPath string `toml:"pg_tenant_only_auth_public_key_path"`
	// NoSync disables every fsync. Unsafe: tests only.
	NoSync                  bool     `toml:"no_sync"`
	ControlFileSaveInterval Duration `toml:"control_file_save_interval"`
	// MaxUnflushedBytes and MaxUnflushedDelay bound how much WAL a steady
	// stream may write before it is fsync'd and acknowledged.
	MaxUnflushedBytes int      `toml:"max_unflushed_bytes"`
	MaxUnflushedDelay Duration `toml:"max_unflushed_delay"`
	// WALPrealloc is how new segment files get their blocks: zero, fallocate or none.
	WALPrealloc string `toml:"wal_prealloc"`
	// WALCacheSize is how many bytes of each timeline's latest WAL stay in
	// memory for WAL senders (a tailing pageserver); 0 turns it off.
	WALCacheSize int    `toml:"wal_cache_size"`
	LogFormat    string `toml:"log_format"` // plain or json
	LogLevel     string `toml:"log_level"`

	// Actions that replace running the daemon.
	DumpControlFile string `toml:"-"`
	Init            bool   `toml:"-"`
	ShowVersion     bool   `toml:"-"`
}

// Duration is a time.Duration written as "5s" or "300ms" in TOML.
type Duration = daemon.Duration

// Defaults are what a safekeeper uses when nothing else is said.
func Defaults() Config {
	return Config{
		Datadir:                 ".",
		ListenPG:                "127.0.0.1:5454",
		ListenGRPC:              "127.0.0.1:5455",
		ListenHTTP:              "127.0.0.1:7676",
		ControlFileSaveInterval: Duration{Duration: 300 * time.Second},
		MaxUnflushedBytes:       1 << 20,
		MaxUnflushedDelay:       Duration{Duration: 5 * time.Millisecond},
		WALPrealloc:             "zero",
		WALCacheSize:            walstore.DefaultRecentSize,
		LogFormat:               "plain",
		LogLevel:                "info",
	}
}

const usageHead = `safekeeper: keeps a durable, Paxos-replicated copy of PostgreSQL WAL.

A walproposer pushes WAL with START_WAL_PUSH on the libpq port; pageservers,
standbys and pg_receivewal read it back with START_REPLICATION. Status and
control are on the gRPC port, Prometheus metrics on the HTTP port.

Usage:
  safekeeper --id N --datadir DIR [flags]
  safekeeper --dump-control-file PATH

Settings come from built-in defaults, then the TOML file given by --config
(keys are the flag names with underscores: listen_pg = "127.0.0.1:5454"),
then flags.

Flags:
`

// Parse builds the configuration from args (without the program name).
// flag.ErrHelp is returned after the usage was written to out for -h/--help.
func Parse(args []string, out io.Writer) (Config, error) {
	c := Defaults()
	fs, err := daemon.NewFlags("safekeeper", usageHead, args, out, &c)
	if err != nil {
		return Config{}, err
	}
	fs.Uint64Var(&c.ID, "id", c.ID, "node id of this safekeeper; required on first start, then remembered in safekeeper.id")
	for _, name := range []string{"datadir", "D"} {
		fs.StringVar(&c.Datadir, name, c.Datadir, "data directory (timelines, control files, WAL)")
	}
	for _, name := range []string{"listen-pg", "l"} {
		fs.StringVar(&c.ListenPG, name, c.ListenPG, "libpq address for WAL push and replication")
	}
	fs.StringVar(&c.ListenGRPC, "listen-grpc", c.ListenGRPC, "gRPC address for status and control")
	fs.StringVar(&c.ListenHTTP, "listen-http", c.ListenHTTP, "HTTP address for /metrics")
	fs.StringVar(&c.ListenPGTenantOnly, "listen-pg-tenant-only", c.ListenPGTenantOnly, "extra libpq address that only accepts tenant-scoped tokens")
	fs.StringVar(&c.PgAuthPublicKeyPath, "pg-auth-public-key-path", c.PgAuthPublicKeyPath, "Ed25519 public key (PEM file or directory) for JWT auth on --listen-pg; empty = trust")
	fs.StringVar(&c.PgTenantOnlyAuthPublicKeyPath, "pg-tenant-only-auth-public-key-path", c.PgTenantOnlyAuthPublicKeyPath, "Ed25519 public key for JWT auth on --listen-pg-tenant-only")
	for _, name := range []string{"no-sync", "n"} {
		fs.BoolVar(&c.NoSync, name, c.NoSync, "disable fsync (UNSAFE: for tests only)")
	}
	fs.DurationVar(&c.ControlFileSaveInterval.Duration, "control-file-save-interval", c.ControlFileSaveInterval.Duration, "longest time in-memory LSNs stay unpersisted")
	fs.IntVar(&c.MaxUnflushedBytes, "max-unflushed-bytes", c.MaxUnflushedBytes, "fsync and acknowledge a steady WAL stream after this many bytes")
	fs.DurationVar(&c.MaxUnflushedDelay.Duration, "max-unflushed-delay", c.MaxUnflushedDelay.Duration, "... or once the oldest unflushed WAL is this old")
	fs.StringVar(&c.WALPrealloc, "wal-prealloc", c.WALPrealloc, "how new WAL segments get disk blocks: zero (written ahead in the background, so commits overwrite blocks and fdatasync journals nothing: the fastest commits), fallocate (reserved only: less disk traffic for bulk loads), or none (sparse, as Neon)")
	fs.IntVar(&c.WALCacheSize, "wal-cache-size", c.WALCacheSize, "bytes of each timeline's latest WAL kept in memory, so WAL senders following the commit LSN (a pageserver) do not read it back from disk; 0: off")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: plain or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.DumpControlFile, "dump-control-file", "", "print the control file at PATH as JSON and exit")
	fs.BoolVar(&c.Init, "init", false, "only write safekeeper.id (with --id) and exit")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	if err := daemon.ParseFlags(fs, args); err != nil {
		return Config{}, err
	}
	if c.DumpControlFile != "" || c.ShowVersion {
		return c, nil
	}
	return c, c.Validate()
}

// Validate checks values that would otherwise fail late or obscurely.
func (c Config) Validate() error {
	var errs []error
	for name, addr := range map[string]string{"listen-pg": c.ListenPG, "listen-grpc": c.ListenGRPC, "listen-http": c.ListenHTTP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port", name, addr))
		}
	}
	if c.ListenPGTenantOnly != "" {
		if _, _, err := net.SplitHostPort(c.ListenPGTenantOnly); err != nil {
			errs = append(errs, fmt.Errorf("--listen-pg-tenant-only %q: want host:port", c.ListenPGTenantOnly))
		}
	}
	if c.Datadir == "" {
		errs = append(errs, errors.New("--datadir must not be empty"))
	}
	switch c.WALPrealloc {
	case "zero", "fallocate", "none":
	default:
		errs = append(errs, fmt.Errorf("--wal-prealloc %q: want zero, fallocate or none", c.WALPrealloc))
	}
	if c.LogFormat != "plain" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want plain or json", c.LogFormat))
	}
	if c.WALCacheSize < 0 {
		errs = append(errs, fmt.Errorf("--wal-cache-size %d: want 0 (off) or more", c.WALCacheSize))
	}
	if c.MaxUnflushedBytes <= 0 || c.MaxUnflushedDelay.Duration <= 0 || c.ControlFileSaveInterval.Duration <= 0 {
		errs = append(errs, errors.New("--max-unflushed-bytes, --max-unflushed-delay and --control-file-save-interval must be positive"))
	}
	return errors.Join(errs...)
}

// NodeIDFile reconciles --id with the safekeeper.id file in datadir: the
// file wins if --id is absent, a different --id is refused, and the first
// start writes it durably.
func NodeIDFile(datadir string, flagID uint64) (uint64, error) {
	path := filepath.Join(datadir, "safekeeper.id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored, perr := strconv.ParseUint(string(b), 10, 64)
		if perr != nil {
			return 0, fmt.Errorf("%s is corrupt: %q", path, b)
		}
		if flagID != 0 && flagID != stored {
			return 0, fmt.Errorf("--id %d does not match id %d stored in %s: refusing to start with another safekeeper's data", flagID, stored, path)
		}
		return stored, nil
	case errors.Is(err, os.ErrNotExist):
		if flagID == 0 {
			return 0, fmt.Errorf("%s does not exist and no --id was given: pass --id N on the first start", path)
		}
		if err := durable.WriteFile(path, []byte(strconv.FormatUint(flagID, 10)), 0o600); err != nil {
			return 0, err
		}
		return flagID, nil
	default:
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
}
