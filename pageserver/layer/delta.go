package layer

// A delta layer holds every version of every key in its key range × LSN
// range [start, end), sorted by key then LSN; values are encoded
// value.Values, images and records alike. The file is immutable once
// renamed to its name.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sort"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// DeltaWriter streams entries, in strictly increasing (key, LSN) order,
// into a new delta layer file.
type DeltaWriter struct{ w *writer }

// NewDeltaWriter starts the delta layer keys × lsns in dir, written by owner.
func NewDeltaWriter(dir string, owner id.TenantTimeline, keys key.Range, lsns LSNRange, opts WriterOptions) (*DeltaWriter, error) {
	w, err := newWriter(dir, owner, DeltaName(keys, lsns), opts)
	if err != nil {
		return nil, err
	}
	return &DeltaWriter{w}, nil
}

// Add appends one entry.
func (d *DeltaWriter) Add(e value.Entry) error {
	return d.AddEncoded(e.Key, e.LSN, e.Value.Encode())
}

// AddEncoded appends one entry whose value is already encoded.
func (d *DeltaWriter) AddEncoded(k key.Key, l lsn.LSN, encoded []byte) error {
	w := d.w
	if err := w.begin(k, l, len(encoded)); err != nil {
		return err
	}
	w.block = k.Append(w.block)
	w.block = binary.BigEndian.AppendUint64(w.block, uint64(l))
	w.block = binary.AppendUvarint(w.block, uint64(len(encoded)))
	w.block = append(w.block, encoded...)
	return nil
}

// Entries is the number of entries added so far.
func (d *DeltaWriter) Entries() uint64 { return d.w.hdr.entryCount }

// Finish makes the layer durable under its final name and returns its path.
// After an error nothing is left on disk.
func (d *DeltaWriter) Finish() (string, error) { return d.w.finish() }

// Abort deletes the unfinished file. It is a no-op after Finish.
func (d *DeltaWriter) Abort() { d.w.discard() }

// Delta is an open delta layer, safe for concurrent use.
type Delta struct{ *file }

// OpenDelta opens a delta layer file, reading its header and index.
func OpenDelta(path string) (*Delta, error) {
	f, size, err := openOS(path)
	if err != nil {
		return nil, err
	}
	lf, err := openFile(f, size, path, KindDelta)
	if err != nil {
		f.Close()
		return nil, err
	}
	lf.closer = f
	return &Delta{lf}, nil
}

func openOS(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open layer file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat layer file: %w", err)
	}
	return f, st.Size(), nil
}

// Get visits the versions of k whose LSNs are in lsns, newest first, until
// fn returns false.
func (d *Delta) Get(k key.Key, lsns LSNRange, fn func(lsn.LSN, value.Value) bool) error {
	if !d.hdr.name.Keys.Contains(k) || lsns.IsEmpty() {
		return nil
	}
	top := lsns.End - 1
	// The last block starting at or before (k, top) holds the newest
	// version; older ones may continue into the blocks before it.
	i := sort.Search(len(d.blocks), func(i int) bool {
		return compareKL(d.blocks[i].firstKey, d.blocks[i].firstLSN, k, top) > 0
	}) - 1
	var target [maxPrefix]byte
	d.appendPrefix(target[:0], k, top)
	type hit struct {
		prefix, val []byte
		off         int64
	}
	var buf [8]hit
	for ; i >= 0; i-- {
		// Collect the versions of k up to top, oldest first.
		hits := buf[:0]
		err := d.walkBlock(i, true, func(prefix, val []byte, off int64) bool {
			if bytes.Compare(prefix, target[:]) > 0 {
				return false
			}
			if bytes.Equal(prefix[:key.Size], target[:key.Size]) {
				hits = append(hits, hit{prefix, val, off})
			}
			return true
		})
		if err != nil {
			return err
		}
		for j := len(hits) - 1; j >= 0; j-- {
			h := hits[j]
			_, l := d.decodePrefix(h.prefix)
			if l < lsns.Start {
				return nil
			}
			if why := d.checkPosition(k, l); why != "" {
				return d.corrupt(h.off, "block %d: %s", i, why)
			}
			v, err := value.Decode(h.val)
			if err != nil {
				return d.corrupt(h.off, "value of %s@%s: %v", k, l, err)
			}
			if !fn(l, v) {
				return nil
			}
		}
		if d.blocks[i].firstKey != k {
			return nil
		}
	}
	return nil
}

// Scan iterates over every entry in (key, LSN) order.
func (d *Delta) Scan() *Iterator { return &Iterator{f: d.file} }
