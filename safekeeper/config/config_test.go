package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sk.toml")
	err := os.WriteFile(path, []byte(`
id = 3
datadir = "/var/lib/sk"
listen_pg = "0.0.0.0:6000"
max_unflushed_delay = "2ms"
control_file_save_interval = "10s"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"--config", path, "--listen-pg", "127.0.0.1:7000", "-D", "/tmp/x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != 3 || c.ListenPG != "127.0.0.1:7000" || c.Datadir != "/tmp/x" {
		t.Errorf("flags did not override the file: %+v", c)
	}
	if c.MaxUnflushedDelay.Duration != 2*time.Millisecond || c.ControlFileSaveInterval.Duration != 10*time.Second {
		t.Errorf("durations from the file: %+v", c)
	}
	if c.ListenGRPC != Defaults().ListenGRPC {
		t.Errorf("default lost: %q", c.ListenGRPC)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("listen_pgg = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen-pg", "nope"}, "want host:port"},
		{[]string{"--log-format", "xml"}, "plain or json"},
		{[]string{"--config", bad}, "unknown key"},
		{[]string{"--config", filepath.Join(dir, "missing.toml")}, "no such file"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--max-unflushed-bytes", "0"}, "must be positive"},
		{[]string{"--wal-cache-size", "-1"}, "want 0 (off) or more"},
	} {
		_, err := Parse(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v) = %v; want %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--listen-pg") && !strings.Contains(out.String(), "-listen-pg") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
}

func TestNodeIDFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := NodeIDFile(dir, 0); err == nil || !strings.Contains(err.Error(), "pass --id") {
		t.Fatalf("first start without --id: %v", err)
	}
	if id, err := NodeIDFile(dir, 7); err != nil || id != 7 {
		t.Fatalf("first start with --id 7: %d, %v", id, err)
	}
	if id, err := NodeIDFile(dir, 0); err != nil || id != 7 {
		t.Fatalf("restart without --id: %d, %v", id, err)
	}
	if _, err := NodeIDFile(dir, 8); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("restart with another --id: %v", err)
	}
}

// The example in deploy/ must stay valid.
func TestDeployExample(t *testing.T) {
	c, err := Parse([]string{"--config", "../../deploy/config/safekeeper.toml"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != 1 || c.ListenPG != "0.0.0.0:5454" || c.WALPrealloc != "zero" {
		t.Fatalf("example parsed as %+v", c)
	}
}
