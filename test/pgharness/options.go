package pgharness

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Option changes how New creates a cluster.
type Option func(*config)

type setting struct{ key, value string }

type config struct {
	conf       []setting
	initdbArgs []string
	start      bool
	fsync      bool
	checksums  bool
	walSegMB   int
	err        error // first invalid option, reported by New
}

func defaultConfig() config {
	return config{start: true}
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// WithConf adds "key = 'value'" to the server configuration, after the
// harness defaults so it overrides them. Repeatable; the last value of a key
// wins. The value is written quoted, which PostgreSQL accepts for every type.
// port and listen_addresses belong to the harness and are refused.
func WithConf(key, value string) Option {
	return func(c *config) {
		switch {
		case !settingName.MatchString(key):
			c.fail(fmt.Errorf("WithConf: invalid setting name %q", key))
		case ownedByHarness(key):
			c.fail(fmt.Errorf("WithConf: %s is chosen by the harness", key))
		default:
			c.conf = append(c.conf, setting{key, value})
		}
	}
}

// WithInitdbArgs appends arguments to initdb's command line.
func WithInitdbArgs(args ...string) Option {
	return func(c *config) { c.initdbArgs = append(c.initdbArgs, args...) }
}

// NoStart makes New return after initdb and configuration, without starting
// the server; call Start.
func NoStart() Option {
	return func(c *config) { c.start = false }
}

// WithFsync sets the server's fsync. The default is off, for speed; on also
// drops initdb's --no-sync, for tests whose subject is durability.
func WithFsync(on bool) Option {
	return func(c *config) { c.fsync = on }
}

// WithDataChecksums passes --data-checksums to initdb.
func WithDataChecksums() Option {
	return func(c *config) { c.checksums = true }
}

// WithWALSegSize passes --wal-segsize=mb to initdb (a power of two, 1 to 1024).
func WithWALSegSize(mb int) Option {
	return func(c *config) {
		if mb < 1 || mb > 1024 || mb&(mb-1) != 0 {
			c.fail(fmt.Errorf("WithWALSegSize: %d MiB is not a power of two in [1, 1024]", mb))
			return
		}
		c.walSegMB = mb
	}
}

// ownedByHarness reports settings an option may not change: tests reach the
// cluster through Port and ConnString, so moving it would break them.
func ownedByHarness(key string) bool {
	switch strings.ToLower(key) {
	case "port", "listen_addresses":
		return true
	}
	return false
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *config) initdbCommandArgs(dataDir string) []string {
	args := []string{"-D", dataDir, "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-instructions"}
	if !c.fsync {
		args = append(args, "--no-sync")
	}
	if c.checksums {
		args = append(args, "--data-checksums")
	}
	if c.walSegMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(c.walSegMB))
	}
	return append(args, c.initdbArgs...)
}
