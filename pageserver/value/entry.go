package value

import (
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// Entry is one version of one key: what ingest writes and layers hold.
type Entry struct {
	Key   key.Key
	LSN   lsn.LSN
	Value Value
}

// Versioned is a record and the LSN it is stored at.
type Versioned struct {
	LSN    lsn.LSN
	Record Record
}

// Reconstruction is what a read of a key at an LSN found: the newest image
// at or below that LSN, if one was needed, and the records above it, oldest
// first. Applying the records in order to the image (or to nothing, when
// the first record initializes the page) gives the value.
type Reconstruction struct {
	Key      key.Key
	LSN      lsn.LSN // the LSN read at
	HasImage bool
	Image    []byte
	ImageLSN lsn.LSN
	Records  []Versioned
	// Into, if it has room for a page, is where a reconstructor may build
	// the page (the result then aliases Into[:BlockSize]): a caller that
	// copies the page somewhere saves an allocation by pointing Into there.
	Into []byte
}

// ImageOnly reports whether the value is the image itself, nothing to apply.
func (r *Reconstruction) ImageOnly() bool { return r.HasImage && len(r.Records) == 0 }
