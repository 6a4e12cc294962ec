package value

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// The directory values of PS §1.3: bincode sets and maps, a u64 count then
// the entries. Encoders write entries sorted so equal directories encode
// equally; decoders accept any order.

// DBKey names a database in a tablespace.
type DBKey struct{ Spc, DB uint32 }

// DBDir maps each database to whether its pg_filenode.map is stored.
type DBDir map[DBKey]bool

// RelKey names a relation fork inside a database.
type RelKey struct {
	Rel  uint32
	Fork uint8
}

// RelDir is the set of relation forks of a database.
type RelDir map[RelKey]struct{}

// U32Set is a set of segment numbers (SLRU directory) or xids (two-phase
// directory).
type U32Set map[uint32]struct{}

// Encode encodes the directory.
func (d DBDir) Encode() []byte {
	keys := slices.SortedFunc(maps.Keys(d), func(a, b DBKey) int {
		return cmp.Or(cmp.Compare(a.Spc, b.Spc), cmp.Compare(a.DB, b.DB))
	})
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+9*len(keys)), uint64(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, k.Spc)
		b = binary.BigEndian.AppendUint32(b, k.DB)
		b = appendBool(b, d[k])
	}
	return b
}

// DecodeDBDir decodes a DBDir.
func DecodeDBDir(b []byte) (DBDir, error) {
	d := decoder{b: b}
	n := d.count("databases", 9)
	dir := make(DBDir, n)
	for range n {
		k := DBKey{Spc: d.u32("spcnode"), DB: d.u32("dbnode")}
		dir[k] = d.bool("has_relmap_file")
	}
	return dir, d.finish("database directory")
}

// Encode encodes the directory.
func (d RelDir) Encode() []byte {
	keys := slices.SortedFunc(maps.Keys(d), func(a, b RelKey) int {
		return cmp.Or(cmp.Compare(a.Rel, b.Rel), cmp.Compare(a.Fork, b.Fork))
	})
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+5*len(keys)), uint64(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, k.Rel)
		b = append(b, k.Fork)
	}
	return b
}

// DecodeRelDir decodes a RelDir.
func DecodeRelDir(b []byte) (RelDir, error) {
	d := decoder{b: b}
	n := d.count("relations", 5)
	dir := make(RelDir, n)
	for range n {
		dir[RelKey{Rel: d.u32("relnode"), Fork: d.u8("forknum")}] = struct{}{}
	}
	return dir, d.finish("relation directory")
}

// Encode encodes the set.
func (s U32Set) Encode() []byte {
	keys := slices.Sorted(maps.Keys(s))
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+4*len(keys)), uint64(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, k)
	}
	return b
}

// DecodeU32Set decodes an SLRU or two-phase directory.
func DecodeU32Set(b []byte) (U32Set, error) {
	d := decoder{b: b}
	n := d.count("entries", 4)
	s := make(U32Set, n)
	for range n {
		s[d.u32("entry")] = struct{}{}
	}
	return s, d.finish("directory")
}

// EncodeSize encodes a relation or SLRU segment size in blocks (u32 LE).
func EncodeSize(nblocks uint32) []byte { return binary.LittleEndian.AppendUint32(nil, nblocks) }

// DecodeSize decodes a size.
func DecodeSize(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%w: size of %d bytes, want 4", ErrCorrupt, len(b))
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) finish(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return nil
}
