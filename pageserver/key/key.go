// Package key is the pageserver's key space (PS §1.1–§1.2): everything
// PostgreSQL needs, from relation blocks to the checkpoint, named by an
// 18-byte key of six fields whose byte order is the sort order.
package key

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Size is the length of a key's binary form.
const Size = 18

// Key is one entry of the key space; the field meanings depend on Field1
// (PS §1.2). Keys compare like their binary forms.
type Key struct {
	Field1 uint8
	Field2 uint32
	Field3 uint32
	Field4 uint32
	Field5 uint8
	Field6 uint32
}

// Min and Max bound the key space. They are values: copying them is cheap,
// and nothing in this package changes them.
var (
	Min = Key{}
	Max = Key{0xFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFF, 0xFFFFFFFF}
)

// Append appends the 18-byte big-endian form of k.
func (k Key) Append(dst []byte) []byte {
	dst = append(dst, k.Field1)
	dst = binary.BigEndian.AppendUint32(dst, k.Field2)
	dst = binary.BigEndian.AppendUint32(dst, k.Field3)
	dst = binary.BigEndian.AppendUint32(dst, k.Field4)
	dst = append(dst, k.Field5)
	return binary.BigEndian.AppendUint32(dst, k.Field6)
}

// Bytes is the 18-byte form of k.
func (k Key) Bytes() [Size]byte {
	var b [Size]byte
	k.Append(b[:0])
	return b
}

// Decode reads a key from its 18-byte form.
func Decode(b []byte) (Key, error) {
	if len(b) != Size {
		return Key{}, fmt.Errorf("key: %d bytes, want %d", len(b), Size)
	}
	return Key{
		Field1: b[0],
		Field2: binary.BigEndian.Uint32(b[1:]),
		Field3: binary.BigEndian.Uint32(b[5:]),
		Field4: binary.BigEndian.Uint32(b[9:]),
		Field5: b[13],
		Field6: binary.BigEndian.Uint32(b[14:]),
	}, nil
}

// String is the 36-character uppercase hex form used in layer file names.
func (k Key) String() string {
	b := k.Bytes()
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// Parse reads the 36-character hex form.
func Parse(s string) (Key, error) {
	if len(s) != 2*Size {
		return Key{}, fmt.Errorf("key %q: want %d hex digits", s, 2*Size)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("key %q: %w", s, err)
	}
	return Decode(b)
}

// Compare orders keys field by field: -1, 0 or +1.
func (k Key) Compare(o Key) int {
	switch {
	case k.Field1 != o.Field1:
		return cmp(k.Field1 < o.Field1)
	case k.Field2 != o.Field2:
		return cmp(k.Field2 < o.Field2)
	case k.Field3 != o.Field3:
		return cmp(k.Field3 < o.Field3)
	case k.Field4 != o.Field4:
		return cmp(k.Field4 < o.Field4)
	case k.Field5 != o.Field5:
		return cmp(k.Field5 < o.Field5)
	case k.Field6 != o.Field6:
		return cmp(k.Field6 < o.Field6)
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}

// Less reports whether k sorts before o.
func (k Key) Less(o Key) bool { return k.Compare(o) < 0 }

// Next is the key right after k (Field6 incremented, carrying into the
// fields before it). Next of Max wraps to Min.
func (k Key) Next() Key {
	k.Field6++
	if k.Field6 != 0 {
		return k
	}
	k.Field5++
	if k.Field5 != 0 {
		return k
	}
	k.Field4++
	if k.Field4 != 0 {
		return k
	}
	k.Field3++
	if k.Field3 != 0 {
		return k
	}
	k.Field2++
	if k.Field2 != 0 {
		return k
	}
	k.Field1++
	return k
}

// Representable reports whether k fits the compact 128-bit form Neon uses
// (PS §1.1); ingest refuses other keys, which rules out tablespace OIDs
// above 65535.
func (k Key) Representable() bool {
	return k.Field2 <= 0xFFFF || k.Field2 == 0xFFFFFFFF || k.Field2 == 0x22222222
}

// Range is the half-open key range [Start, End).
type Range struct{ Start, End Key }

// Full is the whole key space, the range of an L0 delta layer.
var Full = Range{Min, Max}

// Contains reports whether k is in r.
func (r Range) Contains(k Key) bool { return !k.Less(r.Start) && k.Less(r.End) }

// Overlaps reports whether r and o share a key.
func (r Range) Overlaps(o Range) bool { return r.Start.Less(o.End) && o.Start.Less(r.End) }

// IsEmpty reports whether r holds no key.
func (r Range) IsEmpty() bool { return !r.Start.Less(r.End) }

func (r Range) String() string { return r.Start.String() + "-" + r.End.String() }
