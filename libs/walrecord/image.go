// Full-page images: RestoreBlockImage in Go.
//
// Guarantees: Page returns exactly BlockSize bytes or an error; it writes
// only into the page it returns, whatever the image bytes; a compressed image
// must decompress to exactly BlockSize - HoleLength bytes (PostgreSQL itself
// is laxer for LZ4 and zstd, but a short page is corruption either way).
package walrecord

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is the method a full-page image was compressed with
// (wal_compression).
type Compression uint8

const (
	CompressionNone Compression = iota
	CompressionPGLZ
	CompressionLZ4
	CompressionZstd
)

// String returns the name pg_waldump prints for the method ("none" when the
// image is not compressed).
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionPGLZ:
		return "pglz"
	case CompressionLZ4:
		return "lz4"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// BlockImage is a full-page image as stored in the record.
type BlockImage struct {
	Bytes      []byte // as stored (possibly compressed, hole removed); aliases the record
	HoleOffset uint16
	HoleLength uint16
	Info       uint8 // bimg_info (PostgreSQL 15 bits)
}

// Apply reports BKPIMAGE_APPLY: redo restores the image. Without it the
// image is only there for wal_consistency_checking.
func (im *BlockImage) Apply() bool { return im.Info&BKPIMAGE_APPLY != 0 }

// Compression returns the method the image is compressed with. Should more
// than one bit be set, the first of pglz, lz4, zstd wins, as in
// RestoreBlockImage.
func (im *BlockImage) Compression() Compression {
	switch {
	case im.Info&BKPIMAGE_COMPRESS_PGLZ != 0:
		return CompressionPGLZ
	case im.Info&BKPIMAGE_COMPRESS_LZ4 != 0:
		return CompressionLZ4
	case im.Info&BKPIMAGE_COMPRESS_ZSTD != 0:
		return CompressionZstd
	}
	return CompressionNone
}

// Page reconstructs the BlockSize-byte page: it decompresses the image if
// needed and re-inserts the zeroed hole. The page is built in dst[:0] if dst
// has the capacity, else in a new slice, and returned. Errors match
// ErrMalformed; they do not know the record's LSN, so callers add it.
func (im *BlockImage) Page(dst []byte) ([]byte, error) {
	off, hole := int(im.HoleOffset), int(im.HoleLength)
	if off+hole > BlockSize {
		return nil, imageErr("hole offset %d + length %d exceed the %d-byte page", off, hole, BlockSize)
	}
	stored := BlockSize - hole // bytes of page the image carries
	var page []byte
	if cap(dst) >= BlockSize {
		page = dst[:BlockSize]
	} else {
		page = make([]byte, BlockSize)
	}

	// First the page without its hole, in page[:stored].
	switch c := im.Compression(); c {
	case CompressionNone:
		if len(im.Bytes) != stored {
			return nil, imageErr("image of %d bytes with a %d-byte hole, want %d bytes", len(im.Bytes), hole, stored)
		}
		if off > 0 && hole > 0 {
			// The common case: copy around the hole directly.
			copy(page, im.Bytes[:off])
			clear(page[off : off+hole])
			copy(page[off+hole:], im.Bytes[off:])
			return page, nil
		}
		copy(page, im.Bytes)
	case CompressionPGLZ:
		if err := pglzDecompress(im.Bytes, page[:stored]); err != nil {
			return nil, imageErr("pglz image of %d bytes: %v", len(im.Bytes), err)
		}
	case CompressionLZ4:
		n, err := lz4.UncompressBlock(im.Bytes, page[:stored])
		if err != nil {
			return nil, imageErr("lz4 image of %d bytes: %v", len(im.Bytes), err)
		}
		if n != stored {
			return nil, imageErr("lz4 image of %d bytes decompresses to %d bytes, want %d", len(im.Bytes), n, stored)
		}
	case CompressionZstd:
		if err := zstdDecompress(im.Bytes, page[:stored]); err != nil {
			return nil, imageErr("zstd image of %d bytes: %v", len(im.Bytes), err)
		}
	}
	if hole > 0 {
		copy(page[off+hole:], page[off:stored]) // overlapping: copy is memmove
		clear(page[off : off+hole])
	}
	return page, nil
}

func imageErr(format string, args ...any) error {
	return fmt.Errorf("block image: "+format+": %w", append(args, ErrMalformed)...)
}

// zstdDecoders holds idle zstd decoders. A decoder with concurrency 1 and no
// reader starts no goroutines, so one dropped by the pool needs no Close;
// pooling them lets concurrent ingest decode in parallel without sharing one
// decoder's lock. The pool is a cache, not state: nothing observable depends
// on which decoder is used.
var zstdDecoders = sync.Pool{
	New: func() any {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			// DecodeAll never grows dst past its capacity (the page), so
			// a hostile frame cannot make it allocate.
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(BlockSize),
			zstd.WithDecoderLowmem(true))
		if err != nil {
			return err
		}
		return d
	},
}

// zstdDecompress decompresses the zstd frame(s) in src into exactly dst.
func zstdDecompress(src, dst []byte) error {
	var d *zstd.Decoder
	switch v := zstdDecoders.Get().(type) {
	case *zstd.Decoder:
		d = v
	case error:
		return fmt.Errorf("create zstd decoder: %w", v)
	}
	out, err := d.DecodeAll(src, dst[:0:len(dst)])
	zstdDecoders.Put(d)
	if err != nil {
		return err
	}
	if len(out) != len(dst) {
		return fmt.Errorf("decompresses to %d bytes, want %d", len(out), len(dst))
	}
	if len(out) > 0 && &out[0] != &dst[0] {
		copy(dst, out) // not expected with the cap limit, but cheap to be sure
	}
	return nil
}
