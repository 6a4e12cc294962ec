package tenant

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body string
	typ        byte
	link       string
}

func makeTar(t testing.TB, entries ...entry) []byte {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
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

func TestExtractTar(t *testing.T) {
	good := makeTar(t, entry{name: "./global/", typ: tar.TypeDir}, entry{name: "./global/pg_control", body: "ctl"},
		entry{name: "base/1/1259", body: strings.Repeat("x", 9000)})
	for _, tc := range []struct {
		what  string
		input []byte
		err   string
		files int
	}{
		{"a data directory", good, "", 2},
		{"zero padding after the end", append(append([]byte{}, good...), make([]byte, 10240)...), "", 2},
		{"garbage after the end", append(append([]byte{}, good...), "junk"...), "garbage after the end", 0},
		{"truncated", good[:700], "read tar", 0},
		{"empty", nil, "empty", 0},
		{"not a tar", []byte(strings.Repeat("not a tar ", 100)), "read tar", 0},
		{"a parent path", makeTar(t, entry{name: "../escape", body: "x"}), "outside the archive", 0},
		{"an absolute path", makeTar(t, entry{name: "/etc/passwd", body: "x"}), "outside the archive", 0},
		{"a tablespace link", makeTar(t, entry{name: "pg_tblspc/16384", typ: tar.TypeSymlink, link: "/srv/ts"}), "tablespaces are not supported", 0},
		{"a hard link", makeTar(t, entry{name: "a", body: "x"}, entry{name: "b", typ: tar.TypeLink, link: "a"}), "links are not supported", 0},
		{"a device", makeTar(t, entry{name: "dev", typ: tar.TypeChar}), "unsupported type", 0},
		{"a file twice", makeTar(t, entry{name: "a", body: "x"}, entry{name: "./a", body: "y"}), "file exists", 0},
	} {
		dir := filepath.Join(t.TempDir(), "x")
		n, err := extractTar(bytes.NewReader(tc.input), dir)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.what, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.files {
			t.Errorf("%s: %d files, %v", tc.what, n, err)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "base", "1", "1259")); err != nil || len(b) != 9000 {
			t.Errorf("%s: extracted file: %d bytes, %v", tc.what, len(b), err)
		}
	}
}

// FuzzExtractTar: uploads are untrusted; nothing may escape the directory
// or crash the pageserver.
func FuzzExtractTar(f *testing.F) {
	f.Add(makeTar(f, entry{name: "global/pg_control", body: "ctl"}))
	f.Add(makeTar(f, entry{name: "../x", body: "x"}))
	f.Add(makeTar(f, entry{name: "a/b/../../../c", body: "x"}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "x")
		_, _ = extractTar(bytes.NewReader(b), dir)
		ents, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "x" {
				t.Fatalf("%q was written outside the extraction directory", e.Name())
			}
		}
	})
}
