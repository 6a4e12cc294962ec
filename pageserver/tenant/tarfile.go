package tenant

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// extractTar writes the regular files and directories of the tar stream r
// under dir (which must not exist). It refuses what a PostgreSQL base
// backup never needs and an upload must not do: names leaving dir, links
// (user tablespaces are symlinks under pg_tblspc), devices, an empty
// stream, and bytes after the end-of-archive marker other than zeros.
func extractTar(r io.Reader, dir string) (files int, err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(r, 1<<20)
	tr := tar.NewReader(br)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, fmt.Errorf("read tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return files, fmt.Errorf("tar entry %q is outside the archive", h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return files, err
			}
			if err := writeFile(dst, tr); err != nil {
				return files, fmt.Errorf("tar entry %q: %w", h.Name, err)
			}
			files++
		case tar.TypeSymlink, tar.TypeLink:
			if strings.HasPrefix(name, "pg_tblspc/") {
				return files, fmt.Errorf("tar entry %q: user tablespaces are not supported", h.Name)
			}
			return files, fmt.Errorf("tar entry %q: links are not supported", h.Name)
		default:
			return files, fmt.Errorf("tar entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
	if files == 0 {
		return 0, errors.New("the tar archive is empty")
	}
	// What follows the end-of-archive marker may only be padding.
	var buf [4096]byte
	for {
		n, err := br.Read(buf[:])
		for _, b := range buf[:n] {
			if b != 0 {
				return files, errors.New("garbage after the end of the tar archive")
			}
		}
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("read tar: %w", err)
		}
	}
}

func writeFile(dst string, r io.Reader) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
