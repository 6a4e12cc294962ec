package layer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"strata.dev/pageserver/key"
)

// seedLayers writes a small delta and a small image layer and returns
// their bytes.
func seedLayers(t testing.TB, dir string) [][]byte {
	es := testEntries(rand.New(rand.NewPCG(5, 5)), 6, 3)
	for i := range es {
		if es[i].Value.IsImage {
			es[i].Value.Image = es[i].Value.Image[:len(es[i].Value.Image)%20]
		}
	}
	delta := writeDelta(t, dir, es, WriterOptions{BlockSize: 150})
	iw, err := NewImageWriter(dir, owner, key.Full, 0x200, WriterOptions{BlockSize: 60})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range es {
		if i == 0 || e.Key != es[i-1].Key {
			iw.Add(e.Key, []byte(fmt.Sprint("img", i)))
		}
	}
	image, err := iw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, p := range []string{delta, image} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzOpen reads arbitrary bytes as a layer: never a panic, and every
// error is ErrCorrupt.
func FuzzOpen(f *testing.F) {
	for _, b := range seedLayers(f, f.TempDir()) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := readEverything(b, "fuzz"); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}

// FuzzRead damages a valid layer (xor of mask at off): reading it gives the
// original data or ErrCorrupt, never different data.
func FuzzRead(f *testing.F) {
	layers := seedLayers(f, f.TempDir())
	want := make([]string, len(layers))
	for i, b := range layers {
		var err error
		if want[i], err = readEverything(b, "fuzz"); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(false, uint32(0), []byte{1})
	f.Add(true, uint32(130), []byte{0, 0, 0, 1})
	f.Add(false, uint32(200), []byte{0x80, 0xFF})
	f.Fuzz(func(t *testing.T, image bool, off uint32, mask []byte) {
		i := 0
		if image {
			i = 1
		}
		b := bytes.Clone(layers[i])
		for j, m := range mask {
			if p := int(off%uint32(len(b))) + j; p < len(b) {
				b[p] ^= m
			}
		}
		got, err := readEverything(b, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got != want[i] {
			t.Fatalf("damaged layer read without error as different data")
		}
	})
}
