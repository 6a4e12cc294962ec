package main

import (
	"errors"
	"flag"
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

	SyncSafekeepers bool `toml:"-"`
	ShowVersion     bool `toml:"-"`

	// Parsed forms.
	ttid  id.TenantTimeline
	start lsn.LSN
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

func defaults() config {
	return config{
		Slot: "walproposer", AppName: "walproposer", ProtoVersion: 3,
		ListenHTTP: "127.0.0.1:7678", WalSegSize: lsn.DefaultSegmentSize,
		SyncTimeout:    duration{60 * time.Second},
		ReconnectDelay: duration{100 * time.Millisecond},
		Heartbeat:      duration{time.Second},
		LogFormat:      "plain", LogLevel: "info",
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
	fs := flag.NewFlagSet("walproposer", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	d := defaults()
	var f config
	var sks string
	configPath := fs.String("config", "", "TOML configuration file")
	fs.StringVar(&f.PgConn, "pgconn", "", "connection string of the primary (libpq key=value or URI)")
	fs.StringVar(&sks, "safekeepers", "", "comma-separated host:port of the safekeepers' libpq ports")
	fs.StringVar(&f.TenantID, "tenant-id", "", "tenant id (32 hex characters)")
	fs.StringVar(&f.TimelineID, "timeline-id", "", "timeline id (32 hex characters)")
	fs.StringVar(&f.StartLSN, "start-lsn", "", "where a new timeline's WAL starts (default: the slot's restart LSN)")
	fs.StringVar(&f.Slot, "slot", d.Slot, "physical replication slot on the primary (created if missing)")
	fs.StringVar(&f.AppName, "app-name", d.AppName, "application_name on the primary: list it in synchronous_standby_names")
	fs.IntVar(&f.ProtoVersion, "proto-version", d.ProtoVersion, "safekeeper protocol version (2 or 3)")
	fs.StringVar(&f.ListenHTTP, "listen-http", d.ListenHTTP, "HTTP address for /metrics (empty: none)")
	fs.StringVar(&f.AuthTokenFile, "auth-token-file", "", "file holding the JWT for the safekeepers (or set $STRATA_AUTH_TOKEN)")
	fs.UintVar(&f.PgVersion, "pg-version", 0, "--sync-safekeepers: PG_VERSION_NUM to greet with (0: unknown)")
	fs.Uint64Var(&f.SystemID, "system-id", 0, "--sync-safekeepers: database system identifier to greet with (0: unknown)")
	fs.UintVar(&f.WalSegSize, "wal-seg-size", d.WalSegSize, "--sync-safekeepers: WAL segment size")
	fs.DurationVar(&f.SyncTimeout.Duration, "sync-timeout", d.SyncTimeout.Duration, "--sync-safekeepers: give up after this long")
	fs.DurationVar(&f.ReconnectDelay.Duration, "reconnect-delay", d.ReconnectDelay.Duration, "first delay before reconnecting to a safekeeper or the primary")
	fs.DurationVar(&f.Heartbeat.Duration, "heartbeat-interval", d.Heartbeat.Duration, "empty AppendRequest to idle safekeepers this often")
	fs.StringVar(&f.LogFormat, "log-format", d.LogFormat, "plain or json")
	fs.StringVar(&f.LogLevel, "log-level", d.LogLevel, "debug, info, warn, error")
	fs.BoolVar(&f.SyncSafekeepers, "sync-safekeepers", false, "no primary: elect, bring a majority to the same end of WAL, commit it, print that LSN and exit")
	fs.BoolVar(&f.ShowVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	c := defaults()
	if *configPath != "" {
		if err := daemon.DecodeConfigFile(*configPath, &c); err != nil {
			return config{}, err
		}
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "pgconn":
			c.PgConn = f.PgConn
		case "safekeepers":
			c.Safekeepers = splitList(sks)
		case "tenant-id":
			c.TenantID = f.TenantID
		case "timeline-id":
			c.TimelineID = f.TimelineID
		case "start-lsn":
			c.StartLSN = f.StartLSN
		case "slot":
			c.Slot = f.Slot
		case "app-name":
			c.AppName = f.AppName
		case "proto-version":
			c.ProtoVersion = f.ProtoVersion
		case "listen-http":
			c.ListenHTTP = f.ListenHTTP
		case "auth-token-file":
			c.AuthTokenFile = f.AuthTokenFile
		case "pg-version":
			c.PgVersion = f.PgVersion
		case "system-id":
			c.SystemID = f.SystemID
		case "wal-seg-size":
			c.WalSegSize = f.WalSegSize
		case "sync-timeout":
			c.SyncTimeout = f.SyncTimeout
		case "reconnect-delay":
			c.ReconnectDelay = f.ReconnectDelay
		case "heartbeat-interval":
			c.Heartbeat = f.Heartbeat
		case "log-format":
			c.LogFormat = f.LogFormat
		case "log-level":
			c.LogLevel = f.LogLevel
		}
	})
	c.SyncSafekeepers, c.ShowVersion = f.SyncSafekeepers, f.ShowVersion
	if c.ShowVersion {
		return c, nil
	}
	return c, c.validate()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
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
