package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"strata.dev/libs/daemon"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// config is everything the walproposer needs; TOML keys are the flag names
// with underscores.
type config struct {
	PgConn         string   `toml:"pgconn"`
	Safekeepers    []string `toml:"safekeepers"`
	TenantID       string   `toml:"tenant_id"`
	TimelineID     string   `toml:"timeline_id"`
	StartLSN       string   `toml:"start_lsn"`
	Slot           string   `toml:"slot"`
	AppName        string   `toml:"app_name"`
	ProtoVersion   int      `toml:"proto_version"`
	ListenHTTP     string   `toml:"listen_http"`
	AuthTokenFile  string   `toml:"auth_token_file"`
	PgVersion      uint     `toml:"pg_version"`
	SystemID       uint64   `toml:"system_id"`
	WalSegSize     uint     `toml:"wal_seg_size"`
	SyncTimeout    duration `toml:"sync_timeout"`
	ReconnectDelay duration `toml:"reconnect_delay"`
	Heartbeat      duration `toml:"heartbeat_interval"`
	LogFormat      string   `toml:"log_format"`
	LogLevel       string   `toml:"log_level"`
	Procs          int      `toml:"procs"`

	SyncSafekeepers bool `toml:"-"`
	ShowVersion     bool `toml:"-"`

	// Parsed forms.
	ttid  id.TenantTimeline
	start lsn.LSN
}

// duration is a time.Duration written as "5s" or "300ms" in TOML.
type duration = daemon.Duration

func defaults() config {
	return config{
		Slot: "walproposer", AppName: "walproposer", ProtoVersion: 3,
		ListenHTTP: "127.0.0.1:7678", WalSegSize: lsn.DefaultSegmentSize,
		SyncTimeout:    duration{Duration: 60 * time.Second},
		ReconnectDelay: duration{Duration: 100 * time.Millisecond},
		Heartbeat:      duration{Duration: time.Second},
		LogFormat:      "plain", LogLevel: "info",
		Procs: 1,
	}
}

const usage = `walproposer: makes every commit of an unmodified PostgreSQL primary wait
for a majority of Strata safekeepers.

It streams the primary's WAL through a physical replication slot, runs the
proposer side of the safekeeper consensus, and reports the quorum-flushed LSN
as its flush position. Configure the primary with

    synchronous_standby_names = 'walproposer'   # the --app-name
    synchronous_commit = on

Usage:
  walproposer --pgconn CONN --safekeepers h:p,h:p,h:p --tenant-id T --timeline-id L [flags]
  walproposer --sync-safekeepers --safekeepers ... --tenant-id T --timeline-id L
      (no primary: finish an interrupted term, print the committed end of WAL, exit)

Settings come from defaults, then --config FILE (TOML, keys are the flag
names with underscores), then flags.

Flags:
`

func parseConfig(args []string, out io.Writer) (config, error) {
	c := defaults()
	fs, err := daemon.NewFlags("walproposer", usage, args, out, &c)
	if err != nil {
		return config{}, err
	}
	fs.StringVar(&c.PgConn, "pgconn", c.PgConn, "connection string of the primary (libpq key=value or URI)")
	fs.Func("safekeepers", "comma-separated host:port of the safekeepers' libpq ports", func(s string) error {
		c.Safekeepers = daemon.SplitList(s)
		return nil
	})
	fs.StringVar(&c.TenantID, "tenant-id", c.TenantID, "tenant id (32 hex characters)")
	fs.StringVar(&c.TimelineID, "timeline-id", c.TimelineID, "timeline id (32 hex characters)")
	fs.StringVar(&c.StartLSN, "start-lsn", c.StartLSN, "where a new timeline's WAL starts (default: the slot's restart LSN)")
	fs.StringVar(&c.Slot, "slot", c.Slot, "physical replication slot on the primary (created if missing)")
	fs.StringVar(&c.AppName, "app-name", c.AppName, "application_name on the primary: list it in synchronous_standby_names")
	fs.IntVar(&c.ProtoVersion, "proto-version", c.ProtoVersion, "safekeeper protocol version (2 or 3)")
	fs.StringVar(&c.ListenHTTP, "listen-http", c.ListenHTTP, "HTTP address for /metrics (empty: none)")
	fs.StringVar(&c.AuthTokenFile, "auth-token-file", c.AuthTokenFile, "file holding the JWT for the safekeepers (or set $STRATA_AUTH_TOKEN)")
	fs.UintVar(&c.PgVersion, "pg-version", c.PgVersion, "--sync-safekeepers: PG_VERSION_NUM to greet with (0: unknown)")
	fs.Uint64Var(&c.SystemID, "system-id", c.SystemID, "--sync-safekeepers: database system identifier to greet with (0: unknown)")
	fs.UintVar(&c.WalSegSize, "wal-seg-size", c.WalSegSize, "--sync-safekeepers: WAL segment size")
	fs.DurationVar(&c.SyncTimeout.Duration, "sync-timeout", c.SyncTimeout.Duration, "--sync-safekeepers: give up after this long")
	fs.DurationVar(&c.ReconnectDelay.Duration, "reconnect-delay", c.ReconnectDelay.Duration, "first delay before reconnecting to a safekeeper or the primary")
	fs.DurationVar(&c.Heartbeat.Duration, "heartbeat-interval", c.Heartbeat.Duration, "empty AppendRequest to idle safekeepers this often")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "plain or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn, error")
	fs.IntVar(&c.Procs, "procs", c.Procs, "CPUs the walproposer's Go code may use at once (GOMAXPROCS; 0: one per CPU)")
	fs.BoolVar(&c.SyncSafekeepers, "sync-safekeepers", false, "no primary: elect, bring a majority to the same end of WAL, commit it, print that LSN and exit")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	if err := daemon.ParseFlags(fs, args); err != nil {
		return config{}, err
	}
	if c.ShowVersion {
		return c, nil
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	if len(c.Safekeepers) == 0 {
		errs = append(errs, errors.New("--safekeepers is required (host:port,host:port,...)"))
	}
	for _, a := range c.Safekeepers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("--safekeepers: %q is not host:port", a))
		}
	}
	var err error
	if c.ttid.Tenant, err = id.Parse(c.TenantID); err != nil {
		errs = append(errs, fmt.Errorf("--tenant-id: %w", err))
	}
	if c.ttid.Timeline, err = id.Parse(c.TimelineID); err != nil {
		errs = append(errs, fmt.Errorf("--timeline-id: %w", err))
	}
	if c.StartLSN != "" {
		if c.start, err = lsn.Parse(c.StartLSN); err != nil {
			errs = append(errs, fmt.Errorf("--start-lsn: %w", err))
		}
	}
	if !c.SyncSafekeepers && c.PgConn == "" {
		errs = append(errs, errors.New("--pgconn is required (or use --sync-safekeepers)"))
	}
	if v := pamsg.Version(c.ProtoVersion); v != pamsg.V2 && v != pamsg.V3 {
		errs = append(errs, fmt.Errorf("--proto-version %d: want 2 or 3", c.ProtoVersion))
	}
	if c.Procs < 0 {
		errs = append(errs, fmt.Errorf("--procs %d: want 0 (one per CPU) or more", c.Procs))
	}
	if c.LogFormat != "plain" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want plain or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// token reads the JWT for the safekeepers, if any.
func (c *config) token() (string, error) {
	if c.AuthTokenFile != "" {
		b, err := os.ReadFile(c.AuthTokenFile)
		if err != nil {
			return "", fmt.Errorf("--auth-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("STRATA_AUTH_TOKEN"); t != "" {
		return t, nil
	}
	return os.Getenv("NEON_AUTH_TOKEN"), nil
}
