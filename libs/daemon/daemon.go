// Package daemon holds the plumbing every Strata daemon shares: its logger
// and how it reads its TOML configuration file.
package daemon

import (
	"fmt"
	"os"
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
