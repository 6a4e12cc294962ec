package control

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary files to Decode. It must never panic, and a state
// it accepts must survive Encode/Decode: exactly for generation != 0 (format
// 10), and up to what format 9 cannot hold (members of a generation-0
// configuration, the creation time) otherwise. Encoding the result a second
// time must give the same bytes.
//
// Most random inputs fail the checksum, so the fuzzer also tries each input
// with a freshly computed checksum appended.
func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{neonV1Body, neonV2Body, neonV3Body, neonV4Body} {
		f.Add(b)
	}
	for v, b := range map[uint32][]byte{1: neonV1Body, 2: neonV2Body, 3: neonV3Body, 4: neonV4Body} {
		f.Add(frame(v, b))
	}
	for _, v := range specGoldenVectors() {
		f.Add(frame(v.version, v.body))
	}
	if b, err := Encode(fullState()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		checkDecode(t, binary.LittleEndian.AppendUint32(bytes.Clone(data), checksum(data)))
	})
}

func checkDecode(t *testing.T, data []byte) {
	s, err := Decode(data)
	if err != nil {
		return
	}
	version := binary.LittleEndian.Uint32(data[4:])
	b, err := Encode(s)
	if err != nil {
		// Decode only yields valid UTF-8 and post-epoch times; anything it
		// accepts must be writable.
		t.Fatalf("Encode of a decoded v%d state: %v", version, err)
	}
	again, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(Decode(v%d))): %v", version, err)
	}
	want := s
	if s.Mconf.Generation == 0 {
		want = s.Clone()
		want.Mconf.Members, want.Mconf.NewMembers = nil, nil
		want.CreationTS = time.Unix(0, 0)
	}
	if !again.Equal(want) {
		t.Fatalf("v%d state changed across Encode/Decode:\n got %+v\nwant %+v", version, again, want)
	}
	b2, err := Encode(again)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("second Encode differs: %v", err)
	}
}
