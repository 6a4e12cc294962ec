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

	"strata.dev/libs/directio"
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
// read-only directory in the tar does not stop the extraction. Files of a
// block or more bypass the page cache (see writeFile). With sync, every
// file and directory is fsynced before Extract returns.
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
	var buf []byte // for directio.Copy, made for the first file that uses it
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
			if buf == nil && h.Size >= directio.Align {
				buf = directio.Buffer(copyBuffer)
			}
			n, err := writeFile(root, name, tr, h.Size, mode, sync, buf)
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

// copyBuffer is the size of the aligned buffer files are written through.
const copyBuffer = 1 << 20

// writeFile writes one file of size bytes (creating missing parents 0700)
// and returns how many bytes it wrote. A file of a block or more is
// written around the page cache (directio.Copy): PostgreSQL reads few of
// a new data directory's pages at startup, and on these VMs every page
// cache page written costs far more than the disk write.
func writeFile(root *os.Root, name string, r io.Reader, size int64, mode fs.FileMode, sync bool, buf []byte) (int64, error) {
	if parent := filepath.Dir(name); parent != "." {
		if err := root.MkdirAll(parent, 0o700); err != nil {
			return 0, err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	var n int64
	if size >= directio.Align {
		n, err = directio.Copy(f, r, buf)
	} else {
		n, err = io.Copy(f, r)
	}
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
