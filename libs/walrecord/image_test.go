package walrecord

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestPage(t *testing.T) {
	holed := testPage(3, 120, 6000)
	full := testPage(4, 8192, 8192)
	for _, c := range []Compression{CompressionNone, CompressionPGLZ, CompressionLZ4, CompressionZstd} {
		for name, page := range map[string][]byte{"hole": holed, "no hole": full} {
			t.Run(c.String()+"/"+name, func(t *testing.T) {
				ti := imageOf(t, page, c, true)
				im := BlockImage{Bytes: ti.bytes, HoleOffset: ti.holeOff, HoleLength: ti.holeLen, Info: ti.info}
				if c == CompressionNone {
					im.HoleLength = uint16(BlockSize - len(ti.bytes))
				}
				if im.Compression() != c {
					t.Fatalf("Compression() = %v", im.Compression())
				}
				got, err := im.Page(nil)
				if err != nil || !bytes.Equal(got, page) {
					t.Fatalf("Page: %v, equal %v", err, bytes.Equal(got, page))
				}
				// Into a dirty buffer with room: reused, hole zeroed.
				buf := bytes.Repeat([]byte{0xAA}, BlockSize+100)
				got, err = im.Page(buf[:17])
				if err != nil || !bytes.Equal(got, page) || &got[0] != &buf[0] {
					t.Fatalf("Page into buffer: %v, equal %v, reused %v", err, bytes.Equal(got, page), &got[0] == &buf[0])
				}
				allocs := testing.AllocsPerRun(20, func() { _, _ = im.Page(buf) })
				if allocs != 0 && !raceEnabled {
					t.Fatalf("%v allocations per Page into a big enough buffer", allocs)
				}
			})
		}
	}
}

func TestPageErrors(t *testing.T) {
	page := testPage(5, 100, 5000)
	pglz := imageOf(t, page, CompressionPGLZ, true)
	lz4i := imageOf(t, page, CompressionLZ4, true)
	zstdi := imageOf(t, page, CompressionZstd, true)
	fullZstd := imageOf(t, testPage(6, 8192, 8192), CompressionZstd, true)
	tests := []struct {
		name string
		im   BlockImage
		want string
	}{
		{"hole past the page", BlockImage{Bytes: make([]byte, 100), HoleOffset: 8100, HoleLength: 8092, Info: BKPIMAGE_HAS_HOLE},
			"hole offset 8100 + length 8092 exceed the 8192-byte page"},
		{"wrapped hole length", BlockImage{Bytes: make([]byte, 9000), HoleOffset: 10, HoleLength: BlockSize - 9000 + 65536, Info: BKPIMAGE_HAS_HOLE},
			"exceed the 8192-byte page"},
		{"uncompressed wrong length", BlockImage{Bytes: make([]byte, 100), HoleOffset: 10, HoleLength: 100, Info: BKPIMAGE_HAS_HOLE},
			"image of 100 bytes with a 100-byte hole, want 8092 bytes"},
		{"pglz, hole too small", BlockImage{Bytes: pglz.bytes, HoleOffset: pglz.holeOff, HoleLength: pglz.holeLen - 1, Info: pglz.info},
			"pglz image of"},
		{"pglz, truncated", BlockImage{Bytes: pglz.bytes[:len(pglz.bytes)-1], HoleOffset: pglz.holeOff, HoleLength: pglz.holeLen, Info: pglz.info},
			"pglz image of"},
		{"lz4, hole too small", BlockImage{Bytes: lz4i.bytes, HoleOffset: lz4i.holeOff, HoleLength: lz4i.holeLen - 1, Info: lz4i.info},
			"lz4 image of"},
		{"lz4, hole too big", BlockImage{Bytes: lz4i.bytes, HoleOffset: lz4i.holeOff, HoleLength: lz4i.holeLen + 1, Info: lz4i.info},
			"lz4 image of"},
		{"lz4, garbage", BlockImage{Bytes: []byte{0xff, 0xff, 0xff}, Info: BKPIMAGE_COMPRESS_LZ4},
			"lz4 image of 3 bytes"},
		{"zstd, hole too small", BlockImage{Bytes: zstdi.bytes, HoleOffset: zstdi.holeOff, HoleLength: zstdi.holeLen - 1, Info: zstdi.info},
			"zstd image of"},
		{"zstd, hole too big", BlockImage{Bytes: zstdi.bytes, HoleOffset: zstdi.holeOff, HoleLength: zstdi.holeLen + 1, Info: zstdi.info},
			"zstd image of"},
		{"zstd, no hole but declared", BlockImage{Bytes: fullZstd.bytes, HoleOffset: 100, HoleLength: 100, Info: fullZstd.info | BKPIMAGE_HAS_HOLE},
			"zstd image of"},
		{"zstd, garbage", BlockImage{Bytes: []byte("not a zstd frame"), Info: BKPIMAGE_COMPRESS_ZSTD},
			"zstd image of 16 bytes"},
		{"zstd, empty", BlockImage{Info: BKPIMAGE_COMPRESS_ZSTD}, "zstd image of 0 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, BlockSize)
			got, err := tc.im.Page(buf)
			if err == nil {
				t.Fatalf("page of %d bytes", len(got))
			}
			if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "block image: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// TestCompressionPrecedence: with several method bits set, the first of
// pglz, lz4, zstd is used, as RestoreBlockImage does.
func TestCompressionPrecedence(t *testing.T) {
	for info, want := range map[uint8]Compression{
		0: CompressionNone, BKPIMAGE_HAS_HOLE | BKPIMAGE_APPLY: CompressionNone,
		BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_ZSTD: CompressionPGLZ,
		BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD:  CompressionLZ4,
		BKPIMAGE_COMPRESS_ZSTD | 0x20:                   CompressionZstd,
	} {
		im := BlockImage{Info: info}
		if im.Compression() != want {
			t.Errorf("info %#x: %v, want %v", info, im.Compression(), want)
		}
	}
	if CompressionZstd.String() != "zstd" || Compression(9).String() != "Compression(9)" {
		t.Fatal("String")
	}
}
