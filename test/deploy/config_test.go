package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"strata.dev/cli/cluster"
	psconfig "strata.dev/pageserver/config"
	skconfig "strata.dev/safekeeper/config"
	"strata.dev/test/daemons"
)

// tomlKeys are the TOML keys of a configuration struct (toml:"-" fields
// are not settable from the file).
func tomlKeys(v any) []string {
	var keys []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("toml"), ",")
		if tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// documented checks that every key is set or shown commented out in the
// example file, so an operator finds every setting there.
func documented(t *testing.T, path string, keys []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(k) + ` = `).Match(b) {
			t.Errorf("%s does not show %s (set it, or show it commented out)", filepath.Base(path), k)
		}
	}
}

func TestPageserverConfig(t *testing.T) {
	path := repoFile(t, "deploy/config/pageserver.toml")
	c, err := psconfig.Parse([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("pageserver --config %s: %v", path, err)
	}
	documented(t, path, tomlKeys(psconfig.Config{}))
	if c.ID == 0 || len(c.Safekeepers) != 3 || len(c.SafekeepersGRPC) != 3 || c.NoSync {
		t.Errorf("the example is not a 3-safekeeper production setup: %+v", c)
	}
}

func TestSafekeeperConfig(t *testing.T) {
	path := repoFile(t, "deploy/config/safekeeper.toml")
	c, err := skconfig.Parse([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("safekeeper --config %s: %v", path, err)
	}
	documented(t, path, tomlKeys(skconfig.Config{}))
	if c.ID == 0 || c.NoSync {
		t.Errorf("the example is not a production setup: %+v", c)
	}
}

// The walproposer's parser is in its command (package main): the example
// goes through the real binary. --help loads the file (an unknown key is
// a bad command line) and lists the flags; a run with an unreachable
// primary gets past validation and fails to connect (exit 1, not the 2 of
// a bad configuration).
func TestWalproposerConfig(t *testing.T) {
	path := repoFile(t, "deploy/config/walproposer.toml")
	bin := daemons.Binary(t, "walproposer")

	help, err := exec.Command(bin, "--config", path, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("walproposer --config %s --help: %v\n%s", path, err, help)
	}
	_, flags, ok := strings.Cut(string(help), "\nFlags:\n")
	if !ok {
		t.Fatalf("no Flags: in --help:\n%s", help)
	}
	var keys []string
	for sc := bufio.NewScanner(strings.NewReader(flags)); sc.Scan(); {
		if m := regexp.MustCompile(`^\s+-([a-z][a-z0-9-]*)`).FindStringSubmatch(sc.Text()); m != nil {
			switch m[1] {
			case "config", "version", "sync-safekeepers": // not file settings
			default:
				keys = append(keys, strings.ReplaceAll(m[1], "-", "_"))
			}
		}
	}
	if len(keys) < 10 {
		t.Fatalf("found only flags %q in --help:\n%s", keys, help)
	}
	documented(t, path, keys)
	// --help shows the values in effect: the file's.
	if !strings.Contains(flags, `(default "0123456789abcdef0123456789abcdef")`) {
		t.Errorf("--help with the example does not show its tenant id:\n%s", help)
	}

	run := exec.Command(bin, "--config", path, "--pgconn", "host=/nonexistent-strata-socket-dir port=1 connect_timeout=5", "--listen-http", "")
	out, err := run.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "connect to the primary") {
		t.Fatalf("walproposer with the example and no primary: %v, want exit status 1 (validated, then no primary)\n%s", err, out)
	}

	// The check has teeth: a misspelt key is refused as a bad configuration.
	bad := filepath.Join(t.TempDir(), "walproposer.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, append(b, "\nheartbeat_intervall = \"1s\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "--config", bad, "--help").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "heartbeat_intervall") {
		t.Errorf("walproposer with a misspelt key: %v, want exit status 2 naming it\n%s", err, out)
	}
}

// strata.toml loads through the CLI's own loader, and describes the same
// cluster as the daemons' examples: the same safekeepers in the same
// order, the pageserver's ports, the walproposer's tenant and timeline.
func TestClusterFile(t *testing.T) {
	dir := repoFile(t, "deploy/config")
	f, err := cluster.Load(dir)
	if err != nil {
		t.Fatalf("cluster.Load(%s): %v", dir, err)
	}
	ps, err := psconfig.Parse([]string{"--config", filepath.Join(dir, "pageserver.toml")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var wp struct {
		Safekeepers []string `toml:"safekeepers"`
		TenantID    string   `toml:"tenant_id"`
		TimelineID  string   `toml:"timeline_id"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, "walproposer.toml"), &wp); err != nil {
		t.Fatal(err)
	}
	sk, err := skconfig.Parse([]string{"--config", filepath.Join(dir, "safekeeper.toml")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	if len(f.Safekeepers) != 3 {
		t.Fatalf("strata.toml has %d safekeepers, want the 3 of the layout", len(f.Safekeepers))
	}
	var pgs, grpcs []string
	for i, s := range f.Safekeepers {
		pgs, grpcs = append(pgs, s.ListenPG), append(grpcs, s.ListenGRPC)
		if s.ID != uint64(i+1) {
			t.Errorf("safekeepers[%d] has id %d, want %d", i, s.ID, i+1)
		}
		if port(s.ListenPG) != port(sk.ListenPG) || port(s.ListenGRPC) != port(sk.ListenGRPC) || port(s.ListenHTTP) != port(sk.ListenHTTP) {
			t.Errorf("safekeepers[%d] %+v: ports differ from safekeeper.toml's (%s, %s, %s)", i, s, sk.ListenPG, sk.ListenGRPC, sk.ListenHTTP)
		}
	}
	if !slices.Equal(pgs, ps.Safekeepers) || !slices.Equal(grpcs, ps.SafekeepersGRPC) || !slices.Equal(pgs, wp.Safekeepers) {
		t.Errorf("safekeepers: strata.toml %q / %q, pageserver.toml %q / %q, walproposer.toml %q", pgs, grpcs, ps.Safekeepers, ps.SafekeepersGRPC, wp.Safekeepers)
	}
	p := f.Pageserver
	if port(p.ListenPG) != port(ps.ListenPG) || port(p.ListenGRPC) != port(ps.ListenGRPC) || port(p.ListenHTTP) != port(ps.ListenHTTP) {
		t.Errorf("pageserver %+v: ports differ from pageserver.toml's (%s, %s, %s)", p, ps.ListenPG, ps.ListenGRPC, ps.ListenHTTP)
	}
	if f.TenantID != wp.TenantID {
		t.Errorf("tenant: strata.toml %s, walproposer.toml %s", f.TenantID, wp.TenantID)
	}
	if tl, err := f.Timeline("main"); err != nil || tl.String() != wp.TimelineID {
		t.Errorf("timeline main: strata.toml %v (%v), walproposer.toml %s", tl, err, wp.TimelineID)
	}
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	return p
}

// readUnit returns a systemd unit file's settings, by "Section.Key" (repeated keys
// keep their last value).
func readUnit(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := map[string]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", filepath.Base(path), line)
			}
			u[section+"."+k] = v
		}
	}
	return u
}

// Each daemon's unit runs it unprivileged with its example configuration
// file, restarts it, and keeps its data directory where the example says;
// systemd-analyze verify accepts it (with ExecStart pointed at a real
// binary: verify checks that it exists).
func TestSystemdUnits(t *testing.T) {
	for _, c := range []struct {
		daemon  string
		datadir func(t *testing.T, config string) string // "" for none
	}{
		{"pageserver", func(t *testing.T, config string) string {
			c, err := psconfig.Parse([]string{"--config", config}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			return c.Datadir
		}},
		{"safekeeper", func(t *testing.T, config string) string {
			c, err := skconfig.Parse([]string{"--config", config}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			return c.Datadir
		}},
		{"walproposer", nil},
	} {
		t.Run(c.daemon, func(t *testing.T) {
			path := repoFile(t, "deploy/systemd/strata-"+c.daemon+".service")
			u := readUnit(t, path)
			exe := "/usr/local/bin/" + c.daemon
			config := "/etc/strata/" + c.daemon + ".toml"
			if want := exe + " --config " + config; u["Service.ExecStart"] != want {
				t.Errorf("ExecStart=%s, want %s", u["Service.ExecStart"], want)
			}
			if u["Service.User"] == "" || u["Service.User"] == "root" {
				t.Errorf("User=%q: run it unprivileged", u["Service.User"])
			}
			if r := u["Service.Restart"]; r != "on-failure" && r != "always" {
				t.Errorf("Restart=%q", r)
			}
			if u["Service.NoNewPrivileges"] != "yes" || u["Service.ProtectSystem"] != "strict" {
				t.Errorf("NoNewPrivileges=%q ProtectSystem=%q, want yes and strict", u["Service.NoNewPrivileges"], u["Service.ProtectSystem"])
			}
			if u["Install.WantedBy"] != "multi-user.target" {
				t.Errorf("WantedBy=%q", u["Install.WantedBy"])
			}
			if c.datadir != nil {
				// ProtectSystem=strict leaves only the StateDirectory writable:
				// it must be the example's datadir.
				dd := c.datadir(t, repoFile(t, "deploy/config/"+c.daemon+".toml"))
				if want := "/var/lib/" + u["Service.StateDirectory"]; dd != want {
					t.Errorf("datadir %s in the example, StateDirectory makes %s writable", dd, want)
				}
				if u["Service.LimitNOFILE"] == "" {
					t.Error("no LimitNOFILE: a storage daemon keeps many files open")
				}
			}
			if c.daemon == "pageserver" && u["Service.PrivateDevices"] == "yes" {
				t.Error("PrivateDevices=yes would take /dev/shm from the WAL-redo PostgreSQL processes")
			}

			analyze, err := exec.LookPath("systemd-analyze")
			if err != nil {
				t.Skip("systemd-analyze is not installed: unit not verified")
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copyPath := filepath.Join(t.TempDir(), filepath.Base(path))
			if err := os.WriteFile(copyPath, bytes.ReplaceAll(b, []byte(exe+" "), []byte(daemons.Binary(t, c.daemon)+" ")), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(path), err, out)
			}
		})
	}
}
