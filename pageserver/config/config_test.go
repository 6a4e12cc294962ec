package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Parse(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Fatalf("Parse(nil) = %+v, want the defaults", c)
	}
}

// Defaults < file < flags.
func TestLayering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ps.toml")
	file := `id = 7
datadir = "/from/file"
listen_pg = "127.0.0.1:1111"
safekeepers = ["127.0.0.1:5454", "127.0.0.1:5455"]
wait_lsn_timeout = "10s"
`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"--config", path, "--listen-pg", "127.0.0.1:2222", "--safekeepers", "a:1, b:2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != 7 || c.Datadir != "/from/file" || c.WaitLSNTimeout.Duration != 10*time.Second {
		t.Errorf("file values lost: %+v", c)
	}
	if c.ListenPG != "127.0.0.1:2222" || !reflect.DeepEqual(c.Safekeepers, []string{"a:1", "b:2"}) {
		t.Errorf("flags did not override the file: %+v", c)
	}
	if c.ListenHTTP != Defaults().ListenHTTP {
		t.Errorf("default lost: %q", c.ListenHTTP)
	}
	// --config=PATH works too.
	if c, err := Parse([]string{"--config=" + path}, &bytes.Buffer{}); err != nil || c.ID != 7 {
		t.Errorf("--config=PATH: %+v, %v", c, err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "unknown.toml")
	os.WriteFile(unknownKey, []byte("no_such_setting = 1\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--listen-pg", "nonsense"}, "--listen-pg"},
		{[]string{"--safekeepers", "a:1,b"}, `"b"`},
		{[]string{"--checkpoint-distance", "10"}, "--checkpoint-distance"},
		{[]string{"--log-format", "xml"}, "xml"},
		{[]string{"--config", filepath.Join(dir, "missing.toml")}, "missing.toml"},
		{[]string{"--config", unknownKey}, "no_such_setting"},
		{[]string{"--config"}, "--config"},
		{[]string{"stray"}, "stray"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	}
	for _, c := range cases {
		_, err := Parse(c.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %s", c.args, err, c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"Usage:", "--safekeepers", "-checkpoint-distance", "64000"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q:\n%s", want, out.String())
		}
	}
}
