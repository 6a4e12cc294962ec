// Package ingest turns decoded PostgreSQL 15 WAL records into versioned
// key-value entries (PS §2.5–§2.6): page images and records for every
// block a record touches, and the metadata PostgreSQL keeps outside
// relation pages — database and relation directories, relation and SLRU
// sizes, CLOG and multixact updates, two-phase state, relation maps,
// replication origins and the checkpoint (nextXid, nextOid, nextMulti ...).
//
// Every value of a record is stored at the record's end LSN, except the
// rare first of two versions one record gives one page (see putEarly),
// which goes one byte below it. Records are
// collected into a batch that is committed to the Store every
// Options.MaxBatchRecords records, once Options.MaxBatchBytes of values are
// pending, when Flush is called (at the end of each received message), and
// before a record that must read pages back (CREATE DATABASE by file copy).
//
// Invariants:
//   - The Ingester is the only writer of its Store. It caches the latest
//     relation sizes and sees the metadata of its uncommitted batch through
//     an overlay, so metadata reads during ingest always see the state after
//     the previous record.
//   - A batch is committed whole, with last_record_lsn = the end of its last
//     record and prev_record_lsn = that record's start (the xl_prev a
//     record written next would carry).
//   - Nothing a record implies is silently dropped: what cannot be stored
//     (user tablespaces, keys outside the representable key space, malformed
//     payloads) fails ingest with an error naming the record's LSN. After an
//     error the Ingester refuses further records; make a new one with New,
//     which resumes from what was committed.
//   - Where vanilla PostgreSQL 15 and Neon differ, PostgreSQL's redo is
//     followed: heap flags at vanilla offsets, FPIs decompressed here,
//     SMGR_CREATE of an existing fork and truncation to a larger size are
//     no-ops, checkpoint records also advance nextXid/nextMulti and
//     oldestMulti, multixact truncation also drops offsets segments, and
//     multixact creation also sets the next multixact's offset (15.15+).
//   - nextXid is tracked exactly (PostgreSQL's AdvanceNextFullTransactionIdPastXid,
//     not Neon's rounding to 1024), so a vanilla server started from a
//     basebackup finds the CLOG page of its nextXid (PS §7.7).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// Store is the versioned key-value store of one timeline.
type Store interface {
	// Get reads a key at an LSN; metadata keys always come back as an image.
	Get(ctx context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error)
	// Commit stores entries (in LSN order; a later entry for the same key
	// and LSN replaces an earlier one) and moves last_record_lsn and
	// prev_record_lsn. It copies what it keeps: the caller reuses the
	// entries' bytes afterwards.
	Commit(entries []value.Entry, lastRecord, prevRecord lsn.LSN) error
	// LastRecordLSN is what the last Commit set.
	LastRecordLSN() (last, prev lsn.LSN)
}

// PageReader reconstructs a full page at an LSN (WAL redo included). Only
// CREATE DATABASE ... STRATEGY FILE_COPY needs it, to copy the source
// database's pages.
type PageReader interface {
	Page(ctx context.Context, k key.Key, at lsn.LSN) ([]byte, error)
}

// Options tune batching; zero fields take the defaults (Neon's).
type Options struct {
	// MaxBatchRecords commits after this many records (default 100).
	MaxBatchRecords int
	// MaxBatchBytes commits once this many bytes of values are pending
	// (default 8 MiB).
	MaxBatchBytes int
}

// Defaults of Options.
const (
	DefaultMaxBatchRecords = 100
	DefaultMaxBatchBytes   = 8 << 20
)

// Stats count what ingest did, for metrics and tests.
type Stats struct {
	Records          uint64 // records ingested
	Entries          uint64 // values stored
	Commits          uint64 // batches committed
	GapPagesZeroed   uint64 // zero pages written to fill relation gaps
	VMClearsSkipped  uint64 // VM bit clears for VM pages that do not exist (Neon logs these as critical)
	RelDropsNotFound uint64 // forks listed in a commit record that did not exist (normal: PG lists all)
}

// ErrBroken is wrapped by every call after an ingest error.
var ErrBroken = errors.New("ingester stopped after an error")

// Ingester ingests the records of one timeline into its Store.
type Ingester struct {
	store Store
	pages PageReader
	opts  Options

	committed     lsn.LSN // the Store's last_record_lsn
	lastEnd       lsn.LSN // end and start of the last record ingested
	lastStart     lsn.LSN
	checkpoint    pgrecords.CheckPoint
	checkpointMod bool // changed by the current record

	// The batch: entries to commit, the metadata among them (latest value
	// per key, what reads see), its record count and size.
	entries      []value.Entry
	pending      map[key.Key][]byte
	batchRecords int
	batchBytes   int

	// The record being ingested.
	rec     *walrecord.Record
	at      lsn.LSN
	written recordKeys    // index in entries of each key written by rec
	early   []value.Entry // rec's values one byte below its end LSN, see putEarly
	rawCopy []byte        // rec.Raw, copied once for its Postgres values
	// rawBuf holds the batch's record copies; reused after each commit
	// (Store.Commit keeps no reference), so ingest allocates no memory
	// per record.
	rawBuf []byte

	// relSizes caches the size of relation forks known to exist (the
	// latest state, batch included). Bounded by clearing.
	relSizes map[key.Rel]uint32

	zeroPage []byte // read-only
	stats    Stats
	err      error
}

// maxCachedRels bounds relSizes; past it the cache starts over.
const maxCachedRels = 100_000

// New makes an Ingester that continues from the Store's last record, with
// the checkpoint stored there. The Store must hold a timeline's initial
// state (see Import).
func New(ctx context.Context, store Store, pages PageReader, opts Options) (*Ingester, error) {
	if opts.MaxBatchRecords <= 0 {
		opts.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	last, prev := store.LastRecordLSN()
	if last == lsn.Invalid {
		return nil, errors.New("ingest: the store is empty: import a data directory first")
	}
	in := &Ingester{
		store: store, pages: pages, opts: opts,
		committed: last, lastEnd: last, lastStart: prev,
		pending:  make(map[key.Key][]byte),
		relSizes: make(map[key.Rel]uint32),
		zeroPage: make([]byte, walrecord.BlockSize),
	}
	cp, err := datadir.Checkpoint(ctx, in.reader(), last)
	if err != nil {
		return nil, fmt.Errorf("ingest: read the checkpoint at %s: %w", last, err)
	}
	in.checkpoint = cp
	return in, nil
}

// LastRecordLSN is the end of the last record ingested (committed or not)
// and that record's start.
func (in *Ingester) LastRecordLSN() (end, start lsn.LSN) { return in.lastEnd, in.lastStart }

// Checkpoint is the checkpoint as of the last record ingested.
func (in *Ingester) Checkpoint() pgrecords.CheckPoint { return in.checkpoint }

// Stats returns the counters.
func (in *Ingester) Stats() Stats { return in.stats }

// Ingest ingests one record. rec and the bytes it aliases are not kept.
func (in *Ingester) Ingest(ctx context.Context, rec *walrecord.Record) error {
	if in.err != nil {
		return fmt.Errorf("%w: %w", ErrBroken, in.err)
	}
	if rec.EndLSN <= in.lastEnd {
		return fmt.Errorf("ingest: record %s..%s does not follow the last one ending at %s", rec.StartLSN, rec.EndLSN, in.lastEnd)
	}
	if err := in.ingest(ctx, rec); err != nil {
		in.err = fmt.Errorf("ingest WAL record %s..%s (%s, info 0x%02X, xid %d): %w",
			rec.StartLSN, rec.EndLSN, walrecord.RmgrName(rec.Header.RmID), rec.Header.Info, rec.Header.XID, err)
		return in.err
	}
	if in.batchRecords >= in.opts.MaxBatchRecords || in.batchBytes >= in.opts.MaxBatchBytes {
		return in.Flush(ctx)
	}
	return nil
}

func (in *Ingester) ingest(ctx context.Context, rec *walrecord.Record) error {
	if needsCommittedPages(rec) {
		if err := in.Flush(ctx); err != nil {
			return err
		}
	}
	in.rec, in.at, in.rawCopy = rec, rec.EndLSN, nil
	in.written.reset()
	in.early = in.early[:0]
	recStart := len(in.entries)
	defer func() { in.rec = nil }()

	if xid := rec.Header.XID; xid != pgrecords.InvalidTransactionID {
		in.checkpointMod = in.checkpoint.AdvanceNextXid(xid)
	}
	if err := in.metadata(ctx, rec); err != nil {
		return err
	}
	if err := in.blocks(ctx, rec); err != nil {
		return err
	}
	if in.checkpointMod {
		in.checkpointMod = false
		if err := in.put(key.Checkpoint(), value.NewImage(in.checkpoint.Encode())); err != nil {
			return err
		}
	}
	if len(in.early) > 0 {
		in.entries = slices.Insert(in.entries, recStart, in.early...)
		clear(in.early)
	}
	in.lastEnd, in.lastStart = rec.EndLSN, rec.StartLSN
	in.batchRecords++
	in.stats.Records++
	return nil
}

// Flush commits the pending batch.
func (in *Ingester) Flush(ctx context.Context) error {
	if in.err != nil {
		return fmt.Errorf("%w: %w", ErrBroken, in.err)
	}
	if in.lastEnd == in.committed {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.store.Commit(in.entries, in.lastEnd, in.lastStart); err != nil {
		in.err = fmt.Errorf("ingest: commit up to %s: %w", in.lastEnd, err)
		return in.err
	}
	in.committed = in.lastEnd
	clear(in.entries) // drop references to pages and records
	in.entries = in.entries[:0]
	in.rawBuf = in.rawBuf[:0]
	clear(in.pending)
	in.batchRecords, in.batchBytes = 0, 0
	in.stats.Commits++
	return nil
}

// put stores v at k at the current record's LSN. A key written twice by
// one record keeps the later value if it initialises the key (a gap page
// that the record then writes); anything else cannot be expressed as one
// version per (key, LSN) and is refused.
func (in *Ingester) put(k key.Key, v value.Value) error {
	if !k.IsData() && !v.IsImage {
		return fmt.Errorf("metadata key %s written with a record", k)
	}
	if !k.Representable() {
		return fmt.Errorf("key %s is outside the representable key space (tablespace OIDs above 65535 are not supported)", k)
	}
	if i, ok := in.written.get(k); ok {
		if !v.WillInit() && k.IsData() {
			return fmt.Errorf("two versions of %s in one record, the later one needing the earlier", k)
		}
		in.entries[i].Value = v
	} else {
		in.written.add(k, len(in.entries))
		in.entries = append(in.entries, value.Entry{Key: k, LSN: in.at, Value: v})
		in.stats.Entries++
	}
	if !k.IsData() {
		in.pending[k] = v.Image
	}
	in.batchBytes += v.MaxEncodedLen() + key.Size
	return nil
}

// putEarly stores v at k one byte below the current record's end LSN,
// for the rare record that must leave two versions of one page: the page
// then holds both, applied in order, at every LSN a reader can ask for
// (readers ask at record boundaries, which are 8-aligned). Only data keys.
func (in *Ingester) putEarly(k key.Key, v value.Value) error {
	if !k.IsData() {
		return fmt.Errorf("metadata key %s written below its record's LSN", k)
	}
	if _, ok := in.written.get(k); ok {
		return fmt.Errorf("%s written below its record's LSN after a version at it", k)
	}
	in.early = append(in.early, value.Entry{Key: k, LSN: in.at - 1, Value: v})
	in.stats.Entries++
	in.batchBytes += v.MaxEncodedLen() + key.Size
	return nil
}

// reader reads the latest state: the batch's metadata, else the Store at
// its last committed record. The LSN asked for is ignored; ingest only
// ever needs the latest state.
func (in *Ingester) reader() datadir.Reader { return overlay{in} }

type overlay struct{ in *Ingester }

func (o overlay) Get(ctx context.Context, k key.Key, _ lsn.LSN) (value.Reconstruction, error) {
	if b, ok := o.in.pending[k]; ok {
		return value.Reconstruction{Key: k, LSN: o.in.at, HasImage: true, Image: b, ImageLSN: o.in.at}, nil
	}
	return o.in.store.Get(ctx, k, o.in.committed)
}

// raw is the current record's bytes, copied once and shared by its values.
func (in *Ingester) raw() []byte {
	if in.rawCopy == nil {
		start := len(in.rawBuf)
		in.rawBuf = append(in.rawBuf, in.rec.Raw...)
		in.rawCopy = in.rawBuf[start:len(in.rawBuf):len(in.rawBuf)]
	}
	return in.rawCopy
}

// cloneBytes copies payload bytes that alias the record.
func cloneBytes(b []byte) []byte { return append([]byte{}, b...) }
