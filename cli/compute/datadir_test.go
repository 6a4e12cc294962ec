package compute

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"strata.dev/libs/pguser"
)

type entry struct {
	name string
	typ  byte
	body string
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body))}
		if e.typ == tar.TypeSymlink {
			h.Linkname, h.Size = "/etc", 0
		}
		if e.typ == tar.TypeDir {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := w.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestExtractTar(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pgdata")
	err := extractTar(tarOf(t,
		entry{"global/", tar.TypeDir, ""},
		entry{"global/pg_control", tar.TypeReg, "control"},
		entry{"base/1/1259", tar.TypeReg, "pages"}, // parent not in the tar
		entry{"PG_VERSION", tar.TypeReg, "15\n"},
	), dir, pguser.User{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"global/pg_control": "control", "base/1/1259": "pages", "PG_VERSION": "15\n"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	for _, d := range []string{"", "global", "base/1"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %q: %v, %v; want mode 0700 (PostgreSQL refuses others)", d, fi.Mode(), err)
		}
	}
}

func TestExtractTarRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    entry
		want string
	}{
		{"parent", entry{"../escape", tar.TypeReg, "x"}, "outside the data directory"},
		{"nested parent", entry{"base/../../escape", tar.TypeReg, "x"}, "outside the data directory"},
		{"absolute", entry{"/etc/passwd", tar.TypeReg, "x"}, "outside the data directory"},
		{"symlink", entry{"pg_wal", tar.TypeSymlink, ""}, "want a directory or a file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			err := extractTar(tarOf(t, tc.e), filepath.Join(base, "pgdata"), pguser.User{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("extractTar: %v, want an error with %q", err, tc.want)
			}
			if _, err := os.Lstat(filepath.Join(base, "escape")); !os.IsNotExist(err) {
				t.Errorf("a file was written outside the data directory")
			}
		})
	}
	// A data directory is never merged into an existing one.
	dir := t.TempDir()
	if err := extractTar(tarOf(t, entry{"PG_VERSION", tar.TypeReg, "15\n"}), dir, pguser.User{}); err == nil {
		t.Error("extracting into an existing directory: no error")
	}
}
