package layer

// An image layer holds one image per existing key of its key range at one
// LSN, sorted by key; a key of the range without an image does not exist
// at that LSN. The file is immutable once renamed to its name.

import (
	"bytes"
	"encoding/binary"
	"sort"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// ImageWriter streams images, in strictly increasing key order, into a new
// image layer file.
type ImageWriter struct{ w *writer }

// NewImageWriter starts the image layer of keys at at in dir, written by
// owner.
func NewImageWriter(dir string, owner id.TenantTimeline, keys key.Range, at lsn.LSN, opts WriterOptions) (*ImageWriter, error) {
	w, err := newWriter(dir, owner, ImageName(keys, at), opts)
	if err != nil {
		return nil, err
	}
	return &ImageWriter{w}, nil
}

// Add appends the image of k.
func (iw *ImageWriter) Add(k key.Key, img []byte) error {
	w := iw.w
	if err := w.begin(k, w.hdr.name.LSNs.Start, len(img)); err != nil {
		return err
	}
	w.block = k.Append(w.block)
	w.block = binary.AppendUvarint(w.block, uint64(len(img)))
	w.block = append(w.block, img...)
	return nil
}

// Entries is the number of images added so far.
func (iw *ImageWriter) Entries() uint64 { return iw.w.hdr.entryCount }

// Finish makes the layer durable under its final name and returns its path.
// After an error nothing is left on disk.
func (iw *ImageWriter) Finish() (string, error) { return iw.w.finish() }

// Abort deletes the unfinished file. It is a no-op after Finish.
func (iw *ImageWriter) Abort() { iw.w.discard() }

// Image is an open image layer, safe for concurrent use.
type Image struct{ *file }

// OpenImage opens an image layer file, reading its header and index.
func OpenImage(path string) (*Image, error) {
	f, size, err := openOS(path)
	if err != nil {
		return nil, err
	}
	lf, err := openFile(f, size, path, KindImage)
	if err != nil {
		f.Close()
		return nil, err
	}
	lf.closer = f
	return &Image{lf}, nil
}

// LSN is the LSN of the images.
func (im *Image) LSN() lsn.LSN { return im.hdr.name.LSNs.Start }

// Get returns the image of k; found is false when k is not in the layer,
// which for a key in the layer's range means k does not exist.
func (im *Image) Get(k key.Key) (img []byte, found bool, err error) {
	if !im.hdr.name.Keys.Contains(k) {
		return nil, false, nil
	}
	i := sort.Search(len(im.blocks), func(i int) bool { return k.Less(im.blocks[i].firstKey) }) - 1
	if i < 0 {
		return nil, false, nil
	}
	var target [key.Size]byte
	k.Append(target[:0])
	err = im.walkBlock(i, true, func(prefix, val []byte, off int64) bool {
		c := bytes.Compare(prefix, target[:])
		if c == 0 {
			img, found = val, true
		}
		return c < 0
	})
	if err != nil {
		return nil, false, err
	}
	return img, found, nil
}

// Scan iterates over every image in key order; entries carry the layer's
// LSN and image values.
func (im *Image) Scan() *Iterator { return &Iterator{f: im.file} }
