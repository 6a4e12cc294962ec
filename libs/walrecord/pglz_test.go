package walrecord

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPGLZ(t *testing.T) {
	tests := []struct {
		name string
		src  []byte
		want string // decompressed, or "" with wantErr
		err  string
	}{
		{"literals", []byte{0x00, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0x00, 'i'}, "abcdefghi", ""},
		{"run", []byte{0x02, 'a', 0x0f, 0x01, 0x00}, strings.Repeat("a", 19), ""},
		{"run with extension byte", []byte{0x02, 'x', 0x0f, 0x01, 0xff}, strings.Repeat("x", 1+273), ""},
		{"short tag", []byte{0x04, 'a', 'b', 0x00, 0x02}, "ababa", ""},
		// As in C, a tag may run past the end of the output: it is cut.
		{"last tag cut to the output", []byte{0x02, 'a', 0x0f, 0x01, 0x05}, "aaaaa", ""},
		{"offset zero", []byte{0x02, 'a', 0x00, 0x00}, "", "offset 0 back"},
		{"offset before start", []byte{0x02, 'a', 0x00, 0x02}, "", "offset 2 back, at output byte 1"},
		{"tag cut", []byte{0x02, 'a', 0x00}, "", "runs past the end"},
		{"extension byte cut", []byte{0x02, 'a', 0x0f, 0x01}, "", "runs past the end"},
		{"input left over", []byte{0x00, 'a', 'b'}, "", "decompressed 2 of 3 input bytes to 1 bytes, want 1"},
		{"output short", []byte{0x00, 'a'}, "", "to 1 bytes, want 2"},
		{"empty to empty", nil, "", ""},
		{"control byte only", []byte{0x00}, "", "decompressed 1 of 1 input bytes to 0 bytes, want 1"},
	}
	wantLen := map[string]int{"output short": 2, "control byte only": 1, "input left over": 1}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.want)
			if tc.err != "" {
				n = 100
			}
			if l, ok := wantLen[tc.name]; ok {
				n = l
			}
			dst := make([]byte, n)
			err := pglzDecompress(tc.src, dst)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(dst) != tc.want {
				t.Fatalf("%q, %v; want %q", dst, err, tc.want)
			}
		})
	}
}

// TestPGLZRoundTrip decompresses what the test compressor makes of varied
// inputs, including runs longer than one tag and offsets up to 4095.
func TestPGLZRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	inputs := [][]byte{
		[]byte("a"),
		bytes.Repeat([]byte("z"), 10000),
		bytes.Repeat([]byte("abc"), 3000),
		testPage(7, 300, 4000),
	}
	far := make([]byte, 4095+20)
	for i := range far[:4095] {
		far[i] = byte(r.Uint32())
	}
	copy(far[4095:], far[:20]) // a match exactly 4095 bytes back
	inputs = append(inputs, far)
	for range 20 {
		b := make([]byte, 1+r.IntN(9000))
		alpha := 1 + r.IntN(8)
		for i := range b {
			b[i] = byte(r.IntN(alpha))
		}
		// Splice in far repeats.
		if len(b) > 5000 {
			copy(b[4500:], b[400:600])
		}
		inputs = append(inputs, b)
	}
	for i, in := range inputs {
		c := pglzCompress(in)
		out := make([]byte, len(in))
		if err := pglzDecompress(c, out); err != nil || !bytes.Equal(out, in) {
			t.Fatalf("input %d (%d bytes, %d compressed): %v, equal %v", i, len(in), len(c), err, bytes.Equal(out, in))
		}
	}
}
