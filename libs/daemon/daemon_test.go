package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, format := range []string{"plain", "json", ""} {
		if _, err := NewLogger(format, "info"); err != nil {
			t.Errorf("NewLogger(%q, info): %v", format, err)
		}
	}
	if _, err := NewLogger("xml", "info"); err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Errorf("bad format: err = %v", err)
	}
	if _, err := NewLogger("plain", "loud"); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Errorf("bad level: err = %v", err)
	}
}

func TestDecodeConfigFile(t *testing.T) {
	type conf struct {
		Name  string `toml:"name"`
		Count int    `toml:"count"`
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	c := conf{Name: "default", Count: 7}
	if err := DecodeConfigFile(write("ok.toml", "count = 3\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c != (conf{Name: "default", Count: 3}) {
		t.Errorf("decoded %+v, want defaults kept and count overridden", c)
	}

	err := DecodeConfigFile(write("typo.toml", "cuont = 3\n"), &c)
	if err == nil || !strings.Contains(err.Error(), `unknown key "cuont"`) {
		t.Errorf("misspelt key: err = %v", err)
	}
	err = DecodeConfigFile(write("bad.toml", "count = \n"), &c)
	if err == nil || !strings.Contains(err.Error(), "bad.toml") {
		t.Errorf("malformed file: err = %v", err)
	}
	if err := DecodeConfigFile(filepath.Join(dir, "missing.toml"), &c); err == nil {
		t.Error("missing file: no error")
	}
}

func TestConfigPath(t *testing.T) {
	cases := []struct {
		args []string
		want string
		err  bool
	}{
		{nil, "", false},
		{[]string{"--id", "3"}, "", false},
		{[]string{"--config", "a.toml", "--id", "3"}, "a.toml", false},
		{[]string{"-config=b.toml"}, "b.toml", false},
		{[]string{"--", "--config", "c.toml"}, "", false},
		{[]string{"--id", "3", "--config"}, "", true},
	}
	for _, c := range cases {
		got, err := configPath(c.args)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("configPath(%q) = %q, %v; want %q (error %v)", c.args, got, err, c.want, c.err)
		}
	}
}

func TestSplitList(t *testing.T) {
	got := SplitList(" a:1, ,b:2,")
	if len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Fatalf("SplitList = %q", got)
	}
}

func TestLockDatadir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockDatadir(dir, "thing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDatadir(dir, "thing"); err == nil || !strings.Contains(err.Error(), "in use by another thing") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := LockDatadir(dir, "thing")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
