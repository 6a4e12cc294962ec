package untar

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := w.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	tb := tarOf(t,
		entry{name: "./", typ: tar.TypeDir, mode: 0o755},
		entry{name: "PG_VERSION", typ: tar.TypeReg, mode: 0o600, body: "15\n"},
		entry{name: "global/", typ: tar.TypeDir, mode: 0o700},
		entry{name: "global/pg_control", typ: tar.TypeReg, mode: 0o600, body: strings.Repeat("c", 8192)},
		entry{name: "base/1/1259", typ: tar.TypeReg, mode: 0o640, body: "rel"}, // parents not in the tar
		entry{name: "pg_wal/", typ: tar.TypeDir, mode: 0o750},
		entry{name: "readonly/", typ: tar.TypeDir, mode: 0o500},
		entry{name: "readonly/file", typ: tar.TypeReg, mode: 0o400, body: "x"},
		entry{name: "a/../postgresql.conf", typ: tar.TypeReg, mode: 0o644, body: "# conf\n"},
	)
	st, err := Extract(context.Background(), bytes.NewReader(tb), dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 5 || st.Dirs != 3 || st.Bytes != 3+8192+3+1+7 {
		t.Errorf("stats %+v", st)
	}
	for _, c := range []struct {
		path string
		mode fs.FileMode
		body string
	}{
		{"PG_VERSION", 0o600, "15\n"},
		{"global/pg_control", 0o600, strings.Repeat("c", 8192)},
		{"base/1/1259", 0o640, "rel"},
		{"readonly/file", 0o400, "x"},
		{"postgresql.conf", 0o644, "# conf\n"},
		{"global", fs.ModeDir | 0o700, ""},
		{"base", fs.ModeDir | 0o700, ""},
		{"pg_wal", fs.ModeDir | 0o750, ""},
		{"readonly", fs.ModeDir | 0o500, ""},
	} {
		p := filepath.Join(dir, c.path)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
		if !fi.IsDir() {
			if b, _ := os.ReadFile(p); string(b) != c.body {
				t.Errorf("%s: %q, want %q", c.path, b, c.body)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("a/../postgresql.conf created the directory a")
	}
	os.Chmod(filepath.Join(dir, "readonly"), 0o700) // so TempDir's cleanup can remove it
}

func TestExtractRefuses(t *testing.T) {
	for _, tc := range []struct {
		what string
		e    entry
		want string
	}{
		{"parent", entry{name: "../escape", typ: tar.TypeReg, mode: 0o600, body: "x"}, "outside the data directory"},
		{"deep parent", entry{name: "base/../../escape", typ: tar.TypeReg, mode: 0o600, body: "x"}, "outside the data directory"},
		{"absolute", entry{name: "/tmp/escape", typ: tar.TypeReg, mode: 0o600, body: "x"}, "outside the data directory"},
		{"parent dir", entry{name: "../d/", typ: tar.TypeDir, mode: 0o700}, "outside the data directory"},
		{"symlink", entry{name: "pg_wal", typ: tar.TypeSymlink, link: "/etc"}, "only files and directories"},
		{"hard link", entry{name: "x", typ: tar.TypeLink, link: "../../etc/passwd"}, "only files and directories"},
		{"device", entry{name: "null", typ: tar.TypeChar}, "only files and directories"},
		{"file as the dir", entry{name: ".", typ: tar.TypeReg, mode: 0o600}, "named like the directory"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			tb := tarOf(t, entry{name: "PG_VERSION", typ: tar.TypeReg, mode: 0o600, body: "15\n"}, tc.e)
			_, err := Extract(context.Background(), bytes.NewReader(tb), dir, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract: %v, want an error saying %q", err, tc.want)
			}
			if tc.want == "outside the data directory" && !errors.Is(err, ErrUnsafeName) {
				t.Errorf("%v is not ErrUnsafeName", err)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Errorf("something was written beside the directory: %v", entries)
			}
		})
	}
}

func TestExtractTruncated(t *testing.T) {
	tb := tarOf(t, entry{name: "big", typ: tar.TypeReg, mode: 0o600, body: strings.Repeat("x", 10000)})
	_, err := Extract(context.Background(), bytes.NewReader(tb[:4000]), t.TempDir(), false)
	if err == nil {
		t.Fatal("a tar cut inside a file was accepted")
	}
}

func TestExtractCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tb := tarOf(t, entry{name: "f", typ: tar.TypeReg, mode: 0o600, body: "x"})
	if _, err := Extract(ctx, bytes.NewReader(tb), t.TempDir(), false); !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract with a cancelled context: %v", err)
	}
}
