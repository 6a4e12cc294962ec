// Package datadir reads PostgreSQL's data directory back out of the
// pageserver's key space (PS §1.2, §2.5, §5.4): the database and relation
// directories, relation and SLRU segment sizes, two-phase files, the
// checkpoint, and the live key space at an LSN. It is what ingest, the
// page service and basebackup share, so that all of them answer "does this
// relation exist and how long is it" the same way.
//
// Every function reads metadata keys, which are always stored as images;
// a metadata key that comes back as records is corruption. A metadata key
// missing where the directories say it must exist is an error from the
// Reader, passed on.
package datadir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// Reader reads a key at an LSN, as the timeline does.
type Reader interface {
	Get(ctx context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error)
}

// ErrRelNotFound is wrapped when a relation fork that must exist does not.
var ErrRelNotFound = errors.New("relation does not exist")

// Image reads a metadata key, which must be stored as an image.
func Image(ctx context.Context, r Reader, k key.Key, at lsn.LSN) ([]byte, error) {
	rec, err := r.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	if !rec.ImageOnly() {
		return nil, fmt.Errorf("metadata key %s at %s is not an image (%d records): %w",
			k, at, len(rec.Records), value.ErrCorrupt)
	}
	return rec.Image, nil
}

// DBDir reads the directory of databases.
func DBDir(ctx context.Context, r Reader, at lsn.LSN) (value.DBDir, error) {
	b, err := Image(ctx, r, key.DBDir(), at)
	if err != nil {
		return nil, err
	}
	return value.DecodeDBDir(b)
}

// RelDir reads the relation directory of a database, which must be in
// DBDir.
func RelDir(ctx context.Context, r Reader, spc, db uint32, at lsn.LSN) (value.RelDir, error) {
	b, err := Image(ctx, r, key.RelDir(spc, db), at)
	if err != nil {
		return nil, err
	}
	return value.DecodeRelDir(b)
}

// ListDatabases lists the databases, in (tablespace, database) order. The
// global catalog is (GlobalTablespace, 0).
func ListDatabases(ctx context.Context, r Reader, at lsn.LSN) ([]value.DBKey, error) {
	dir, err := DBDir(ctx, r, at)
	if err != nil {
		return nil, err
	}
	return sortedDBs(dir), nil
}

// ListRels lists the relation forks of a database in key order; a database
// that does not exist has none.
func ListRels(ctx context.Context, r Reader, spc, db uint32, at lsn.LSN) ([]key.Rel, error) {
	dbs, err := DBDir(ctx, r, at)
	if err != nil {
		return nil, err
	}
	if _, ok := dbs[value.DBKey{Spc: spc, DB: db}]; !ok {
		return nil, nil
	}
	return listRels(ctx, r, spc, db, at)
}

// listRels is ListRels of a database known to be in DBDir.
func listRels(ctx context.Context, r Reader, spc, db uint32, at lsn.LSN) ([]key.Rel, error) {
	dir, err := RelDir(ctx, r, spc, db, at)
	if err != nil {
		return nil, err
	}
	rels := make([]key.Rel, 0, len(dir))
	for k := range dir {
		rels = append(rels, key.Rel{Spc: spc, DB: db, Rel: k.Rel, Fork: k.Fork})
	}
	slices.SortFunc(rels, func(a, b key.Rel) int {
		return cmp.Or(cmp.Compare(a.Rel, b.Rel), cmp.Compare(a.Fork, b.Fork))
	})
	return rels, nil
}

// RelExists reports whether a relation fork exists: its database is in
// DBDir and the fork in the database's RelDir.
func RelExists(ctx context.Context, r Reader, rel key.Rel, at lsn.LSN) (bool, error) {
	dbs, err := DBDir(ctx, r, at)
	if err != nil {
		return false, err
	}
	if _, ok := dbs[value.DBKey{Spc: rel.Spc, DB: rel.DB}]; !ok {
		return false, nil
	}
	dir, err := RelDir(ctx, r, rel.Spc, rel.DB, at)
	if err != nil {
		return false, err
	}
	_, ok := dir[value.RelKey{Rel: rel.Rel, Fork: rel.Fork}]
	return ok, nil
}

// RelSize is a relation fork's size in blocks. A free-space map or
// visibility map that does not exist has size 0 (PostgreSQL creates them
// lazily and asks their size first); any other missing fork is an error
// wrapping ErrRelNotFound.
func RelSize(ctx context.Context, r Reader, rel key.Rel, at lsn.LSN) (uint32, error) {
	ok, err := RelExists(ctx, r, rel, at)
	if err != nil {
		return 0, err
	}
	if !ok {
		if rel.Fork == key.ForkFSM || rel.Fork == key.ForkVM {
			return 0, nil
		}
		return 0, fmt.Errorf("size of %s at %s: %w", rel, at, ErrRelNotFound)
	}
	return sizeKey(ctx, r, key.RelSize(rel), at)
}

// StoredRelSize is the size a relation fork last had, from its size key
// alone, without RelSize's directory lookups (two directory decodes per
// call). Keys are never deleted, so a dropped fork keeps its last size:
// only for callers that know the fork exists, like a compute reading a
// page of a main fork (Neon's get_rel_size does the same). A fork that
// never existed is the reader's missing-key error.
func StoredRelSize(ctx context.Context, r Reader, rel key.Rel, at lsn.LSN) (uint32, error) {
	n, err := sizeKey(ctx, r, key.RelSize(rel), at)
	if err != nil {
		return 0, fmt.Errorf("size of %s at %s: %w", rel, at, err)
	}
	return n, nil
}

func sizeKey(ctx context.Context, r Reader, k key.Key, at lsn.LSN) (uint32, error) {
	b, err := Image(ctx, r, k, at)
	if err != nil {
		return 0, err
	}
	return value.DecodeSize(b)
}

// DBSize is the number of blocks of every relation fork of a database.
func DBSize(ctx context.Context, r Reader, spc, db uint32, at lsn.LSN) (uint64, error) {
	rels, err := ListRels(ctx, r, spc, db, at)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, rel := range rels {
		s, err := sizeKey(ctx, r, key.RelSize(rel), at)
		if err != nil {
			return 0, err
		}
		n += uint64(s)
	}
	return n, nil
}

// RelMap reads a database's pg_filenode.map.
func RelMap(ctx context.Context, r Reader, spc, db uint32, at lsn.LSN) ([]byte, error) {
	return Image(ctx, r, key.RelMap(spc, db), at)
}

// SlruSegments lists an SLRU's segments in increasing order.
func SlruSegments(ctx context.Context, r Reader, kind key.SlruKind, at lsn.LSN) ([]uint32, error) {
	return sortedSet(ctx, r, key.SlruDir(kind), at)
}

// SlruSegmentExists reports whether an SLRU segment exists.
func SlruSegmentExists(ctx context.Context, r Reader, kind key.SlruKind, segno uint32, at lsn.LSN) (bool, error) {
	segs, err := SlruSegments(ctx, r, kind, at)
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearch(segs, segno)
	return found, nil
}

// SlruSegmentSize is the number of pages of an existing SLRU segment.
func SlruSegmentSize(ctx context.Context, r Reader, kind key.SlruKind, segno uint32, at lsn.LSN) (uint32, error) {
	return sizeKey(ctx, r, key.SlruSegSize(kind, segno), at)
}

// TwoPhaseXids lists the prepared transactions in increasing xid order.
func TwoPhaseXids(ctx context.Context, r Reader, at lsn.LSN) ([]uint32, error) {
	return sortedSet(ctx, r, key.TwoPhaseDir(), at)
}

// sortedSet reads a directory that is a set of numbers, in increasing order.
func sortedSet(ctx context.Context, r Reader, k key.Key, at lsn.LSN) ([]uint32, error) {
	b, err := Image(ctx, r, k, at)
	if err != nil {
		return nil, err
	}
	dir, err := value.DecodeU32Set(b)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(dir)), nil
}

// TwoPhaseFile reads a prepared transaction's state (without CRC).
func TwoPhaseFile(ctx context.Context, r Reader, xid uint32, at lsn.LSN) ([]byte, error) {
	return Image(ctx, r, key.TwoPhaseFile(xid), at)
}

// Checkpoint reads the checkpoint the pageserver maintains.
func Checkpoint(ctx context.Context, r Reader, at lsn.LSN) (pgrecords.CheckPoint, error) {
	b, err := Image(ctx, r, key.Checkpoint(), at)
	if err != nil {
		return pgrecords.CheckPoint{}, err
	}
	return pgrecords.DecodeCheckPoint(b)
}

// ControlFile reads the stored pg_control.
func ControlFile(ctx context.Context, r Reader, at lsn.LSN) ([]byte, error) {
	return Image(ctx, r, key.ControlFile(), at)
}

func sortedDBs(dir value.DBDir) []value.DBKey {
	return slices.SortedFunc(maps.Keys(dir), func(a, b value.DBKey) int {
		return cmp.Or(cmp.Compare(a.Spc, b.Spc), cmp.Compare(a.DB, b.DB))
	})
}
