package ingest

// Block references → data values (PS §2.5 item 1).

import (
	"context"
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// blocks stores a value for every block the record references. The full
// page images of XLOG_FPI and XLOG_FPI_FOR_HINT, whose redo is nothing
// but restoring them, become images — decompressed here when compressed,
// where Neon falls back to a record — with pd_lsn set to the record's end
// as XLogReadBufferForRedo does (unless the page is new). Every other
// record is stored whole under each block it touches, marked will_init
// when redo rebuilds the page without reading it (BKPBLOCK_WILL_INIT or
// an image to apply).
func (in *Ingester) blocks(ctx context.Context, rec *walrecord.Record) error {
	info := rec.RmInfo()
	isFPI := rec.Header.RmID == walrecord.RmXLOG && (info == pgrecords.XLOG_FPI || info == pgrecords.XLOG_FPI_FOR_HINT)
	for i := range rec.Blocks {
		b := &rec.Blocks[i]
		rel, err := checkRel(b.Rel.Spc, b.Rel.DB, b.Rel.Rel, b.Fork)
		if err != nil {
			return fmt.Errorf("block %d: %w", b.ID, err)
		}
		var v value.Value
		if isFPI && b.HasImage && b.Image.Apply() {
			page, err := pgpage.Restore(&b.Image, rec.EndLSN, nil)
			if err != nil {
				return fmt.Errorf("block %d (%s block %d): %w", b.ID, rel, b.Blkno, err)
			}
			v = value.NewImage(page)
		} else {
			v = value.NewPostgres(in.raw(), b.WillInit || (b.HasImage && b.Image.Apply()))
		}
		if err := in.putRelBlock(ctx, rel, b.Blkno, v); err != nil {
			return err
		}
	}
	return nil
}

// putSlruPage stores a page image of an SLRU, creating and extending the
// segment as needed (only zero-page records do this: the CLOG and
// multixact records that change pages write to existing ones).
func (in *Ingester) putSlruPage(ctx context.Context, kind key.SlruKind, pageno uint32, page []byte) error {
	if err := in.extendSlru(ctx, kind, pageno); err != nil {
		return err
	}
	return in.put(slruKey(kind, pageno), value.NewImage(page))
}

// extendSlru makes the segment of pageno exist and reach past pageno,
// with zero pages for the pages skipped (not for pageno itself).
func (in *Ingester) extendSlru(ctx context.Context, kind key.SlruKind, pageno uint32) error {
	segno, blk := pageno/pgrecords.SlruPagesPerSegment, pageno%pgrecords.SlruPagesPerSegment
	dir, err := in.slruDir(ctx, kind)
	if err != nil {
		return err
	}
	var n uint32
	if _, ok := dir[segno]; ok {
		if n, err = in.slruSegSize(ctx, kind, segno); err != nil {
			return err
		}
	} else {
		dir[segno] = struct{}{}
		if err := in.put(key.SlruDir(kind), value.NewImage(dir.Encode())); err != nil {
			return err
		}
	}
	if blk < n {
		return nil
	}
	if err := in.put(key.SlruSegSize(kind, segno), value.NewImage(value.EncodeSize(blk+1))); err != nil {
		return err
	}
	for g := n; g < blk; g++ {
		if err := in.put(key.SlruBlock(kind, segno, g), value.NewImage(in.zeroPage)); err != nil {
			return err
		}
		in.stats.GapPagesZeroed++
	}
	return nil
}

func (in *Ingester) slruSegSize(ctx context.Context, kind key.SlruKind, segno uint32) (uint32, error) {
	b, err := in.image(ctx, key.SlruSegSize(kind, segno))
	if err != nil {
		return 0, err
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		return 0, fmt.Errorf("size of %s segment %04X: %w", kind, segno, err)
	}
	return n, nil
}

// slruPageExists reports whether an SLRU page is within its segment.
func (in *Ingester) slruPageExists(ctx context.Context, kind key.SlruKind, pageno uint32) (bool, error) {
	segno, blk := pageno/pgrecords.SlruPagesPerSegment, pageno%pgrecords.SlruPagesPerSegment
	dir, err := in.slruDir(ctx, kind)
	if err != nil {
		return false, err
	}
	if _, ok := dir[segno]; !ok {
		return false, nil
	}
	n, err := in.slruSegSize(ctx, kind, segno)
	return blk < n, err
}

func slruKey(kind key.SlruKind, pageno uint32) key.Key {
	return key.SlruBlock(kind, pageno/pgrecords.SlruPagesPerSegment, pageno%pgrecords.SlruPagesPerSegment)
}

// putSlruRecord stores a Neon record on an SLRU page, without size checks.
func (in *Ingester) putSlruRecord(kind key.SlruKind, pageno uint32, r value.Record) error {
	return in.put(slruKey(kind, pageno), value.NewRecord(r))
}

func (in *Ingester) slruDir(ctx context.Context, kind key.SlruKind) (value.U32Set, error) {
	b, err := in.image(ctx, key.SlruDir(kind))
	if err != nil {
		return nil, err
	}
	return value.DecodeU32Set(b)
}

// dropSlruSegments removes the segments drop selects from the SLRU's
// directory. Their pages stay stored but unreachable.
func (in *Ingester) dropSlruSegments(ctx context.Context, kind key.SlruKind, drop func(seg uint32) bool) error {
	dir, err := in.slruDir(ctx, kind)
	if err != nil {
		return err
	}
	n := len(dir)
	for seg := range dir {
		if drop(seg) {
			delete(dir, seg)
		}
	}
	if len(dir) == n {
		return nil
	}
	return in.put(key.SlruDir(kind), value.NewImage(dir.Encode()))
}

// image reads the latest value of a metadata key.
func (in *Ingester) image(ctx context.Context, k key.Key) ([]byte, error) {
	b, err := datadir.Image(ctx, in.reader(), k, in.committed)
	return b, err
}
