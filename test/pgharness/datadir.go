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
	r.ReplaceDataDirWith(t, func(dir string) error {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		return extractTar(tarball, dir)
	})
}

// ReplaceDataDirWith swaps the (stopped) cluster's data directory for the
// one write creates at dir (which does not exist when write is called),
// keeping the harness's own configuration files (strata.conf,
// pg_hba.conf) and giving it all to the server user.
func (r *Cluster) ReplaceDataDirWith(t testing.TB, write func(dir string) error) {
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
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := write(dir); err != nil {
		t.Fatalf("pgharness: write the data directory: %v", err)
	}
	for name, b := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return r.User().Chown(path)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// extractTar writes the directories and regular files of a tar stream
// under dir.
func extractTar(tarball io.Reader, dir string) error {
	tr := tar.NewReader(tarball)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			return fmt.Errorf("tar entry %q escapes the data directory", h.Name)
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
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
}

// StartFromBasebackup starts the server on a basebackup put in place with
// ReplaceDataDir(With), and checks that PostgreSQL did no recovery: a
// basebackup's checkpoint is its end. The backup's postgresql.conf is
// minimal; it is made to include the harness's strata.conf (port, socket,
// settings).
func (r *Cluster) StartFromBasebackup(t testing.TB) {
	t.Helper()
	conf, err := os.OpenFile(filepath.Join(r.DataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = conf.WriteString("include 'strata.conf'\n")
		if cerr := conf.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	r.Start(t)
	log, err := os.ReadFile(r.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "redo starts") || !strings.Contains(string(log), "database system was shut down at") {
		t.Errorf("PostgreSQL started from a basebackup did recovery:\n%s", log)
	}
}
