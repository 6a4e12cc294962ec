// Package daemon holds the plumbing every Strata daemon shares: its main
// function, its logger, how it reads its TOML configuration file, the
// lock on its data directory, and the metrics and profiler routes of its
// HTTP port.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"
)

// NewLogger returns a logger writing to stderr at level ("debug", "info",
// "warn", "error"), as one JSON object a line when format is "json" and as
// plain text otherwise.
func NewLogger(format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: %w", level, err)
	}
	var l zerolog.Logger
	switch format {
	case "json":
		l = zerolog.New(os.Stderr)
	case "plain", "":
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339Nano, NoColor: true})
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: want plain or json", format)
	}
	return l.Level(lvl).With().Timestamp().Logger(), nil
}

// DecodeConfigFile reads the TOML file at path into v, which holds the
// defaults beforehand. A key v has no field for is an error: a misspelt
// setting must not be silently ignored.
func DecodeConfigFile(path string, v any) error {
	md, err := toml.DecodeFile(path, v)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return fmt.Errorf("config %s: unknown key %q", path, undecoded[0].String())
	}
	return nil
}

// Duration is a time.Duration written as "5s" or "300ms" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// NewFlags starts a daemon's command line. It finds --config FILE (or
// --config=FILE) in args and decodes that file into v, which holds the
// defaults beforehand, and returns a flag set that has --config and
// prints usage, then the flags, for --help. Daemons then declare each
// flag with a field of v as both its target and its default: a flag given
// on the command line overrides the file, and --help shows the values in
// effect. Finish with ParseFlags.
func NewFlags(name, usage string, args []string, out io.Writer, v any) (*flag.FlagSet, error) {
	path, err := configPath(args)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := DecodeConfigFile(path, v); err != nil {
			return nil, err
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	fs.String("config", path, "TOML configuration file")
	return fs, nil
}

// ParseFlags parses args with fs and refuses positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	return nil
}

// configPath finds --config in args, before the flags are parsed.
func configPath(args []string) (string, error) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "config" {
			continue
		}
		if hasVal {
			return val, nil
		}
		if i+1 == len(args) {
			return "", errors.New("flag needs an argument: --config")
		}
		return args[i+1], nil
	}
	return "", nil
}

// SplitList splits a comma-separated flag value, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Main is a daemon's main function: it builds the configuration from the
// command line with parse and hands it to run. It exits 0 after --help, 2
// (with the message) on a bad command line, 1 when run fails.
func Main[C any](name string, parse func(args []string, out io.Writer) (C, error), run func(C) error) {
	cfg, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
