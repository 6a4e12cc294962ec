// Package untar unpacks a tar stream of files and directories (a data
// directory: a basebackup) into a directory, safely.
package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Stats counts what Extract wrote.
type Stats struct {
	Files int
	Dirs  int
	// Bytes is the size of the files' contents.
	Bytes int64
}

// ErrUnsafeName is returned (wrapped) for a tar entry that would land
// outside the directory: absolute, or climbing out with "..".
var ErrUnsafeName = errors.New("tar entry outside the data directory")

// Extract writes the tar stream r into dir, an existing directory, with
// the tar's permission bits. Only files and directories are accepted (a
// basebackup has nothing else); names must stay inside dir, which is
// enforced twice: by checking the name, and by writing through an os.Root.
// Directories get their mode after their content is written, so a
// read-only directory in the tar does not stop the extraction. With sync,
// every file and directory is fsynced before Extract returns.
func Extract(ctx context.Context, r io.Reader, dir string, sync bool) (Stats, error) {
	var st Stats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()

	type dirMode struct {
		name string
		mode fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read tar after %d files: %w", st.Files, err)
		}
		name, err := localName(h.Name)
		if err != nil {
			return st, err
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if name == "." {
				continue // the directory itself stays 0700
			}
			if err := root.MkdirAll(name, 0o700); err != nil {
				return st, fmt.Errorf("extract %s: %w", h.Name, err)
			}
			dirs = append(dirs, dirMode{name, mode})
			st.Dirs++
		case tar.TypeReg:
			if name == "." {
				return st, fmt.Errorf("tar entry %q: a file named like the directory itself", h.Name)
			}
			n, err := writeFile(root, name, tr, mode, sync)
			st.Bytes += n
			if err != nil {
				return st, fmt.Errorf("extract %s: %w", h.Name, err)
			}
			st.Files++
		default:
			return st, fmt.Errorf("tar entry %q has type %q: a basebackup holds only files and directories", h.Name, h.Typeflag)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i].name, dirs[i].mode); err != nil {
			return st, fmt.Errorf("chmod %s: %w", dirs[i].name, err)
		}
	}
	if sync {
		names := []string{"."}
		for _, d := range dirs {
			names = append(names, d.name)
		}
		for _, name := range names {
			if err := syncDir(root, name); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

// localName is a tar entry's name as a path inside the directory, or
// ErrUnsafeName.
func localName(name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if name == "" || !filepath.IsLocal(clean) {
		return "", fmt.Errorf("%w: %q", ErrUnsafeName, name)
	}
	return clean, nil
}

// writeFile writes one file (creating missing parents 0700) and returns
// how many bytes it wrote.
func writeFile(root *os.Root, name string, r io.Reader, mode fs.FileMode, sync bool) (int64, error) {
	if parent := filepath.Dir(name); parent != "." {
		if err := root.MkdirAll(parent, 0o700); err != nil {
			return 0, err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Chmod(mode) // exactly the tar's bits, whatever the umask
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func syncDir(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	return nil
}
