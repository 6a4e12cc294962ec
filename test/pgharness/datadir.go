package pgharness

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReplaceDataDir swaps the (stopped) cluster's data directory for the
// content of a tar stream, e.g. a basebackup, keeping the harness's own
// configuration files (strata.conf, pg_hba.conf).
func (r *Cluster) ReplaceDataDir(t testing.TB, tarball io.Reader) {
	t.Helper()
	dir := r.DataDir()
	keep := map[string][]byte{}
	for _, name := range []string{"strata.conf", "pg_hba.conf"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		keep[name] = b
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	tr := tar.NewReader(tarball)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Fatalf("tar entry %q escapes the data directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o700)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("unexpected tar entry type %c", h.Typeflag)
		}
		if err != nil {
			t.Fatalf("extract %s: %v", h.Name, err)
		}
	}
	for name, b := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return r.User().Chown(path)
	})
	if err != nil {
		t.Fatal(err)
	}
}
