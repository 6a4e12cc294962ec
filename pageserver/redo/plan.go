package redo

import (
	"errors"
	"fmt"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/goredo"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// ErrInvalidRequest is wrapped by errors about the request itself: a record
// that fails its CRC or does not touch the page, no base image where one is
// needed. Retrying does not help.
var ErrInvalidRequest = errors.New("invalid WAL redo request")

// maxBufferUnits bounds the buffers one process request may need, counted
// as the distinct blocks its records reference plus two for each heap block
// (the FSM and VM pages heap redo updates). The redo process runs with 1024
// buffers and every buffer a request dirties must stay in the pool until
// the request ends: evicting a dirty one would flush WAL past the scratch
// cluster's end. Longer runs of records are split, each part starting from
// the page the previous made.
const maxBufferUnits = 400

// blockTag names a block a record references, for the buffer budget.
type blockTag struct {
	rel  walrecord.RelFileNode
	fork uint8
	blk  uint32
	heap bool // referenced by a heap record: FSM and VM pages come with it
}

// plan is a reconstruction ready to run: a base page (nil if the first
// record initialises it) and runs of records, each applied in Go (Neon
// records, PS §3, or the PostgreSQL records goredo knows) or by a redo
// process.
type plan struct {
	key   key.Key
	block walrecord.BlockRef // the target, as records name it
	base  []byte             // read only: may be the stored image (Go steps copy it)
	steps []step
}

// stepKind says who applies a run of records.
type stepKind uint8

const (
	stepNeon     stepKind = iota // neonredo: the pageserver's own records
	stepGo                       // goredo: PostgreSQL records applied in Go
	stepPostgres                 // a WAL-redo process
)

type step struct {
	kind    stepKind
	records []value.Versioned
}

// makePlan checks r and splits it into steps. It applies in Go what needs
// no PostgreSQL: the last record that carries a full-page image of the
// target (to be applied) resets the page, so it and everything older is
// replaced by that image. With inGo, the records goredo supports are
// Go steps too.
func makePlan(r value.Reconstruction, inGo bool) (plan, error) {
	p := plan{key: r.Key}
	if !r.HasImage && len(r.Records) == 0 {
		return p, invalidf(r.Key, r.LSN, "no image and no records")
	}
	var tag walrecord.BlockRef
	if r.Key.IsRelBlock() {
		rel := r.Key.Rel()
		tag = walrecord.BlockRef{Rel: walrecord.RelFileNode{Spc: rel.Spc, DB: rel.DB, Rel: rel.Rel}, Fork: rel.Fork, Blkno: r.Key.Block()}
	}

	recs := r.Records
	var base []byte
	if r.HasImage {
		base = r.Image
	}
	// Of each record kept, newest first: who applies it, and the blocks
	// of one a redo process applies (record i's are tags[ends[i-1]:ends[i]],
	// none for the others).
	kinds := make([]stepKind, 0, len(recs))
	tags := make([]blockTag, 0, 2*len(recs))
	ends := make([]int, 0, len(recs))
	var dec walrecord.Record
	for i := len(recs) - 1; i >= 0; i-- {
		rec := &recs[i]
		if rec.Record.Kind != value.Postgres {
			kinds, ends = append(kinds, stepNeon), append(ends, len(tags))
			continue
		}
		if !r.Key.IsRelBlock() {
			return p, invalidf(r.Key, rec.LSN, "a PostgreSQL record for a key that is not a relation block")
		}
		blk, err := checkRecord(&dec, rec, tag)
		if err != nil {
			return p, fmt.Errorf("%w: %s at %s: %w", ErrInvalidRequest, r.Key, rec.LSN, err)
		}
		if blk.HasImage && blk.Image.Apply() {
			dst := pageBuffer(r.Into)
			if dst == nil {
				dst = make([]byte, pgpage.BlockSize)
			}
			page, err := pgpage.Restore(&blk.Image, rec.LSN, dst[:0])
			if err != nil {
				return p, invalidf(r.Key, rec.LSN, "full-page image: %v", err)
			}
			base, recs = page, recs[i+1:]
			break
		}
		if inGo && goredo.Supported(&dec, blk) {
			kinds = append(kinds, stepGo)
		} else {
			kinds = append(kinds, stepPostgres)
			heap := dec.Header.RmID == walrecord.RmHeap || dec.Header.RmID == walrecord.RmHeap2
			for _, b := range dec.Blocks {
				tags = append(tags, blockTag{rel: b.Rel, fork: b.Fork, blk: b.Blkno, heap: heap})
			}
		}
		ends = append(ends, len(tags))
	}
	p.base, p.block = base, tag
	slices.Reverse(kinds)

	if base == nil && len(recs) > 0 && !recs[0].Record.WillInit {
		return p, invalidf(r.Key, recs[0].LSN, "no base image, and the first record does not initialise the page")
	}
	blocksOf := func(j int) []blockTag { // of recs[j]
		i := len(ends) - 1 - j
		if i == 0 {
			return tags[:ends[0]]
		}
		return tags[ends[i-1]:ends[i]]
	}
	var seen []blockTag // distinct blocks of the current step
	for start := 0; start < len(recs); {
		kind := kinds[start]
		end, budget := start, 0
		seen = seen[:0]
		for end < len(recs) && kinds[end] == kind {
			if kind == stepPostgres {
				n := len(seen)
				for _, b := range blocksOf(end) {
					if !slices.Contains(seen, b) {
						seen = append(seen, b)
						budget += 1 + 2*boolInt(b.heap)
					}
				}
				if budget > maxBufferUnits && end > start {
					seen = seen[:n] // the record starts the next step
					break
				}
			}
			end++
		}
		p.steps = append(p.steps, step{kind: kind, records: recs[start:end]})
		start = end
	}
	return p, nil
}

// checkRecord validates a PostgreSQL record for the target block: its CRC,
// its structure, and that it references the block. It returns that block
// reference.
func checkRecord(dec *walrecord.Record, rec *value.Versioned, target walrecord.BlockRef) (*walrecord.BlockRef, error) {
	raw := rec.Record.Raw
	if err := wal.ValidateRecord(raw); err != nil {
		return nil, err
	}
	if err := walrecord.DecodeInto(dec, raw, rec.LSN, rec.LSN); err != nil {
		return nil, err
	}
	if b := targetBlock(dec, target); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("the record does not reference block %d of %d/%d/%d fork %d",
		target.Blkno, target.Rel.Spc, target.Rel.DB, target.Rel.Rel, target.Fork)
}

// targetBlock is dec's reference to target's block, or nil.
func targetBlock(dec *walrecord.Record, target walrecord.BlockRef) *walrecord.BlockRef {
	for i := range dec.Blocks {
		b := &dec.Blocks[i]
		if b.Rel == target.Rel && b.Fork == target.Fork && b.Blkno == target.Blkno {
			return b
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func invalidf(k key.Key, at lsn.LSN, format string, args ...any) error {
	return fmt.Errorf("%w: %s at %s: %s", ErrInvalidRequest, k, at, fmt.Sprintf(format, args...))
}
