package layer

// writer is the part of writing a layer shared by both kinds: blocks,
// index, header, and the durable temp-file-then-rename sequence.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// TempSuffix ends the name of a layer file being written. Such a file is
// never read; whoever owns the directory deletes it on startup.
const TempSuffix = ".___temp"

// File is what a writer writes to; *os.File is one. Tests substitute files
// that fail, to see what a full disk does.
type File interface {
	io.Writer
	io.WriterAt
	Sync() error
	Close() error
}

// WriterOptions tune a writer; the zero value is the default.
type WriterOptions struct {
	// BlockSize is the payload size at which a block is closed
	// (DefaultBlockSize when 0).
	BlockSize int
	// CreateFile creates the temporary file (os.Create when nil).
	CreateFile func(path string) (File, error)
}

// CreateFile creates a new file written around the page cache where the
// file system allows it (direct.go), else an ordinary one. It is the
// default of WriterOptions.CreateFile.
func CreateFile(path string) (File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	df, err := newDirectFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if df == nil {
		return f, nil
	}
	return df, nil
}

type writer struct {
	hdr   header
	dir   string
	final string
	tmp   string
	f     File
	// out buffers writes to f: f itself if it buffers (directFile).
	out interface {
		io.Writer
		Flush() error
	}
	blockSize int
	err       error // sticky: the first failure

	offset   int64 // where the current block starts
	block    []byte
	blockRef blockRef
	index    []byte
	hasLast  bool
	lastKey  key.Key
	lastLSN  lsn.LSN
	finished bool
}

func newWriter(dir string, owner id.TenantTimeline, name Name, opts WriterOptions) (*writer, error) {
	if why := name.invalid(); why != "" {
		return nil, fmt.Errorf("new layer %s: %s", name, why)
	}
	w := &writer{
		hdr:       header{name: name, owner: owner},
		dir:       dir,
		final:     filepath.Join(dir, name.String()),
		blockSize: opts.BlockSize,
		offset:    headerSize,
	}
	w.tmp = w.final + TempSuffix
	if w.blockSize <= 0 {
		w.blockSize = DefaultBlockSize
	}
	create := opts.CreateFile
	if create == nil {
		create = CreateFile
	}
	f, err := create(w.tmp)
	if err != nil {
		return nil, fmt.Errorf("create layer file %s: %w", w.tmp, err)
	}
	w.f = f
	if df, ok := f.(*directFile); ok {
		w.out = df
	} else {
		w.out = bufio.NewWriterSize(f, 256<<10)
	}
	// The header is written last, at offset 0, once the index is known.
	if _, err := w.out.Write(make([]byte, headerSize)); err != nil {
		w.fail(err)
		return nil, w.err
	}
	w.block = make([]byte, 0, w.blockSize+w.blockSize/4)
	return w, nil
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = fmt.Errorf("write layer file %s: %w", w.tmp, err)
		w.discard()
	}
}

// discard closes and deletes the temporary file.
func (w *writer) discard() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
		os.Remove(w.tmp)
	}
}

// begin checks that (k, l) may come next and starts a new block if the
// current one is full; the caller then appends the entry to w.block.
func (w *writer) begin(k key.Key, l lsn.LSN, valueLen int) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return fmt.Errorf("layer file %s: add after Finish", w.final)
	}
	n := w.hdr.name
	if !n.Keys.Contains(k) || !n.LSNs.Contains(l) {
		return fmt.Errorf("layer file %s: entry %s@%s outside %s × %s", w.final, k, l, n.Keys, n.LSNs)
	}
	if w.hasLast && compareKL(w.lastKey, w.lastLSN, k, l) >= 0 {
		return fmt.Errorf("layer file %s: entry %s@%s not after %s@%s", w.final, k, l, w.lastKey, w.lastLSN)
	}
	if len(w.block) > 0 && len(w.block)+key.Size+8+binary.MaxVarintLen64+valueLen > w.blockSize {
		w.closeBlock()
		if w.err != nil {
			return w.err
		}
	}
	if len(w.block) == 0 {
		w.blockRef = blockRef{firstKey: k, firstLSN: l, offset: w.offset}
	}
	w.hasLast, w.lastKey, w.lastLSN = true, k, l
	w.hdr.entryCount++
	return nil
}

func (w *writer) closeBlock() {
	if len(w.block) == 0 || w.err != nil {
		return
	}
	w.block = binary.BigEndian.AppendUint32(w.block, checksum(w.block))
	if _, err := w.out.Write(w.block); err != nil {
		w.fail(err)
		return
	}
	w.blockRef.length = uint32(len(w.block))
	w.index = appendIndexEntry(w.index, w.blockRef)
	w.hdr.blockCount++
	w.offset += int64(len(w.block))
	w.block = w.block[:0]
}

// finish writes the index and header and makes the file durable under its
// final name.
func (w *writer) finish() (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.finished {
		return "", fmt.Errorf("layer file %s: Finish called twice", w.final)
	}
	w.finished = true
	w.closeBlock()
	if w.err != nil {
		return "", w.err
	}
	w.hdr.indexOffset = uint64(w.offset)
	w.index = binary.BigEndian.AppendUint32(w.index, checksum(w.index))
	steps := []func() error{
		func() error { _, err := w.out.Write(w.index); return err },
		w.out.Flush,
		func() error { _, err := w.f.WriteAt(w.hdr.encode(), 0); return err },
		w.f.Sync,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			w.fail(err)
			return "", w.err
		}
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		os.Remove(w.tmp)
		return "", fmt.Errorf("close layer file %s: %w", w.tmp, err)
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		os.Remove(w.tmp)
		return "", fmt.Errorf("rename layer file %s: %w", w.tmp, err)
	}
	if err := durable.SyncDir(w.dir); err != nil {
		// The file is complete under its name, but a crash could lose the
		// rename: report it so the caller does not count on the layer.
		return "", fmt.Errorf("layer file %s: %w", w.final, err)
	}
	return w.final, nil
}
