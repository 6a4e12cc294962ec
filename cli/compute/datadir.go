package compute

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"strata.dev/libs/pguser"
)

// extractTar unpacks a basebackup tar into dir (which must not exist),
// owned by u, with PostgreSQL's modes (0700 directories). It accepts only
// directories and regular files inside dir: a basebackup has nothing else.
func extractTar(r io.Reader, dir string, u pguser.User) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return u.ChownTree(dir)
		}
		if err != nil {
			return fmt.Errorf("read basebackup tar: %w", err)
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("basebackup tar: entry %q is outside the data directory", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return fmt.Errorf("basebackup tar: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return fmt.Errorf("basebackup tar: %w", err)
			}
			if err := writeFile(path, tr); err != nil {
				return fmt.Errorf("basebackup tar: %s: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("basebackup tar: entry %q has type %q; want a directory or a file", h.Name, h.Typeflag)
		}
	}
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
