// Package value is what the pageserver stores at a (key, LSN): a full image
// or a record to apply on top of the version before it (PS §1.3). The
// encoding is Neon's (bincode, big-endian), so layer contents stay readable
// by Neon's tools; decoding takes untrusted bytes and never panics.
package value

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RecordKind says how a record changes the value below it.
type RecordKind uint32

// Record kinds, numbered as Neon's NeonWalRecord variants.
const (
	// Postgres is a raw XLogRecord for the WAL-redo process.
	Postgres RecordKind = 0
	// The rest are applied by the pageserver itself (PS §3).
	ClearVisibilityMapFlags RecordKind = 1
	ClogSetCommitted        RecordKind = 2
	ClogSetAborted          RecordKind = 3
	MultixactOffsetCreate   RecordKind = 4
	MultixactMembersCreate  RecordKind = 5
	AuxFile                 RecordKind = 6 // legacy: decoded, applied as a no-op
	TruncateVisibilityMap   RecordKind = 7
)

func (k RecordKind) String() string {
	switch k {
	case Postgres:
		return "Postgres"
	case ClearVisibilityMapFlags:
		return "ClearVisibilityMapFlags"
	case ClogSetCommitted:
		return "ClogSetCommitted"
	case ClogSetAborted:
		return "ClogSetAborted"
	case MultixactOffsetCreate:
		return "MultixactOffsetCreate"
	case MultixactMembersCreate:
		return "MultixactMembersCreate"
	case AuxFile:
		return "AuxFile"
	case TruncateVisibilityMap:
		return "TruncateVisibilityMap"
	}
	return fmt.Sprintf("RecordKind(%d)", uint32(k))
}

// MultiXactMember is one member of a multixact.
type MultiXactMember struct {
	Xid    uint32
	Status uint32
}

// Record is a change to apply to the previous version of a value. Which
// fields matter depends on Kind.
type Record struct {
	Kind RecordKind

	// Postgres: the whole XLogRecord, and whether it builds the page from
	// nothing (so no older version is needed).
	WillInit bool
	Raw      []byte

	// ClearVisibilityMapFlags: the heap blocks whose bits to clear.
	HasNewHeapBlkno, HasOldHeapBlkno bool
	NewHeapBlkno, OldHeapBlkno       uint32
	Flags                            uint8

	// ClogSetCommitted (with Timestamp) and ClogSetAborted.
	Xids      []uint32
	Timestamp int64

	// MultixactOffsetCreate: Mid and Moff; MultixactMembersCreate: Moff
	// and Members.
	Mid, Moff uint32
	Members   []MultiXactMember

	// TruncateVisibilityMap.
	TruncByte, TruncOffs uint64

	// AuxFile (legacy).
	Path       string
	HasContent bool
	Content    []byte
}

// Value is an image or a record.
type Value struct {
	IsImage bool
	Image   []byte // when IsImage
	Record  Record // otherwise
}

// NewImage is an image value.
func NewImage(b []byte) Value { return Value{IsImage: true, Image: b} }

// NewPostgres is a record for the WAL-redo process.
func NewPostgres(raw []byte, willInit bool) Value {
	return Value{Record: Record{Kind: Postgres, WillInit: willInit, Raw: raw}}
}

// NewRecord is a record value.
func NewRecord(r Record) Value { return Value{Record: r} }

// WillInit reports whether v needs no older version: an image, or a record
// that initializes the page.
func (v Value) WillInit() bool {
	if v.IsImage {
		return true
	}
	return v.Record.Kind == Postgres && v.Record.WillInit
}

// Discriminants of the Value enum.
const (
	tagImage  = 0
	tagRecord = 1
)

// Append appends v's encoding to dst.
func (v Value) Append(dst []byte) []byte {
	be := binary.BigEndian
	if v.IsImage {
		dst = be.AppendUint32(dst, tagImage)
		return appendBytes(dst, v.Image)
	}
	r := &v.Record
	dst = be.AppendUint32(dst, tagRecord)
	dst = be.AppendUint32(dst, uint32(r.Kind))
	switch r.Kind {
	case Postgres:
		dst = appendBool(dst, r.WillInit)
		dst = appendBytes(dst, r.Raw)
	case ClearVisibilityMapFlags:
		dst = appendOptU32(dst, r.HasNewHeapBlkno, r.NewHeapBlkno)
		dst = appendOptU32(dst, r.HasOldHeapBlkno, r.OldHeapBlkno)
		dst = append(dst, r.Flags)
	case ClogSetCommitted:
		dst = appendU32s(dst, r.Xids)
		dst = be.AppendUint64(dst, uint64(r.Timestamp))
	case ClogSetAborted:
		dst = appendU32s(dst, r.Xids)
	case MultixactOffsetCreate:
		dst = be.AppendUint32(dst, r.Mid)
		dst = be.AppendUint32(dst, r.Moff)
	case MultixactMembersCreate:
		dst = be.AppendUint32(dst, r.Moff)
		dst = be.AppendUint64(dst, uint64(len(r.Members)))
		for _, m := range r.Members {
			dst = be.AppendUint32(dst, m.Xid)
			dst = be.AppendUint32(dst, m.Status)
		}
	case AuxFile:
		dst = appendBytes(dst, []byte(r.Path))
		dst = appendBool(dst, r.HasContent)
		if r.HasContent {
			dst = appendBytes(dst, r.Content)
		}
	case TruncateVisibilityMap:
		dst = be.AppendUint64(dst, r.TruncByte)
		dst = be.AppendUint64(dst, r.TruncOffs)
	}
	return dst
}

// MaxEncodedLen is at least the length of v's encoding (Append adds at
// most this many bytes), without encoding it.
func (v Value) MaxEncodedLen() int {
	r := &v.Record
	return 64 + len(v.Image) + len(r.Raw) + len(r.Path) + len(r.Content) + 4*len(r.Xids) + 8*len(r.Members)
}

// Encode is Append to a new slice.
func (v Value) Encode() []byte { return v.Append(nil) }

// WillInitEncoded tells from an encoded value whether it needs no older
// version, without decoding it.
func WillInitEncoded(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch binary.BigEndian.Uint32(b) {
	case tagImage:
		return true
	case tagRecord:
		return len(b) >= 9 && binary.BigEndian.Uint32(b[4:]) == uint32(Postgres) && b[8] == 1
	}
	return false
}

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt value")

// Decode reads a value. Image bytes and record payloads alias b.
func Decode(b []byte) (Value, error) {
	d := decoder{b: b}
	v := d.value()
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Value{}, d.err
	}
	return v, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail("%s: need %d bytes, have %d", what, n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) bool(what string) bool {
	switch d.u8(what) {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("%s: not a bool", what)
	return false
}

func (d *decoder) bytes(what string) []byte {
	n := d.u64(what + " length")
	return d.take(n, what)
}

// count reads a sequence length and checks that elemSize bytes of each
// could follow, so a corrupt count cannot make a huge allocation.
func (d *decoder) count(what string, elemSize uint64) int {
	n := d.u64(what + " count")
	if d.err == nil && n > uint64(len(d.b))/elemSize {
		d.fail("%s: %d entries in %d bytes", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) optU32(what string) (bool, uint32) {
	if d.bool(what) {
		return true, d.u32(what)
	}
	return false, 0
}

func (d *decoder) value() Value {
	switch tag := d.u32("value tag"); {
	case d.err != nil:
		return Value{}
	case tag == tagImage:
		return Value{IsImage: true, Image: d.bytes("image")}
	case tag == tagRecord:
		return Value{Record: d.record()}
	default:
		d.fail("value tag %d", tag)
		return Value{}
	}
}

func (d *decoder) record() Record {
	r := Record{Kind: RecordKind(d.u32("record kind"))}
	if d.err != nil {
		return r
	}
	switch r.Kind {
	case Postgres:
		r.WillInit = d.bool("will_init")
		r.Raw = d.bytes("record")
	case ClearVisibilityMapFlags:
		r.HasNewHeapBlkno, r.NewHeapBlkno = d.optU32("new heap block")
		r.HasOldHeapBlkno, r.OldHeapBlkno = d.optU32("old heap block")
		r.Flags = d.u8("flags")
	case ClogSetCommitted:
		r.Xids = d.u32s("xids")
		r.Timestamp = int64(d.u64("timestamp"))
	case ClogSetAborted:
		r.Xids = d.u32s("xids")
	case MultixactOffsetCreate:
		r.Mid = d.u32("mid")
		r.Moff = d.u32("moff")
	case MultixactMembersCreate:
		r.Moff = d.u32("moff")
		n := d.count("members", 8)
		r.Members = make([]MultiXactMember, n)
		for i := range r.Members {
			r.Members[i] = MultiXactMember{Xid: d.u32("member xid"), Status: d.u32("member status")}
		}
	case AuxFile:
		r.Path = string(d.bytes("path"))
		if r.HasContent = d.bool("content present"); r.HasContent {
			r.Content = d.bytes("content")
		}
	case TruncateVisibilityMap:
		r.TruncByte = d.u64("trunc_byte")
		r.TruncOffs = d.u64("trunc_offs")
	default:
		d.fail("record kind %d", uint32(r.Kind))
	}
	return r
}

func (d *decoder) u32s(what string) []uint32 {
	n := d.count(what, 4)
	xs := make([]uint32, n)
	for i := range xs {
		xs[i] = d.u32(what)
	}
	return xs
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendOptU32(dst []byte, ok bool, v uint32) []byte {
	if !ok {
		return append(dst, 0)
	}
	return binary.BigEndian.AppendUint32(append(dst, 1), v)
}

func appendU32s(dst []byte, xs []uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(xs)))
	for _, x := range xs {
		dst = binary.BigEndian.AppendUint32(dst, x)
	}
	return dst
}
