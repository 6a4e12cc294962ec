// Package config is the pageserver's configuration: built-in defaults, then
// a TOML file (--config), then command-line flags, each overriding the one
// before.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"strata.dev/libs/daemon"
)

// Config is everything the daemon needs to start.
type Config struct {
	ID         uint64 `toml:"id"`
	Datadir    string `toml:"datadir"`
	ListenPG   string `toml:"listen_pg"`
	ListenGRPC string `toml:"listen_grpc"`
	ListenHTTP string `toml:"listen_http"`
	// Safekeepers are the host:port libpq addresses WAL is streamed from.
	Safekeepers []string `toml:"safekeepers"`
	// SafekeepersGRPC are the same safekeepers' gRPC addresses, in the same
	// order: their WatchTimeline streams say which one to stream from, and
	// the pageserver's durable position is reported to each of them.
	SafekeepersGRPC []string `toml:"safekeepers_grpc"`
	// SafekeeperTokenPath is a file holding the JWT presented to the
	// safekeepers; empty: none (trust).
	SafekeeperTokenPath string `toml:"safekeeper_token_path"`
	// CheckpointDistance is how much WAL the open in-memory layer takes
	// before it is frozen and written out as a delta layer.
	CheckpointDistance uint64 `toml:"checkpoint_distance"`
	// LayerCacheSize is how many bytes of layer-file blocks reads keep in
	// memory (0: none).
	LayerCacheSize uint64 `toml:"layer_cache_size"`
	// ImageCreationThreshold is how many delta layers over a key range make
	// compaction write an image layer for it.
	ImageCreationThreshold int `toml:"image_creation_threshold"`
	// CompactionPeriod is how often timelines are compacted; 0 disables.
	CompactionPeriod Duration `toml:"compaction_period"`
	// WaitLSNTimeout bounds how long a read waits for WAL to arrive.
	WaitLSNTimeout Duration `toml:"wait_lsn_timeout"`
	// PgBinDir holds PostgreSQL 15's initdb (and postgres for WAL redo).
	PgBinDir string `toml:"pg_bin_dir"`
	// InitdbSuperuser is the superuser of bootstrapped clusters.
	InitdbSuperuser string `toml:"initdb_superuser"`
	// WalRedoProcesses is the size of the WAL-redo process pool; 0: one
	// per CPU.
	WalRedoProcesses int `toml:"walredo_processes"`
	// WalRedoTimeout bounds one redo request (and a redo process start).
	WalRedoTimeout Duration `toml:"walredo_timeout"`
	// WalRedoIdleTimeout stops redo processes idle this long; 0: never.
	WalRedoIdleTimeout Duration `toml:"walredo_idle_timeout"`
	// WalRedoLibrary is walredo.so (pageserver/pgxn/walredo); empty: the
	// one next to the pageserver binary.
	WalRedoLibrary string `toml:"walredo_library"`
	// WalRedoDir is the redo processes' scratch directory; empty:
	// <datadir>/walredo.
	WalRedoDir string `toml:"walredo_dir"`
	// WalRedoInGo applies the common heap and btree records in Go
	// (pageserver/goredo, tested byte-exact against the redo processes);
	// false sends every PostgreSQL record to a redo process.
	WalRedoInGo bool `toml:"walredo_in_go"`
	// WalRedoUser runs redo processes when the pageserver runs as root
	// (PostgreSQL refuses root); empty: the pageserver's own user.
	WalRedoUser string `toml:"walredo_user"`
	// NoSync disables every fsync. Unsafe: tests only.
	NoSync    bool   `toml:"no_sync"`
	LogFormat string `toml:"log_format"` // plain or json
	LogLevel  string `toml:"log_level"`

	// ShowVersion replaces running the daemon.
	ShowVersion bool `toml:"-"`
}

// Duration is a time.Duration written as "5s" or "300ms" in TOML.
type Duration = daemon.Duration

// Defaults are what a pageserver uses when nothing else is said. The ports
// are Neon's (64000 libpq, 9898 HTTP).
func Defaults() Config {
	return Config{
		Datadir:                ".",
		ListenPG:               "127.0.0.1:64000",
		ListenGRPC:             "127.0.0.1:64001",
		ListenHTTP:             "127.0.0.1:9898",
		CheckpointDistance:     256 << 20,
		LayerCacheSize:         256 << 20,
		ImageCreationThreshold: 3,
		CompactionPeriod:       Duration{Duration: 20 * time.Second},
		WaitLSNTimeout:         Duration{Duration: 300 * time.Second},
		PgBinDir:               "/usr/lib/postgresql/15/bin",
		InitdbSuperuser:        "postgres",
		WalRedoTimeout:         Duration{Duration: 60 * time.Second},
		WalRedoIdleTimeout:     Duration{Duration: 5 * time.Minute},
		WalRedoInGo:            true,
		LogFormat:              "plain",
		LogLevel:               "info",
	}
}

const usageHead = `pageserver: turns the safekeepers' WAL into versioned pages.

It streams each timeline's WAL from a safekeeper, decodes it and keeps
every page version in layer files under --datadir. Timelines are created
through the HTTP management API on --listen-http (Neon's routes):

  POST /v1/tenant/<tenant>/timeline {"new_timeline_id": "<id>"}   initdb
  POST ... {"new_timeline_id": "<id>", "ancestor_timeline_id": "<id>",
            "ancestor_start_lsn": "0/16B5A50"}                      branch
  PUT  /v1/tenant/<tenant>/timeline/<id>/import_basebackup          tar body
  GET  /v1/tenant/<tenant>/timeline/<id>                            status

Pages are rebuilt from WAL by a pool of WAL-redo processes: unmodified
PostgreSQL 15 (postgres --single on a scratch copy of an initdb'd cluster)
running the walredo.so extension that make build puts next to this binary.
Prometheus metrics are at /metrics on the same port. On --listen-grpc: the
management service strata.pageserver.v1.Pageserver (tenants, timelines,
imports, branches, basebackups, GetPage, LSN for a timestamp; the strata
CLI uses it), with gRPC health and reflection (grpcurl -plaintext ADDR
list). On --listen-pg (libpq): pagestream_v2/v3 <tenant> <timeline>
(GetPage@LSN and friends) and basebackup <tenant> <timeline> [<lsn>]
[--gzip] (a tar vanilla PostgreSQL 15 starts from). Run it as
an unprivileged user: it runs initdb and postgres.

Usage:
  pageserver --id N --datadir DIR --safekeepers host:port,...
             [--safekeepers-grpc host:port,...] [flags]

With the safekeepers' gRPC addresses (same order as --safekeepers) the
pageserver follows each one's WatchTimeline stream to choose the one to
stream from (highest commit LSN, then lowest lag) and reports its durable
LSN to every one of them (ReportPageserverFeedback), so that each can
remove WAL; without them it polls TIMELINE_STATUS and reports only to the
safekeeper it streams from.

Settings come from built-in defaults, then the TOML file given by --config
(keys are the flag names with underscores: listen_pg = "127.0.0.1:64000",
safekeepers = ["127.0.0.1:5454"], safekeepers_grpc = ["127.0.0.1:5455"]),
then flags.

Flags:
`

// Parse builds the configuration from args (without the program name).
// flag.ErrHelp is returned after the usage was written to out for -h/--help.
func Parse(args []string, out io.Writer) (Config, error) {
	c := Defaults()
	fs, err := daemon.NewFlags("pageserver", usageHead, args, out, &c)
	if err != nil {
		return Config{}, err
	}
	fs.Uint64Var(&c.ID, "id", c.ID, "node id of this pageserver (names it to the safekeepers)")
	for _, name := range []string{"datadir", "D"} {
		fs.StringVar(&c.Datadir, name, c.Datadir, "data directory (tenants, timelines, layer files)")
	}
	fs.StringVar(&c.ListenPG, "listen-pg", c.ListenPG, "libpq address for pages and basebackups")
	fs.StringVar(&c.ListenGRPC, "listen-grpc", c.ListenGRPC, "gRPC address for status and control")
	fs.StringVar(&c.ListenHTTP, "listen-http", c.ListenHTTP, "HTTP address for the management API and /metrics")
	fs.Func("safekeepers", "comma-separated host:port libpq addresses of the safekeepers (default from the file: "+strings.Join(c.Safekeepers, ",")+")", func(s string) error {
		c.Safekeepers = daemon.SplitList(s)
		return nil
	})
	fs.Func("safekeepers-grpc", "comma-separated host:port gRPC addresses of the same safekeepers, in the same order (default from the file: "+strings.Join(c.SafekeepersGRPC, ",")+")", func(s string) error {
		c.SafekeepersGRPC = daemon.SplitList(s)
		return nil
	})
	fs.StringVar(&c.SafekeeperTokenPath, "safekeeper-token-path", c.SafekeeperTokenPath, "file with the JWT to present to the safekeepers; empty = none")
	fs.Uint64Var(&c.LayerCacheSize, "layer-cache-size", c.LayerCacheSize, "bytes of layer-file blocks kept in memory for reads (0 = none)")
	fs.Uint64Var(&c.CheckpointDistance, "checkpoint-distance", c.CheckpointDistance, "bytes of WAL in the in-memory layer before it is written out as a delta layer")
	fs.IntVar(&c.ImageCreationThreshold, "image-creation-threshold", c.ImageCreationThreshold, "delta layers over a key range that make compaction write an image layer")
	fs.DurationVar(&c.CompactionPeriod.Duration, "compaction-period", c.CompactionPeriod.Duration, "how often timelines are compacted (image layers); 0 disables")
	fs.StringVar(&c.PgBinDir, "pg-bin-dir", c.PgBinDir, "directory of PostgreSQL 15's binaries (initdb)")
	fs.StringVar(&c.InitdbSuperuser, "initdb-superuser", c.InitdbSuperuser, "superuser of clusters bootstrapped with initdb")
	fs.IntVar(&c.WalRedoProcesses, "walredo-processes", c.WalRedoProcesses, "WAL-redo processes (postgres --single) in the pool; 0 = one per CPU")
	fs.DurationVar(&c.WalRedoTimeout.Duration, "walredo-timeout", c.WalRedoTimeout.Duration, "longest one WAL-redo request may take before its process is killed and the request retried")
	fs.BoolVar(&c.WalRedoInGo, "walredo-in-go", c.WalRedoInGo, "apply the common heap and btree WAL records in Go; false = every record through a redo process")
	fs.DurationVar(&c.WalRedoIdleTimeout.Duration, "walredo-idle-timeout", c.WalRedoIdleTimeout.Duration, "stop WAL-redo processes idle this long; 0 = never")
	fs.StringVar(&c.WalRedoLibrary, "walredo-library", c.WalRedoLibrary, "the WAL-redo extension walredo.so; empty = the one next to this binary (make build puts it there)")
	fs.StringVar(&c.WalRedoDir, "walredo-dir", c.WalRedoDir, "scratch directory of the WAL-redo processes (a template cluster and one copy per process); empty = DATADIR/walredo")
	fs.StringVar(&c.WalRedoUser, "walredo-user", c.WalRedoUser, "unprivileged user the WAL-redo processes run as when the pageserver runs as root")
	fs.DurationVar(&c.WaitLSNTimeout.Duration, "wait-lsn-timeout", c.WaitLSNTimeout.Duration, "longest a read waits for the WAL it needs")
	fs.BoolVar(&c.NoSync, "no-sync", c.NoSync, "disable fsync (UNSAFE: for tests only)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: plain or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	if err := daemon.ParseFlags(fs, args); err != nil {
		return Config{}, err
	}
	if c.ShowVersion {
		return c, nil
	}
	return c, c.Validate()
}

// Validate checks values that would otherwise fail late or obscurely.
func (c Config) Validate() error {
	var errs []error
	for _, l := range []struct{ name, addr string }{{"listen-pg", c.ListenPG}, {"listen-grpc", c.ListenGRPC}, {"listen-http", c.ListenHTTP}} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port", l.name, l.addr))
		}
	}
	for _, sk := range c.Safekeepers {
		if _, _, err := net.SplitHostPort(sk); err != nil {
			errs = append(errs, fmt.Errorf("--safekeepers: %q: want host:port", sk))
		}
	}
	for _, sk := range c.SafekeepersGRPC {
		if _, _, err := net.SplitHostPort(sk); err != nil {
			errs = append(errs, fmt.Errorf("--safekeepers-grpc: %q: want host:port", sk))
		}
	}
	if len(c.SafekeepersGRPC) != 0 && len(c.SafekeepersGRPC) != len(c.Safekeepers) {
		errs = append(errs, fmt.Errorf("--safekeepers-grpc lists %d addresses and --safekeepers %d: want one gRPC address per safekeeper, in the same order",
			len(c.SafekeepersGRPC), len(c.Safekeepers)))
	}
	if c.Datadir == "" {
		errs = append(errs, errors.New("--datadir is empty"))
	}
	if c.CheckpointDistance < 1<<20 {
		errs = append(errs, fmt.Errorf("--checkpoint-distance %d: want at least 1 MiB", c.CheckpointDistance))
	}
	if c.ImageCreationThreshold < 1 {
		errs = append(errs, fmt.Errorf("--image-creation-threshold %d: want at least 1", c.ImageCreationThreshold))
	}
	if c.CompactionPeriod.Duration < 0 {
		errs = append(errs, fmt.Errorf("--compaction-period %v: want 0 (off) or a positive duration", c.CompactionPeriod.Duration))
	}
	if c.InitdbSuperuser == "" {
		errs = append(errs, errors.New("--initdb-superuser is empty"))
	}
	if c.WaitLSNTimeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--wait-lsn-timeout %v: want a positive duration", c.WaitLSNTimeout.Duration))
	}
	if c.WalRedoProcesses < 0 {
		errs = append(errs, fmt.Errorf("--walredo-processes %d: want 0 (one per CPU) or more", c.WalRedoProcesses))
	}
	if c.WalRedoTimeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--walredo-timeout %v: want a positive duration", c.WalRedoTimeout.Duration))
	}
	if c.WalRedoIdleTimeout.Duration < 0 {
		errs = append(errs, fmt.Errorf("--walredo-idle-timeout %v: want 0 (never) or a positive duration", c.WalRedoIdleTimeout.Duration))
	}
	if _, err := daemon.NewLogger(c.LogFormat, c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
