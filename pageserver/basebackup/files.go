// The data files of a basebackup: SLRU segments, databases with their
// relmapper files and relation forks, and two-phase state files, all read
// at the backup LSN. Pages go to the tar one at a time.
package basebackup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"

	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// blockSize is PostgreSQL's BLCKSZ.
const blockSize = pgcontrol.BlockSize

// castagnoli is the CRC-32C table of two-phase state files' checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	pgVersion        = "15\n"
	relMapSize       = 512    // RELMAPPER_FILESIZE
	relSegBlocks     = 131072 // RELSEG_SIZE: 1 GiB segment files
	slruPagesPerSeg  = 32     // SLRU_PAGES_PER_SEGMENT
	clogXactsPerPage = blockSize * 4
)

// slrus writes every SLRU segment. pg_xact also gets zero pages up to the
// page of nextXid, which a clean start reads (TrimCLOG, PS §7.7).
func (b *builder) slrus(nextXid uint32) error {
	for _, kind := range key.SlruKinds {
		stored, err := datadir.SlruSegments(b.ctx, b.src, kind, b.at)
		if err != nil {
			return fmt.Errorf("list %s segments: %w", kind, err)
		}
		segs := stored
		var needSeg, needPages uint32 // segment needSeg must have needPages pages
		if kind == key.Clog && nextXid%clogXactsPerPage != 0 {
			page := nextXid / clogXactsPerPage
			needSeg, needPages = page/slruPagesPerSeg, page%slruPagesPerSeg+1
			if !slices.Contains(segs, needSeg) {
				segs = slices.Sorted(slices.Values(append(slices.Clip(segs), needSeg)))
			}
		}
		for _, seg := range segs {
			var n uint32
			if slices.Contains(stored, seg) {
				if n, err = datadir.SlruSegmentSize(b.ctx, b.src, kind, seg, b.at); err != nil {
					return fmt.Errorf("size of %s segment %04X: %w", kind, seg, err)
				}
			}
			total := n
			if needPages > 0 && seg == needSeg {
				total = max(n, needPages)
			}
			if err := b.slruSegment(kind, seg, n, total); err != nil {
				return err
			}
		}
	}
	return nil
}

// slruSegment writes stored pages [0, n) and zero pages up to total.
func (b *builder) slruSegment(kind key.SlruKind, seg, n, total uint32) error {
	name := fmt.Sprintf("%s/%04X", kind, seg)
	if err := b.begin(name, int64(total)*blockSize); err != nil {
		return err
	}
	for blk := range total {
		if blk < n {
			if err := b.readPage(key.SlruBlock(kind, seg, blk), false); err != nil {
				return fmt.Errorf("%s page %d: %w", name, blk, err)
			}
		} else {
			clear(b.page)
		}
		if _, err := b.tw.Write(b.page); err != nil {
			return fmt.Errorf("tar file %s: %w", name, err)
		}
	}
	return nil
}

// readPage reads and rebuilds the page at k into b.page. CLOG pages may
// carry an 8-byte timestamp tail in storage (PS §3), which is dropped.
func (b *builder) readPage(k key.Key, relation bool) error {
	return b.readPageInto(b.page, k, relation)
}

func (b *builder) readPageInto(dst []byte, k key.Key, relation bool) error {
	rec, err := b.src.Get(b.ctx, k, b.at)
	if err != nil {
		return err
	}
	rec.Into = dst // a page rebuilt by redo lands where it goes
	page, err := b.rc.Reconstruct(b.ctx, rec)
	if err != nil {
		return fmt.Errorf("reconstruct %s at %s: %w", k, b.at, err)
	}
	if len(page) < blockSize || len(page) > blockSize+8 || (relation && len(page) != blockSize) {
		return fmt.Errorf("page %s at %s is %d bytes: %w", k, b.at, len(page), value.ErrCorrupt)
	}
	copy(dst, page)
	if relation && b.checksums {
		return pgpage.SetChecksum(dst, k.Block())
	}
	return nil
}

// Relation blocks are read readBatch at a time by readers goroutines:
// rebuilding a page is mostly waiting for the WAL-redo pool, which serves
// several callers at once (and pipelines them).
const (
	readBatch = 64
	readers   = 8
)

// readBlocks reads blocks first.. of r into b.batch[:n].
func (b *builder) readBlocks(r key.Rel, first uint32, n int) error {
	if b.batch == nil {
		b.batch = make([]byte, readBatch*blockSize)
	}
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for w := range min(readers, n) {
		wg.Go(func() {
			for i := w; i < n; i += readers {
				blk := first + uint32(i)
				if err := b.readPageInto(b.batch[i*blockSize:(i+1)*blockSize], key.RelBlock(r, blk), true); err != nil {
					errs[w] = fmt.Errorf("%s block %d: %w", r, blk, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// databases writes PG_VERSION, the relmapper files and every relation
// fork of every database.
func (b *builder) databases() error {
	if err := b.file("PG_VERSION", []byte(pgVersion)); err != nil {
		return err
	}
	dir, err := datadir.DBDir(b.ctx, b.src, b.at)
	if err != nil {
		return fmt.Errorf("read the database directory: %w", err)
	}
	dbs, err := datadir.ListDatabases(b.ctx, b.src, b.at)
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, db := range dbs {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		if err := b.database(db, dir[db]); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) database(db value.DBKey, hasRelMap bool) error {
	rels, err := datadir.ListRels(b.ctx, b.src, db.Spc, db.DB, b.at)
	if err != nil {
		return fmt.Errorf("list relations of %d/%d: %w", db.Spc, db.DB, err)
	}
	var dirName string
	switch db.Spc {
	case key.GlobalTablespace:
		dirName = "global"
	case key.DefaultTablespace:
		if !hasRelMap && len(rels) == 0 {
			return nil
		}
		dirName = fmt.Sprintf("base/%d", db.DB)
		if err := b.dir(dirName); err != nil {
			return err
		}
		if hasRelMap {
			if err := b.file(dirName+"/PG_VERSION", []byte(pgVersion)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("database %d in tablespace %d: user tablespaces: %w", db.DB, db.Spc, ErrUnsupported)
	}
	if hasRelMap {
		m, err := datadir.RelMap(b.ctx, b.src, db.Spc, db.DB, b.at)
		if err != nil {
			return fmt.Errorf("relmap of %d/%d: %w", db.Spc, db.DB, err)
		}
		if len(m) != relMapSize {
			return fmt.Errorf("relmap of %d/%d is %d bytes, want %d: %w", db.Spc, db.DB, len(m), relMapSize, value.ErrCorrupt)
		}
		if err := b.file(dirName+"/pg_filenode.map", m); err != nil {
			return err
		}
	}

	// An unlogged relation starts as its init fork: the main fork is a
	// copy of it, since a clean start does not reset unlogged relations.
	unlogged := map[uint32]bool{}
	for _, r := range rels {
		if r.Fork == key.ForkInit {
			unlogged[r.Rel] = true
		}
	}
	for _, r := range rels {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		switch {
		case r.Fork == key.ForkMain && unlogged[r.Rel]:
			continue
		case r.Fork == key.ForkInit:
			if err := b.relation(dirName, r, key.ForkMain); err != nil {
				return err
			}
		}
		if err := b.relation(dirName, r, r.Fork); err != nil {
			return err
		}
	}
	return nil
}

var forkSuffix = [...]string{key.ForkMain: "", key.ForkFSM: "_fsm", key.ForkVM: "_vm", key.ForkInit: "_init"}

// relation writes the blocks of fork r as the files of fork `as`, in
// 1 GiB segments; a relation of 0 blocks is one empty file. r comes from
// its database's relation directory, so its size key alone will do:
// RelSize would read and decode DBDir and the RelDir again for every fork.
func (b *builder) relation(dirName string, r key.Rel, as uint8) error {
	if int(as) >= len(forkSuffix) {
		return fmt.Errorf("relation %s: unknown fork: %w", r, value.ErrCorrupt)
	}
	n, err := datadir.StoredRelSize(b.ctx, b.src, r, b.at)
	if err != nil {
		return fmt.Errorf("size of %s: %w", r, err)
	}
	base := fmt.Sprintf("%s/%d%s", dirName, r.Rel, forkSuffix[as])
	for seg := uint32(0); seg == 0 || seg*relSegBlocks < n; seg++ {
		name := base
		if seg > 0 {
			name = fmt.Sprintf("%s.%d", base, seg)
		}
		first := seg * relSegBlocks
		last := min(n, first+relSegBlocks)
		if err := b.begin(name, int64(last-first)*blockSize); err != nil {
			return err
		}
		for blk := first; blk < last; blk += readBatch {
			n := int(min(last-blk, readBatch))
			if err := b.readBlocks(r, blk, n); err != nil {
				return err
			}
			if _, err := b.tw.Write(b.batch[:n*blockSize]); err != nil {
				return fmt.Errorf("tar file %s: %w", name, err)
			}
		}
	}
	return nil
}

// twoPhase writes pg_twophase/<xid>: the stored state followed by its
// CRC-32C, which PostgreSQL checks when it reads the file.
func (b *builder) twoPhase() error {
	xids, err := datadir.TwoPhaseXids(b.ctx, b.src, b.at)
	if err != nil {
		return fmt.Errorf("list prepared transactions: %w", err)
	}
	for _, xid := range xids {
		state, err := datadir.TwoPhaseFile(b.ctx, b.src, xid, b.at)
		if err != nil {
			return fmt.Errorf("prepared transaction %d: %w", xid, err)
		}
		content := binary.LittleEndian.AppendUint32(slices.Clip(state), crc32.Checksum(state, castagnoli))
		if err := b.file(fmt.Sprintf("pg_twophase/%08X", xid), content); err != nil {
			return err
		}
	}
	return nil
}
