package pgharness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// harnessConfFile holds every setting the harness makes. It is included from
// postgresql.conf and rewritten whole when the port changes, so the files
// initdb wrote are touched only once.
const harnessConfFile = "strata.conf"

const hbaConf = `# Written by strata.dev/test/pgharness: throw-away test clusters trust everyone local.
local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
host  all         all ::1/128      trust
host  replication all ::1/128      trust
`

// configure hooks the harness settings into postgresql.conf and writes them
// and pg_hba.conf.
func (c *Cluster) configure() error {
	main := filepath.Join(c.dataDir, "postgresql.conf")
	f, err := os.OpenFile(main, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", main, err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by strata.dev/test/pgharness.\ninclude '%s'\n", harnessConfFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", main, err)
	}
	if err := c.writeConf(); err != nil {
		return err
	}
	return c.writeOwned(filepath.Join(c.dataDir, "pg_hba.conf"), hbaConf)
}

func (c *Cluster) writeConf() error {
	fsync := "off"
	if c.fsync {
		fsync = "on"
	}
	settings := []setting{
		{"listen_addresses", "127.0.0.1"},
		{"port", fmt.Sprint(c.port)},
		{"unix_socket_directories", c.sockDir},
		{"fsync", fsync},
		{"wal_level", "replica"},
		{"max_wal_senders", "10"},
		{"max_replication_slots", "10"},
		// pg_ctl -l sends stderr to the log file, which also catches errors
		// from before a logging collector could start (such as a busy port).
		{"log_destination", "stderr"},
		{"logging_collector", "off"},
		{"log_line_prefix", "%m [%p] %q%a "},
	}
	var b strings.Builder
	b.WriteString("# Written by strata.dev/test/pgharness; rewritten when the port changes.\n")
	for _, s := range append(settings, c.confSet...) {
		fmt.Fprintf(&b, "%s = %s\n", s.key, quoteConf(s.value))
	}
	return c.writeOwned(filepath.Join(c.dataDir, harnessConfFile), b.String())
}

// quoteConf quotes a value for postgresql.conf, whose quoted strings process
// backslash escapes as well as doubled quotes.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
