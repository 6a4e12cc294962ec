package compute

import (
	"strings"
	"testing"

	"strata.dev/cli/cluster"
)

func TestParseOption(t *testing.T) {
	for _, tc := range []struct {
		in, name, value, err string
	}{
		{in: "work_mem=64MB", name: "work_mem", value: "64MB"},
		{in: " shared_buffers = 1GB ", name: "shared_buffers", value: "1GB"},
		{in: "search_path=a,b", name: "search_path", value: "a,b"},
		{in: "auto_explain.log_min_duration=0", name: "auto_explain.log_min_duration", value: "0"},
		{in: "log_line_prefix=", name: "log_line_prefix", value: ""},
		{in: "work_mem", err: "want name=value"},
		{in: "=1", err: "want name=value"},
		{in: "work mem=1", err: "not a PostgreSQL setting name"},
		{in: "a'b=1", err: "not a PostgreSQL setting name"},
		{in: "port=5433", err: "strata sets it"},
		{in: "log_line_prefix=a\nb", err: "line break"},
		{in: "LISTEN_ADDRESSES=*", err: "strata sets it"},
	} {
		name, value, err := ParseOption(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseOption(%q) = %q, %q, %v; want an error with %q", tc.in, name, value, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || value != tc.value {
			t.Errorf("ParseOption(%q) = %q, %q, %v; want %q, %q", tc.in, name, value, err, tc.name, tc.value)
		}
	}
}

func TestSettings(t *testing.T) {
	get := func(s []Setting, name string) (string, int) {
		at := -1
		v := ""
		for i, x := range s {
			if x.Name == name {
				v, at = x.Value, i
			}
		}
		return v, at
	}
	rw, err := Settings(cluster.Compute{Timeline: "main", Port: 55432, Options: map[string]string{"work_mem": "8MB", "synchronous_commit": "remote_write"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"port": "55432", "listen_addresses": "127.0.0.1", "wal_level": "replica",
		"synchronous_standby_names": "walproposer", "work_mem": "8MB",
	} {
		if v, at := get(rw, name); at < 0 || v != want {
			t.Errorf("read-write %s = %q (at %d), want %q", name, v, at, want)
		}
	}
	// An option overrides the CLI's value: it comes later in the file.
	_, def := get(rw[:len(rw)-2], "synchronous_commit")
	v, opt := get(rw, "synchronous_commit")
	if def < 0 || opt <= def || v != "remote_write" {
		t.Errorf("synchronous_commit: default at %d, option at %d (%q); want the option last", def, opt, v)
	}
	if _, at := get(rw, "default_transaction_read_only"); at >= 0 {
		t.Error("a read-write compute is read-only by default")
	}

	ro, err := Settings(cluster.Compute{Timeline: "main", Port: 55433, LSN: "0/16B5A50"})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := get(ro, "default_transaction_read_only"); v != "on" {
		t.Errorf("read-only compute: default_transaction_read_only = %q", v)
	}
	if _, at := get(ro, "synchronous_standby_names"); at >= 0 {
		t.Error("a read-only compute waits for a walproposer it does not have")
	}

	if _, err := Settings(cluster.Compute{Port: 1, Options: map[string]string{"port": "1"}}); err == nil {
		t.Error("a recorded port option is accepted")
	}
}

func TestConfText(t *testing.T) {
	got := confText("strata: x", []Setting{{"a", "it's"}, {"b", `C:\x`}, {"c", ""}})
	want := "\n# strata: x\na = 'it''s'\nb = 'C:\\\\x'\nc = ''\n"
	if got != want {
		t.Errorf("confText:\n%q\nwant\n%q", got, want)
	}
}
