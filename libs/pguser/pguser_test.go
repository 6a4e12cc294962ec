package pguser

import (
	"os"
	"path/filepath"
	"testing"
)

// CanTraverse, CanRead and CanExec judge by mode bits for another user:
// every ancestor needs search permission.
func TestPermissions(t *testing.T) {
	base := t.TempDir()
	// t.TempDir makes both its directory and the parent private.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	other := User{Name: "other", UID: 4242424, GID: 4242424, Switch: true}
	if !other.CanTraverse(base) {
		t.Skipf("%s sits in a directory other users cannot reach (TMPDIR)", base)
	}
	private := filepath.Join(base, "private")
	open := filepath.Join(base, "open")
	for dir, mode := range map[string]os.FileMode{private: 0o700, open: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(open, "bin")
	lib := filepath.Join(open, "lib.so")
	hidden := filepath.Join(private, "bin")
	for path, mode := range map[string]os.FileMode{exe: 0o755, lib: 0o600, hidden: 0o755} {
		if err := os.WriteFile(path, nil, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		what string
		got  bool
		want bool
	}{
		{"traverse the open directory", other.CanTraverse(open), true},
		{"traverse the private directory", other.CanTraverse(private), false},
		{"run an open binary", other.CanExec(exe), true},
		{"run a binary in a private directory", other.CanExec(hidden), false},
		{"read a 0600 file", other.CanRead(lib), false},
		{"read a missing file", other.CanRead(filepath.Join(open, "none")), false},
		{"no switch: anything", User{}.CanTraverse(private) && User{}.CanRead(lib), true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

// As root, Server takes the first account that exists (creating none when
// one does); otherwise the current user, with no switch.
func TestServer(t *testing.T) {
	if os.Geteuid() != 0 {
		u, err := Server("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if u.Switch || u.UID != uint32(os.Geteuid()) {
			t.Errorf("not root: Server = %+v, want the current user with no switch", u)
		}
		return
	}
	u, err := Server("strata-no-such-account", "root")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "root" || u.UID != 0 || !u.Switch {
		t.Errorf("Server(missing, root) = %+v, want root with a switch", u)
	}
	if _, err := Server(); err == nil {
		t.Error("Server() as root with no account: no error")
	}
}
