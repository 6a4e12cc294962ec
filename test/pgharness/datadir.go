package pgharness

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"strata.dev/libs/untar"
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
		_, err := untar.Extract(context.Background(), tarball, dir, false)
		return err
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
	// Moved aside, not deleted: creating as many files right after deleting
	// them makes ext4 scan its recently freed inodes for every new one
	// (ext4_create → recently_deleted), which made the new directory take
	// up to a second to write. The cluster's base directory, removed when
	// the test ends, holds the old one until then.
	aside, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".replaced-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(aside, "data")); err != nil {
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
	if err := r.User().ChownTree(dir); err != nil {
		t.Fatal(err)
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
