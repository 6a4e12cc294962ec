package ingest

// Relations: existence, size, implicit creation and extension, truncation
// and drops (PS §2.5 item 3). Directories are read through the overlay and
// rewritten whole; sizes are cached for the relations known to exist.

import (
	"context"
	"fmt"

	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// invalidBlock is InvalidBlockNumber; its key would be the size key.
const invalidBlock = 0xFFFFFFFF

// checkRel names a relation fork after checking that the pageserver can
// store it: the default or global tablespace (user tablespaces are not
// supported, PS §12 pitfall 19), a database only in the default one, a
// relfilenode and a fork number PostgreSQL could use.
func checkRel(spc, db, rel uint32, fork uint8) (key.Rel, error) {
	r := key.Rel{Spc: spc, DB: db, Rel: rel, Fork: fork}
	switch {
	case spc != key.DefaultTablespace && spc != key.GlobalTablespace:
		return r, fmt.Errorf("relation %s is in user tablespace %d: user tablespaces are not supported", r, spc)
	case spc == key.GlobalTablespace && db != 0:
		return r, fmt.Errorf("relation %s: the global tablespace has no database %d", r, db)
	case spc == key.DefaultTablespace && db == 0:
		return r, fmt.Errorf("relation %s: database 0 is not in the default tablespace", r)
	case rel == 0:
		return r, fmt.Errorf("relation %s: relfilenode 0", r)
	case fork > pgrecords.MaxForkNum:
		return r, fmt.Errorf("relation %s: fork number %d", r, fork)
	}
	return r, nil
}

// checkDB checks a (tablespace, database) pair the way checkRel does.
func checkDB(spc, db uint32) error {
	_, err := checkRel(spc, db, 1, 0)
	return err
}

// relSize is the size of a fork and whether it exists.
func (in *Ingester) relSize(ctx context.Context, rel key.Rel) (uint32, bool, error) {
	if n, ok := in.relSizes[rel]; ok {
		return n, true, nil
	}
	r := in.reader()
	ok, err := datadir.RelExists(ctx, r, rel, in.committed)
	if err != nil || !ok {
		return 0, false, err
	}
	b, err := datadir.Image(ctx, r, key.RelSize(rel), in.committed)
	if err != nil {
		return 0, false, err
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		return 0, false, fmt.Errorf("size of %s: %w", rel, err)
	}
	in.cacheSize(rel, n)
	return n, true, nil
}

func (in *Ingester) cacheSize(rel key.Rel, n uint32) {
	if len(in.relSizes) >= maxCachedRels {
		clear(in.relSizes)
	}
	in.relSizes[rel] = n
}

// setRelSize stores a new size for an existing fork.
func (in *Ingester) setRelSize(rel key.Rel, n uint32) error {
	if err := in.put(key.RelSize(rel), value.NewImage(value.EncodeSize(n))); err != nil {
		return err
	}
	in.cacheSize(rel, n)
	return nil
}

// dbDir reads the database directory.
func (in *Ingester) dbDir(ctx context.Context) (value.DBDir, error) {
	return datadir.DBDir(ctx, in.reader(), in.committed)
}

// createRel adds a fork that does not exist yet with size n, adding its
// database (without a relation map) if needed.
func (in *Ingester) createRel(ctx context.Context, rel key.Rel, n uint32) error {
	dbs, err := in.dbDir(ctx)
	if err != nil {
		return err
	}
	db := value.DBKey{Spc: rel.Spc, DB: rel.DB}
	var dir value.RelDir
	if _, ok := dbs[db]; ok {
		if dir, err = datadir.RelDir(ctx, in.reader(), rel.Spc, rel.DB, in.committed); err != nil {
			return err
		}
	} else {
		dbs[db] = false
		if err := in.put(key.DBDir(), value.NewImage(dbs.Encode())); err != nil {
			return err
		}
		dir = value.RelDir{}
	}
	rk := value.RelKey{Rel: rel.Rel, Fork: rel.Fork}
	if _, ok := dir[rk]; ok {
		return fmt.Errorf("relation %s already exists", rel)
	}
	dir[rk] = struct{}{}
	if err := in.put(key.RelDir(rel.Spc, rel.DB), value.NewImage(dir.Encode())); err != nil {
		return err
	}
	return in.setRelSize(rel, n)
}

// putRelBlock stores a version of a relation block, creating the fork if
// it does not exist and extending it (with zero pages for the blocks
// skipped) if the block is past its end.
func (in *Ingester) putRelBlock(ctx context.Context, rel key.Rel, blk uint32, v value.Value) error {
	if blk == invalidBlock {
		return fmt.Errorf("block %d of %s: invalid block number", blk, rel)
	}
	n, ok, err := in.relSize(ctx, rel)
	if err != nil {
		return err
	}
	if !ok {
		if err := in.createRel(ctx, rel, 0); err != nil {
			return err
		}
	}
	if blk >= n {
		if err := in.setRelSize(rel, blk+1); err != nil {
			return err
		}
		for g := n; g < blk; g++ {
			if err := in.put(key.RelBlock(rel, g), value.NewImage(in.zeroPage)); err != nil {
				return err
			}
			in.stats.GapPagesZeroed++
		}
		// A record that does not initialise a page past the end finds a
		// zero page in PostgreSQL's redo, which extends the relation for
		// it (XLogReadBufferExtended with RBM_ZERO_ON_ERROR, e.g. the VM
		// page of XLOG_HEAP2_VISIBLE when full_page_writes is off).
		// Give it that base, just below the record.
		if !v.WillInit() {
			if err := in.putEarly(key.RelBlock(rel, blk), value.NewImage(in.zeroPage)); err != nil {
				return err
			}
			in.stats.GapPagesZeroed++
		}
	}
	return in.put(key.RelBlock(rel, blk), v)
}

// truncateRel shrinks an existing fork to n blocks. Like mdtruncate during
// recovery, a fork already shorter is left alone. The blocks past n stay
// stored but unreachable (PS §2.5: no tombstones).
func (in *Ingester) truncateRel(ctx context.Context, rel key.Rel, n uint32) error {
	size, ok, err := in.relSize(ctx, rel)
	if err != nil || !ok || size <= n {
		return err
	}
	return in.setRelSize(rel, n)
}

// dropRels removes the forks of rels that exist from their relation
// directories; the others are ignored (commit records list every
// relation dropped, not every fork).
func (in *Ingester) dropRels(ctx context.Context, rels []key.Rel) error {
	dbs, err := in.dbDir(ctx)
	if err != nil {
		return err
	}
	dirs := make(map[value.DBKey]value.RelDir)
	for _, rel := range rels {
		db := value.DBKey{Spc: rel.Spc, DB: rel.DB}
		if _, ok := dbs[db]; !ok {
			in.stats.RelDropsNotFound++
			continue
		}
		dir, ok := dirs[db]
		if !ok {
			if dir, err = datadir.RelDir(ctx, in.reader(), db.Spc, db.DB, in.committed); err != nil {
				return err
			}
			dirs[db] = dir
		}
		rk := value.RelKey{Rel: rel.Rel, Fork: rel.Fork}
		if _, ok := dir[rk]; !ok {
			in.stats.RelDropsNotFound++
			continue
		}
		delete(dir, rk)
		delete(in.relSizes, rel)
	}
	for db, dir := range dirs {
		if err := in.put(key.RelDir(db.Spc, db.DB), value.NewImage(dir.Encode())); err != nil {
			return err
		}
	}
	return nil
}

// dropDB removes a database from the directory. Its keys stay stored but
// unreachable.
func (in *Ingester) dropDB(ctx context.Context, spc, db uint32) error {
	dbs, err := in.dbDir(ctx)
	if err != nil {
		return err
	}
	for rel := range in.relSizes {
		if rel.Spc == spc && rel.DB == db {
			delete(in.relSizes, rel)
		}
	}
	k := value.DBKey{Spc: spc, DB: db}
	if _, ok := dbs[k]; !ok {
		return nil
	}
	delete(dbs, k)
	return in.put(key.DBDir(), value.NewImage(dbs.Encode()))
}

// putRelMap stores a database's pg_filenode.map. A database not in the
// directory is added with an empty relation directory; one added earlier
// without a map (by a relation created before it) now has one.
func (in *Ingester) putRelMap(ctx context.Context, spc, db uint32, data []byte) error {
	if err := checkDB(spc, db); err != nil {
		return err
	}
	dbs, err := in.dbDir(ctx)
	if err != nil {
		return err
	}
	k := value.DBKey{Spc: spc, DB: db}
	has, exists := dbs[k]
	if !exists || !has {
		dbs[k] = true
		if err := in.put(key.DBDir(), value.NewImage(dbs.Encode())); err != nil {
			return err
		}
	}
	if !exists {
		if err := in.put(key.RelDir(spc, db), value.NewImage(value.RelDir{}.Encode())); err != nil {
			return err
		}
	}
	return in.put(key.RelMap(spc, db), value.NewImage(cloneBytes(data)))
}
