package layer

// The parts of the file format shared by delta and image layers: header,
// block index, block framing and checksums (the layout is in doc.go).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

const (
	formatVersion  = 1
	headerSize     = 128
	headerCRCAt    = headerSize - 4
	indexEntrySize = key.Size + 8 + 8 + 4
	crcSize        = 4
	// DefaultBlockSize is the payload size at which a writer closes a block.
	DefaultBlockSize = 8 << 10
)

var (
	magicDelta = [8]byte{'S', 'T', 'R', 'D', 'E', 'L', 'T', 'A'}
	magicImage = [8]byte{'S', 'T', 'R', 'I', 'M', 'A', 'G', 'E'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt is wrapped by every error about a damaged layer file.
var ErrCorrupt = errors.New("corrupt layer file")

// CorruptError says where a layer file is damaged.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("layer file %s: corrupt at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// header is the first headerSize bytes of a layer file.
type header struct {
	name        Name
	owner       id.TenantTimeline
	indexOffset uint64
	blockCount  uint32
	entryCount  uint64
}

func (h *header) encode() []byte {
	b := make([]byte, 0, headerSize)
	if h.name.Kind == KindImage {
		b = append(b, magicImage[:]...)
	} else {
		b = append(b, magicDelta[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = append(b, h.owner.Tenant[:]...)
	b = append(b, h.owner.Timeline[:]...)
	b = h.name.Keys.Start.Append(b)
	b = h.name.Keys.End.Append(b)
	b = binary.BigEndian.AppendUint64(b, uint64(h.name.LSNs.Start))
	b = binary.BigEndian.AppendUint64(b, uint64(h.name.LSNs.End))
	b = binary.BigEndian.AppendUint64(b, h.indexOffset)
	b = binary.BigEndian.AppendUint32(b, h.blockCount)
	b = binary.BigEndian.AppendUint64(b, h.entryCount)
	b = b[:headerCRCAt] // zero reserved bytes
	return binary.BigEndian.AppendUint32(b, checksum(b))
}

// decodeHeader checks and reads a header; the string says what is wrong.
func decodeHeader(b []byte) (header, string) {
	var h header
	if len(b) < headerSize {
		return h, fmt.Sprintf("file of %d bytes is shorter than the %d-byte header", len(b), headerSize)
	}
	b = b[:headerSize]
	if got, want := binary.BigEndian.Uint32(b[headerCRCAt:]), checksum(b[:headerCRCAt]); got != want {
		return h, fmt.Sprintf("header checksum %08x, computed %08x", got, want)
	}
	switch [8]byte(b[:8]) {
	case magicDelta:
		h.name.Kind = KindDelta
	case magicImage:
		h.name.Kind = KindImage
	default:
		return h, fmt.Sprintf("bad magic %q", b[:8])
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != formatVersion {
		return h, fmt.Sprintf("format version %d, want %d", v, formatVersion)
	}
	copy(h.owner.Tenant[:], b[12:28])
	copy(h.owner.Timeline[:], b[28:44])
	h.name.Keys.Start, _ = key.Decode(b[44:62])
	h.name.Keys.End, _ = key.Decode(b[62:80])
	h.name.LSNs.Start = lsn.LSN(binary.BigEndian.Uint64(b[80:]))
	h.name.LSNs.End = lsn.LSN(binary.BigEndian.Uint64(b[88:]))
	h.indexOffset = binary.BigEndian.Uint64(b[96:])
	h.blockCount = binary.BigEndian.Uint32(b[104:])
	h.entryCount = binary.BigEndian.Uint64(b[108:])
	if why := h.name.invalid(); why != "" {
		return h, "header: " + why
	}
	return h, ""
}

// blockRef is one index entry: where a block is and what it starts with.
type blockRef struct {
	firstKey key.Key
	firstLSN lsn.LSN
	offset   int64
	length   uint32 // payload + CRC
}

func appendIndexEntry(b []byte, r blockRef) []byte {
	b = r.firstKey.Append(b)
	b = binary.BigEndian.AppendUint64(b, uint64(r.firstLSN))
	b = binary.BigEndian.AppendUint64(b, uint64(r.offset))
	return binary.BigEndian.AppendUint32(b, r.length)
}

// compareKL orders (key, lsn) pairs.
func compareKL(k1 key.Key, l1 lsn.LSN, k2 key.Key, l2 lsn.LSN) int {
	if c := k1.Compare(k2); c != 0 {
		return c
	}
	switch {
	case l1 < l2:
		return -1
	case l1 > l2:
		return 1
	}
	return 0
}

// file is an open layer file of either kind: its header and block index.
// It is immutable after open and safe for concurrent use.
type file struct {
	path   string
	r      io.ReaderAt
	closer io.Closer
	size   int64
	hdr    header
	blocks []blockRef
	// cache keeps blocks walkBlock read, under cacheID (nil: none).
	cache   *BlockCache
	cacheID uint64
}

// UseCache makes reads of the file's blocks go through c.
func (f *file) UseCache(c *BlockCache) {
	f.cache, f.cacheID = c, c.fileID()
}

// loadBlock returns block i, its checksum verified: with useCache from
// the cache, or read from the file (and then cached); else from the file.
func (f *file) loadBlock(i int, useCache bool) ([]byte, error) {
	useCache = useCache && f.cache != nil
	id := blockID{f.cacheID, i}
	if useCache {
		if buf, ok := f.cache.get(id); ok {
			return buf, nil
		}
	}
	ref := f.blocks[i]
	buf := make([]byte, ref.length)
	if _, err := f.r.ReadAt(buf, ref.offset); err != nil {
		return nil, fmt.Errorf("layer file %s: read block %d at offset %d: %w", f.path, i, ref.offset, err)
	}
	payload := buf[:len(buf)-crcSize]
	if got, want := binary.BigEndian.Uint32(buf[len(payload):]), checksum(payload); got != want {
		return nil, f.corrupt(ref.offset, "block %d checksum %08x, computed %08x", i, got, want)
	}
	if useCache {
		f.cache.put(id, buf)
	}
	return buf, nil
}

func (f *file) corrupt(off int64, format string, args ...any) error {
	return &CorruptError{Path: f.path, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// openFile reads and checks the header and index of a layer of kind want.
func openFile(r io.ReaderAt, size int64, path string, want Kind) (*file, error) {
	f := &file{path: path, r: r, size: size}
	hb := make([]byte, headerSize)
	if size < headerSize {
		return nil, f.corrupt(0, "file of %d bytes is shorter than the %d-byte header", size, headerSize)
	}
	if _, err := r.ReadAt(hb, 0); err != nil {
		return nil, fmt.Errorf("layer file %s: read header: %w", path, err)
	}
	h, why := decodeHeader(hb)
	if why != "" {
		return nil, f.corrupt(0, "%s", why)
	}
	if h.name.Kind != want {
		return nil, f.corrupt(0, "%s layer, want %s", h.name.Kind, want)
	}
	f.hdr = h
	indexLen := uint64(h.blockCount)*indexEntrySize + crcSize
	if h.indexOffset < headerSize || h.indexOffset > uint64(size) || uint64(size)-h.indexOffset != indexLen {
		return nil, f.corrupt(96, "index of %d blocks at offset %d does not end the %d-byte file", h.blockCount, h.indexOffset, size)
	}
	if h.entryCount < uint64(h.blockCount) {
		return nil, f.corrupt(108, "%d entries in %d blocks", h.entryCount, h.blockCount)
	}
	ib := make([]byte, indexLen)
	if _, err := r.ReadAt(ib, int64(h.indexOffset)); err != nil {
		return nil, fmt.Errorf("layer file %s: read index: %w", path, err)
	}
	body := ib[:len(ib)-crcSize]
	if got, want := binary.BigEndian.Uint32(ib[len(body):]), checksum(body); got != want {
		return nil, f.corrupt(int64(h.indexOffset), "index checksum %08x, computed %08x", got, want)
	}
	f.blocks = make([]blockRef, h.blockCount)
	next := int64(headerSize)
	for i := range f.blocks {
		e := body[i*indexEntrySize:]
		at := int64(h.indexOffset) + int64(i*indexEntrySize)
		k, _ := key.Decode(e[:key.Size])
		ref := blockRef{
			firstKey: k,
			firstLSN: lsn.LSN(binary.BigEndian.Uint64(e[18:])),
			offset:   int64(binary.BigEndian.Uint64(e[26:])),
			length:   binary.BigEndian.Uint32(e[34:]),
		}
		// Blocks are back to back from the header to the index, so their
		// lengths are bounded by the file size.
		if ref.offset != next || ref.length <= crcSize || uint64(ref.length) > h.indexOffset-uint64(next) {
			return nil, f.corrupt(at, "index entry %d: block at %d length %d, want a block at %d before the index at %d",
				i, ref.offset, ref.length, next, h.indexOffset)
		}
		next += int64(ref.length)
		if why := f.checkPosition(ref.firstKey, ref.firstLSN); why != "" {
			return nil, f.corrupt(at, "index entry %d: %s", i, why)
		}
		if i > 0 && compareKL(f.blocks[i-1].firstKey, f.blocks[i-1].firstLSN, ref.firstKey, ref.firstLSN) >= 0 {
			return nil, f.corrupt(at, "index entry %d: not after the previous block", i)
		}
		f.blocks[i] = ref
	}
	if next != int64(h.indexOffset) {
		return nil, f.corrupt(96, "blocks end at %d, index starts at %d", next, h.indexOffset)
	}
	return f, nil
}

// checkPosition says what is wrong with an entry at (k, l), or "".
func (f *file) checkPosition(k key.Key, l lsn.LSN) string {
	n := f.hdr.name
	if !n.Keys.Contains(k) {
		return fmt.Sprintf("key %s outside the layer's range %s", k, n.Keys)
	}
	if !n.LSNs.Contains(l) {
		return fmt.Sprintf("LSN %s outside the layer's range %s", l, n.LSNs)
	}
	return ""
}

// rawEntry is one entry of a block; val aliases the block.
type rawEntry struct {
	key    key.Key
	lsn    lsn.LSN
	val    []byte
	offset int64 // in the file, for error messages
}

// The sort prefix of an entry is its key and, in a delta layer, its LSN,
// both big-endian: comparing prefixes as bytes orders entries by (key,
// LSN), so walks compare bytes instead of decoding every entry.
const maxPrefix = key.Size + 8

func (f *file) prefixLen() int {
	if f.hdr.name.Kind == KindImage {
		return key.Size
	}
	return key.Size + 8
}

// appendPrefix appends the sort prefix of (k, l).
func (f *file) appendPrefix(b []byte, k key.Key, l lsn.LSN) []byte {
	b = k.Append(b)
	if f.hdr.name.Kind == KindDelta {
		b = binary.BigEndian.AppendUint64(b, uint64(l))
	}
	return b
}

// walkBlock reads block i (loadBlock: checksum checked; through the
// cache for a lookup, not for a scan), and calls fn with each
// entry's sort prefix, value and file offset in order until fn returns
// false. It checks as it goes that entries are strictly increasing from
// the index's first entry; a walk that reaches the end also checks that
// the block ends before the next one starts. Entries fn uses must still be
// checked against the layer's ranges (checkPosition).
func (f *file) walkBlock(i int, lookup bool, fn func(prefix, val []byte, off int64) bool) error {
	ref := f.blocks[i]
	buf, err := f.loadBlock(i, lookup)
	if err != nil {
		return err
	}
	payload := buf[:len(buf)-crcSize]
	plen := f.prefixLen()
	var first [maxPrefix]byte
	prev := f.appendPrefix(first[:0], ref.firstKey, ref.firstLSN)
	pos := 0
	for ; pos < len(payload); pos++ {
		at := ref.offset + int64(pos)
		rest := payload[pos:]
		if len(rest) < plen {
			return f.corrupt(at, "block %d: truncated entry", i)
		}
		prefix := rest[:plen:plen]
		n, w := binary.Uvarint(rest[plen:])
		if w <= 0 || n > uint64(len(rest)-plen-w) {
			return f.corrupt(at, "block %d: bad value length", i)
		}
		if c := bytes.Compare(prev, prefix); pos == 0 && c != 0 || pos > 0 && c >= 0 {
			return f.corrupt(at, "block %d: entry out of order or not the index's first", i)
		}
		prev = prefix
		start := plen + w
		pos += start + int(n) - 1
		if !fn(prefix, rest[start:start+int(n):start+int(n)], at) {
			return nil
		}
	}
	if pos == 0 {
		return f.corrupt(ref.offset, "block %d is empty", i)
	}
	if i+1 < len(f.blocks) {
		nb := f.blocks[i+1]
		var next [maxPrefix]byte
		if bytes.Compare(prev, f.appendPrefix(next[:0], nb.firstKey, nb.firstLSN)) >= 0 {
			return f.corrupt(nb.offset, "block %d does not end before block %d starts", i, i+1)
		}
	}
	return nil
}

// decodePrefix reads the key and LSN of an entry's sort prefix.
func (f *file) decodePrefix(prefix []byte) (key.Key, lsn.LSN) {
	k, _ := key.Decode(prefix[:key.Size])
	if f.hdr.name.Kind == KindImage {
		return k, f.hdr.name.LSNs.Start
	}
	return k, lsn.LSN(binary.BigEndian.Uint64(prefix[key.Size:]))
}

// readBlock reads and checks all of block i.
func (f *file) readBlock(i int) ([]rawEntry, error) {
	var entries []rawEntry
	var bad error
	err := f.walkBlock(i, false, func(prefix, val []byte, off int64) bool {
		k, l := f.decodePrefix(prefix)
		if why := f.checkPosition(k, l); why != "" {
			bad = f.corrupt(off, "block %d: %s", i, why)
			return false
		}
		entries = append(entries, rawEntry{key: k, lsn: l, val: val, offset: off})
		return true
	})
	if err == nil {
		err = bad
	}
	return entries, err
}

// Path is the file the layer was opened from.
func (f *file) Path() string { return f.path }

// Name is the layer's kind and ranges, as its header records them.
func (f *file) Name() Name { return f.hdr.name }

// Owner is the tenant and timeline that wrote the layer.
func (f *file) Owner() id.TenantTimeline { return f.hdr.owner }

// Size is the file's size in bytes.
func (f *file) Size() int64 { return f.size }

// Entries is the number of entries in the layer.
func (f *file) Entries() uint64 { return f.hdr.entryCount }

// Close releases the file. Reads after Close fail.
func (f *file) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}
