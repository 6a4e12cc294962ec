package basebackup

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
	"time"
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

func TestPrepareDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "new", "data")
	created, err := prepareDir(fresh)
	if err != nil || !created {
		t.Fatalf("absent dir: created=%v, %v", created, err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with %v, want 0700", fi.Mode().Perm())
	}

	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o755)
	if created, err := prepareDir(empty); err != nil || created {
		t.Fatalf("empty dir: created=%v, %v", created, err)
	}
	if fi, _ := os.Stat(empty); fi.Mode().Perm() != 0o700 {
		t.Errorf("empty dir left at %v, want 0700", fi.Mode().Perm())
	}

	os.WriteFile(filepath.Join(empty, "PG_VERSION"), []byte("15\n"), 0o600)
	if _, err := prepareDir(empty); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("non-empty dir: %v", err)
	}
	file := filepath.Join(empty, "PG_VERSION")
	if _, err := prepareDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file: %v", err)
	}

	// A failed backup leaves an existing directory empty and removes one
	// it created.
	if err := removePartial(empty, false); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("removePartial left %v", entries)
	}
	if err := removePartial(fresh, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("removePartial kept the directory it created: %v", err)
	}
}

func TestProgressLines(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		done, estimate int64
		elapsed        time.Duration
		width          int
		want           string
	}{
		{12 * mib, 40 * mib, 2 * time.Second, 80, "[============>                           ]  12 MiB of ~40 MiB (30%), 6.0 MiB/s"},
		{50 * mib, 40 * mib, 10 * time.Second, 80, "[========================================]  50 MiB of ~40 MiB (100%), 5.0 MiB/s"},
		{40*mib - 1, 40 * mib, time.Second, 80, "(99%)"},
		{3 * mib, 0, time.Second, 80, "3.0 MiB, 3.0 MiB/s"},
		{0, 40 * mib, 0, 80, "0 B of ~40 MiB (0%), -"},
		{12 * mib, 40 * mib, 2 * time.Second, 20, "12 MiB of ~40 MiB (30%), 6.0 MiB/s"}, // too narrow for a bar
	} {
		got := barLine(tc.done, tc.estimate, tc.elapsed, tc.width)
		if !strings.Contains(got, tc.want) {
			t.Errorf("barLine(%d, %d, %v, %d) = %q, want %q in it", tc.done, tc.estimate, tc.elapsed, tc.width, got, tc.want)
		}
		if len(got) >= tc.width && tc.estimate > 0 && strings.HasPrefix(got, "[") {
			t.Errorf("barLine is %d columns wide, the terminal %d", len(got), tc.width)
		}
	}
}

func TestProgressPacing(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false, 0)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	p.Start(100 << 20)
	for i := 1; i <= 12; i++ { // 12 s, an update every second
		now = now.Add(time.Second)
		p.Update(int64(i) << 20)
	}
	p.Finish(12 << 20)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "basebackup: 5.0 MiB of ~100 MiB (5%)") {
		t.Errorf("a line every 5 s expected, got:\n%s", out.String())
	}

	out.Reset()
	p = NewProgress(&out, true, 100)
	p.now = func() time.Time { return now }
	p.Start(10 << 20)
	now = now.Add(time.Second)
	p.Update(5 << 20)
	p.Finish(10 << 20)
	if s := out.String(); !strings.HasPrefix(s, "\r[") || !strings.HasSuffix(s, "(100%), 10 MiB/s\x1b[K\n") {
		t.Errorf("terminal bar: %q", s)
	}

	// A failed download ends the bar's line, so the error has its own.
	out.Reset()
	p = NewProgress(&out, true, 100)
	p.now = func() time.Time { return now }
	p.Start(10 << 20)
	now = now.Add(time.Second)
	p.Update(5 << 20)
	p.Abort()
	if s := out.String(); !strings.HasSuffix(s, "(50%), 5.0 MiB/s\x1b[K\n") {
		t.Errorf("aborted bar: %q", s)
	}
}
