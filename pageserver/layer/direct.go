package layer

import (
	"fmt"
	"os"

	"strata.dev/libs/directio"
)

// directFile writes a new layer file from start to end around the page
// cache, in aligned chunks (package directio says why: writing layer files
// through the cache was half of the pageserver's CPU during ingest). Reads,
// which go through the cache (and the block cache above it), see the data:
// a direct write invalidates cached pages it covers.
//
// The unaligned end of the file and patches of bytes already written (the
// header, at offset 0) go through a second, ordinary descriptor. Sync ends
// the writing: it writes what is buffered and makes the file durable.
type directFile struct {
	direct, cached *os.File
	buf            []byte // directChunk bytes, aligned
	n              int    // bytes in buf
	off            int64  // file offset of buf[0]; everything before it is written
	synced         bool
}

const directChunk = 1 << 20

// newDirectFile writes the new, empty file cached through a second
// descriptor made direct, or returns nil if the file system refuses that.
func newDirectFile(cached *os.File) (*directFile, error) {
	d, err := os.OpenFile(cached.Name(), os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	direct, err := directio.Enable(d)
	if err != nil || !direct {
		d.Close()
		return nil, err
	}
	return &directFile{direct: d, cached: cached, buf: directio.Buffer(directChunk)}, nil
}

func (f *directFile) Write(p []byte) (int, error) {
	if f.synced {
		return 0, fmt.Errorf("write to %s after Sync", f.direct.Name())
	}
	written := 0
	for len(p) > 0 {
		k := copy(f.buf[f.n:], p)
		f.n += k
		p = p[k:]
		if f.n == len(f.buf) {
			if err := f.writeOut(f.n); err != nil {
				return written, err
			}
		}
		written += k
	}
	return written, nil
}

// Flush does nothing: the writer's buffer is f's (see writer.out).
func (f *directFile) Flush() error { return nil }

// writeOut writes buf[:n], a multiple of directio.Align, at off.
func (f *directFile) writeOut(n int) error {
	for done := 0; done < n; {
		k, err := f.direct.WriteAt(f.buf[done:n], f.off+int64(done))
		if err != nil {
			return err
		}
		done += k
	}
	f.off += int64(n)
	f.n = copy(f.buf, f.buf[n:f.n])
	return nil
}

// WriteAt patches bytes written before: in the buffer if they are still
// there, through the page cache if they are on disk.
func (f *directFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off+int64(f.n) {
		return 0, fmt.Errorf("write at %d of %d bytes to %s: past the %d bytes written", off, len(p), f.direct.Name(), f.off+int64(f.n))
	}
	done := 0
	if off < f.off {
		k := min(len(p), int(f.off-off))
		n, err := f.cached.WriteAt(p[:k], off)
		if err != nil {
			return n, err
		}
		done = k
	}
	if done < len(p) {
		copy(f.buf[off+int64(done)-f.off:], p[done:])
	}
	return len(p), nil
}

// Sync writes what is buffered, the aligned part around the cache and the
// rest through it, and makes the file durable.
func (f *directFile) Sync() error {
	if !f.synced {
		f.synced = true
		if err := f.writeOut(f.n &^ (directio.Align - 1)); err != nil {
			return err
		}
		if f.n > 0 {
			if _, err := f.cached.WriteAt(f.buf[:f.n], f.off); err != nil {
				return err
			}
			f.off += int64(f.n)
			f.n = 0
		}
	}
	return f.cached.Sync()
}

func (f *directFile) Close() error {
	err := f.direct.Close()
	if cerr := f.cached.Close(); err == nil {
		err = cerr
	}
	return err
}
