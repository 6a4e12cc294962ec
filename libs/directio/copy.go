package directio

import (
	"errors"
	"io"
	"os"
)

// Copy writes everything r holds to f, a new empty file open for writing
// at offset 0, around the page cache: whole Align-sized blocks with
// O_DIRECT, through buf (from Buffer, a multiple of Align long), and the
// unaligned tail, if any, through the page cache. A file system that
// refuses O_DIRECT gets an ordinary copy. It returns the bytes written.
//
// On these VMs a byte written through the page cache costs a fresh cache
// page (README: the host reclaims cold ones), which made unpacking a
// basebackup several times slower than the disk.
func Copy(f *os.File, r io.Reader, buf []byte) (int64, error) {
	if len(buf) == 0 || len(buf)%Align != 0 {
		return 0, errors.New("directio.Copy: the buffer must be a non-zero multiple of directio.Align long")
	}
	direct, err := Enable(f)
	if err != nil {
		return 0, err
	}
	if !direct {
		return io.CopyBuffer(f, r, buf)
	}
	var written int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
			return written, rerr
		}
		whole := n &^ (Align - 1)
		if whole > 0 {
			w, err := f.Write(buf[:whole])
			written += int64(w)
			if err != nil {
				return written, err
			}
		}
		if whole < n {
			// The tail: only the last read can be short of a block.
			if err := Disable(f); err != nil {
				return written, err
			}
			w, err := f.Write(buf[whole:n])
			written += int64(w)
			return written, err
		}
		if rerr != nil {
			return written, nil
		}
	}
}
