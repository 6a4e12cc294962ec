package pagecheck

import (
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/value"
)

// PageRecord is a PostgreSQL record of a reconstruction, decoded, and its
// reference to the page being rebuilt.
type PageRecord struct {
	walrecord.Record
	Block *walrecord.BlockRef
}

// RecordsToApply decodes the PostgreSQL records of r that a rebuild of
// r's page applies, oldest first: those after the newest one that carries
// a full-page image of the page to apply, which restores the page (as
// pageserver/redo's plan does). r's key must be a relation block.
func RecordsToApply(r value.Reconstruction) ([]PageRecord, error) {
	rel, blkno := r.Key.Rel(), r.Key.Block()
	var out []PageRecord
	for _, v := range r.Records {
		if v.Record.Kind != value.Postgres {
			continue
		}
		rec, err := walrecord.Decode(v.Record.Raw, v.LSN, v.LSN)
		if err != nil {
			return nil, fmt.Errorf("%s: record at %s: %w", r.Key, v.LSN, err)
		}
		var blk *walrecord.BlockRef
		for i := range rec.Blocks {
			b := &rec.Blocks[i]
			if b.Rel.Spc == rel.Spc && b.Rel.DB == rel.DB && b.Rel.Rel == rel.Rel && b.Fork == rel.Fork && b.Blkno == blkno {
				blk = b
			}
		}
		if blk == nil {
			return nil, fmt.Errorf("%s: the record at %s does not reference the page", r.Key, v.LSN)
		}
		if blk.HasImage && blk.Image.Apply() {
			out = out[:0] // the page restarts from this image
			continue
		}
		out = append(out, PageRecord{Record: rec, Block: blk})
	}
	return out, nil
}
