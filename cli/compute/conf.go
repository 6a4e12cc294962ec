package compute

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"strata.dev/cli/cluster"
)

// Setting is one postgresql.conf line.
type Setting struct{ Name, Value string }

// managed are settings the CLI owns: a --pg-option cannot change them
// without breaking what the CLI recorded or relies on.
var managed = map[string]string{
	"port":                    "--port / --pg-port",
	"listen_addresses":        "nothing: computes listen on 127.0.0.1",
	"unix_socket_directories": "nothing: computes are reached over TCP",
}

// ParseOption parses a --pg-option argument "name=value".
func ParseOption(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", fmt.Errorf("--pg-option %q: want name=value", s)
	}
	if err := checkOptionName(name); err != nil {
		return "", "", err
	}
	value = strings.TrimSpace(value)
	if err := checkOptionValue(name, value); err != nil {
		return "", "", err
	}
	return name, value, nil
}

// checkOptionValue refuses what would break the postgresql.conf line.
func checkOptionValue(name, value string) error {
	if strings.ContainsAny(value, "\n\r\x00") {
		return fmt.Errorf("--pg-option %s: the value holds a line break or NUL", name)
	}
	return nil
}

func checkOptionName(name string) error {
	for _, r := range name {
		if !(r == '_' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return fmt.Errorf("--pg-option %q: not a PostgreSQL setting name", name)
		}
	}
	if how, ok := managed[strings.ToLower(name)]; ok {
		return fmt.Errorf("--pg-option %s: strata sets it (use %s)", name, how)
	}
	return nil
}

// Settings are a compute's postgresql.conf settings, in order: listening,
// replication to the walproposer (read-write) or read-only mode (static),
// then the compute's options, which win over the earlier lines.
func Settings(c cluster.Compute) ([]Setting, error) {
	s := []Setting{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(c.Port)},
		{"unix_socket_directories", ""},
		{"wal_level", "replica"},
		{"max_wal_senders", "10"},
		{"max_replication_slots", "10"},
	}
	if c.ReadOnly() {
		s = append(s, Setting{"default_transaction_read_only", "on"})
	} else {
		// Every commit waits until the walproposer reports a safekeeper
		// majority has it.
		s = append(s, Setting{"synchronous_standby_names", "walproposer"}, Setting{"synchronous_commit", "on"})
	}
	names := make([]string, 0, len(c.Options))
	for n := range c.Options {
		if err := checkOptionName(n); err != nil {
			return nil, err
		}
		if err := checkOptionValue(n, c.Options[n]); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s = append(s, Setting{n, c.Options[n]})
	}
	return s, nil
}

// confText renders settings as postgresql.conf lines. Every value is
// quoted: PostgreSQL accepts a quoted value for any type.
func confText(header string, settings []Setting) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# %s\n", header)
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = '%s'\n", s.Name, strings.ReplaceAll(strings.ReplaceAll(s.Value, `\`, `\\`), "'", "''"))
	}
	return b.String()
}

// appendConf adds settings to the postgresql.conf at path.
func appendConf(path, header string, settings []Setting) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, err = f.WriteString(confText(header, settings))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
