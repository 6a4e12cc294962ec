package redo

import (
	"context"

	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// Reconstructor is what WithChecksums wraps (a Pool, or anything else
// that rebuilds pages; pageserver/timeline.Reconstructor).
type Reconstructor interface {
	Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
}

// WithChecksums rebuilds pages for a cluster initialised with
// --data-checksums: every relation page it returns carries its pd_checksum,
// which PostgreSQL verifies on every read. Redo does not compute checksums
// and full-page images in WAL carry stale ones (PS §7.6), so it is computed
// last, on a copy when the page is a stored image.
type WithChecksums struct{ Reconstructor }

// Reconstruct rebuilds r's page and sets its checksum.
func (c WithChecksums) Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error) {
	page, err := c.Reconstructor.Reconstruct(ctx, r)
	if err != nil || !r.Key.IsRelBlock() || len(page) != pgpage.BlockSize {
		return page, err
	}
	if r.ImageOnly() {
		page = append([]byte(nil), page...) // the stored image itself: shared
	}
	if err := pgpage.SetChecksum(page, r.Key.Block()); err != nil {
		return nil, err
	}
	return page, nil
}
