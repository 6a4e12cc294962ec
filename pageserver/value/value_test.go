package value

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleValues() []Value {
	return []Value{
		NewImage(bytes.Repeat([]byte{7}, 8192)),
		NewImage(nil),
		NewPostgres([]byte("an XLogRecord"), true),
		NewPostgres([]byte("another"), false),
		NewRecord(Record{Kind: ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 5, Flags: 3}),
		NewRecord(Record{Kind: ClearVisibilityMapFlags, HasOldHeapBlkno: true, OldHeapBlkno: 1 << 31, Flags: 2}),
		NewRecord(Record{Kind: ClogSetCommitted, Xids: []uint32{3, 4, 5}, Timestamp: -12345}),
		NewRecord(Record{Kind: ClogSetAborted, Xids: []uint32{9}}),
		NewRecord(Record{Kind: MultixactOffsetCreate, Mid: 77, Moff: 1000}),
		NewRecord(Record{Kind: MultixactMembersCreate, Moff: 4, Members: []MultiXactMember{{Xid: 700, Status: 5}, {Xid: 701, Status: 0}}}),
		NewRecord(Record{Kind: AuxFile, Path: "pg_logical/x", HasContent: true, Content: []byte("c")}),
		NewRecord(Record{Kind: AuxFile, Path: "gone"}),
		NewRecord(Record{Kind: TruncateVisibilityMap, TruncByte: 17, TruncOffs: 4}),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, v := range sampleValues() {
		b := v.Encode()
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%v): %v", v, err)
		}
		// nil and empty slices encode alike.
		if !reflect.DeepEqual(norm(got), norm(v)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
		}
		if len(b) > v.MaxEncodedLen() {
			t.Fatalf("%v: encoding of %d bytes, MaxEncodedLen %d", v, len(b), v.MaxEncodedLen())
		}
		if WillInitEncoded(b) != v.WillInit() {
			t.Fatalf("WillInitEncoded(%v) = %v, WillInit %v", v, WillInitEncoded(b), v.WillInit())
		}
	}
}

func norm(v Value) Value {
	if len(v.Image) == 0 {
		v.Image = nil
	}
	if len(v.Record.Xids) == 0 {
		v.Record.Xids = nil
	}
	if len(v.Record.Members) == 0 {
		v.Record.Members = nil
	}
	return v
}

// Byte layouts from PS §1.3.
func TestNeonLayout(t *testing.T) {
	cases := []struct {
		v    Value
		want []byte
	}{
		{NewImage([]byte{0xAB}), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xAB}},
		{NewPostgres([]byte{0xCD}, true), []byte{0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xCD}},
		{NewRecord(Record{Kind: ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 2, Flags: 3}),
			[]byte{0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 3}},
		{NewRecord(Record{Kind: MultixactOffsetCreate, Mid: 1, Moff: 2}),
			[]byte{0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2}},
	}
	for _, c := range cases {
		if got := c.v.Encode(); !bytes.Equal(got, c.want) {
			t.Errorf("%+v encodes as % x, want % x", c.v, got, c.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{0, 0, 0},
		{0, 0, 0, 2},                         // unknown value tag
		{0, 0, 0, 1, 0, 0, 0, 99},            // unknown record kind
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, // image longer than the bytes
		{0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0},                      // bool 2
		{0, 0, 0, 1, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, // huge xid count
		append(NewImage([]byte{1}).Encode(), 0),                                  // trailing byte
	} {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Decode(% x) = %v, want ErrCorrupt", b, err)
		}
	}
}

func TestDirectories(t *testing.T) {
	db := DBDir{{1663, 5}: true, {1664, 0}: false, {1663, 1}: true}
	got, err := DecodeDBDir(db.Encode())
	if err != nil || !reflect.DeepEqual(got, db) {
		t.Fatalf("DBDir round trip: %v, %v", got, err)
	}
	// Sorted, fixed layout: count, then (spc, db, has_relmap) each.
	want := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x06, 0x7F, 0, 0, 0, 5, 1}
	if b := (DBDir{{1663, 5}: true}).Encode(); !bytes.Equal(b, want) {
		t.Fatalf("DBDir encoding % x, want % x", b, want)
	}
	rd := RelDir{{1259, 0}: {}, {1259, 1}: {}, {16384, 2}: {}}
	if got, err := DecodeRelDir(rd.Encode()); err != nil || !reflect.DeepEqual(got, rd) {
		t.Fatalf("RelDir round trip: %v, %v", got, err)
	}
	s := U32Set{0: {}, 31: {}, 1 << 30: {}}
	if got, err := DecodeU32Set(s.Encode()); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("U32Set round trip: %v, %v", got, err)
	}
	if n, err := DecodeSize(EncodeSize(131073)); err != nil || n != 131073 {
		t.Fatalf("size round trip: %d, %v", n, err)
	}
	for _, bad := range [][]byte{{0, 0, 0, 0, 0, 0, 0, 5, 1}, {0, 0, 0, 0, 0, 0, 0, 0, 9}} {
		if _, err := DecodeRelDir(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeRelDir(% x) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range sampleValues() {
		f.Add(v.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		if got := v.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding % x gave % x", b, got)
		}
	})
}

func FuzzDirectories(f *testing.F) {
	f.Add(DBDir{{1663, 5}: true}.Encode())
	f.Add(RelDir{{1259, 0}: {}}.Encode())
	f.Add(U32Set{3: {}}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeDBDir(b)
		_, _ = DecodeRelDir(b)
		_, _ = DecodeU32Set(b)
	})
}
