// Package basebackup writes a full basebackup of a timeline at an LSN as a
// tar stream from which unmodified PostgreSQL 15 starts with no recovery
// and continues writing WAL exactly at that LSN (PS §7.6).
//
// Neon's own basebackup leaves pg_control pointing at no checkpoint record
// and relies on its patched server to start from neon.signal (PS §7.3). A
// vanilla server needs a real shutdown checkpoint record, so this package
// writes one itself at P = wal.SkipPageHeader(L) into a synthetic WAL segment and
// points pg_control at it: the server then sees a clean shutdown and
// starts writing its own WAL right after our record.
//
// Guarantees:
//   - Relations are streamed block by block; nothing larger than the one
//     synthetic WAL segment is held in memory.
//   - pg_control and the WAL segment are the last entries, and on any error
//     Write returns without writing the tar's end-of-archive blocks, so a
//     broken stream never extracts to a startable data directory.
//   - When pg_control says data_checksum_version != 0, every non-new
//     relation page gets its pd_checksum recomputed: redo does not maintain
//     it and full-page images carry stale ones (PS §7.6 caveats).
//
// Not written: replication slots, logical snapshots, replication origins
// and pgstat (none are in the WAL of a vanilla primary), pg_commit_ts
// content. User tablespaces are refused.
package basebackup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/value"
)

// Source is what a basebackup reads: a key at an LSN, as
// pageserver/timeline.Timeline and ingesttest.MemStore offer.
type Source = datadir.Reader

// Reconstructor rebuilds a page from what Source returned: a redo.Pool,
// or neonredo.Reconstructor when no PostgreSQL records are involved.
type Reconstructor interface {
	Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
}

// Options tune a basebackup.
type Options struct {
	// PrevRecord is the start LSN of the record that ends at the backup
	// LSN; it becomes xl_prev of the synthetic checkpoint record. 0 when
	// unknown (a backup below the last record LSN): PostgreSQL accepts it
	// for a checkpoint read by location, but WAL readers going through it
	// sequentially would complain.
	PrevRecord lsn.LSN
	// PostgresConf is the content of postgresql.conf. Vanilla PostgreSQL
	// refuses to start without the file; the compute adds its settings.
	PostgresConf string
	// HBAConf is the content of pg_hba.conf; empty means DefaultHBAConf.
	HBAConf string
	// Now is the time written into pg_control and the checkpoint; zero
	// means time.Now().
	Now time.Time
}

// DefaultHBAConf is Neon's sample pg_hba.conf: trust for local
// connections, including replication.
const DefaultHBAConf = `local all         all              trust
local replication all              trust
host  all         all 127.0.0.1/32 trust
host  replication all 127.0.0.1/32 trust
host  all         all ::1/128      trust
host  replication all ::1/128      trust
`

// ErrUnsupported is wrapped when the stored cluster cannot be backed up
// (pgcontrol.ErrUnsupported for a pg_control of another version or build)
// (a PostgreSQL version other than 15, a user tablespace).
var ErrUnsupported = errors.New("unsupported")

// Write writes a full basebackup of the data at `at` as a tar stream to w.
// `at` must be a record boundary (the end of a record, as the store's last
// record LSN is); the server starts at wal.SkipPageHeader(at). src and rc are used
// from several goroutines at once (relation blocks are rebuilt ahead).
func Write(ctx context.Context, w io.Writer, src Source, rc Reconstructor, at lsn.LSN, opts Options) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.HBAConf == "" {
		opts.HBAConf = DefaultHBAConf
	}
	stored, err := datadir.ControlFile(ctx, src, at)
	if err != nil {
		return fmt.Errorf("basebackup at %s: read pg_control: %w", at, err)
	}
	ctl, err := pgcontrol.Parse(stored)
	if err != nil {
		return fmt.Errorf("basebackup at %s: stored %w", at, err)
	}
	cp, err := datadir.Checkpoint(ctx, src, at)
	if err != nil {
		return fmt.Errorf("basebackup at %s: read the checkpoint: %w", at, err)
	}

	b := &builder{
		ctx: ctx, tw: tar.NewWriter(w), src: src, rc: rc, at: at,
		now: opts.Now, checksums: ctl.Checksums(),
		page: make([]byte, blockSize),
	}
	if err := b.writeAll(ctl, cp, opts); err != nil {
		return fmt.Errorf("basebackup at %s: %w", at, err)
	}
	// Only a complete backup gets its end-of-archive blocks.
	if err := b.tw.Close(); err != nil {
		return fmt.Errorf("basebackup at %s: finish the tar: %w", at, err)
	}
	return nil
}

// writeAll writes every entry, pg_control and WAL last.
func (b *builder) writeAll(ctl pgcontrol.Control, cp checkpoint, opts Options) error {
	for _, d := range directories {
		if err := b.dir(d); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, content string }{
		{"postgresql.conf", opts.PostgresConf},
		{"postgresql.auto.conf", ""},
		{"pg_hba.conf", opts.HBAConf},
		{"pg_ident.conf", ""},
	} {
		if err := b.file(f.name, []byte(f.content)); err != nil {
			return err
		}
	}
	if err := b.slrus(uint32(cp.NextXid)); err != nil {
		return err
	}
	if err := b.databases(); err != nil {
		return err
	}
	if err := b.twoPhase(); err != nil {
		return err
	}

	p := wal.SkipPageHeader(b.at, ctl.SegmentSize())
	shutdown := shutdownCheckpoint(cp, p, b.now)
	segs, err := walSegments(p, opts.PrevRecord, shutdown, ctl.SystemID(), ctl.SegmentSize())
	if err != nil {
		return err
	}
	if err := b.file("global/pg_control", ctl.ShutdownAt(p, shutdown.Encode(), b.now)); err != nil {
		return err
	}
	for _, s := range segs {
		if err := b.file("pg_wal/"+s.name, s.data); err != nil {
			return err
		}
	}
	return nil
}

// directories are the ones PostgreSQL 15 needs, parents first (PS §7.2).
var directories = []string{
	"global", "pg_wal", "pg_wal/archive_status", "pg_commit_ts", "pg_dynshmem",
	"pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans", "pg_twophase",
	"pg_multixact", "pg_multixact/members", "pg_multixact/offsets", "base",
	"pg_replslot", "pg_tblspc", "pg_stat", "pg_stat_tmp", "pg_xact",
	"pg_logical", "pg_logical/snapshots", "pg_logical/mappings",
}

// builder holds the state of one Write.
type builder struct {
	ctx       context.Context
	tw        *tar.Writer
	src       Source
	rc        Reconstructor
	at        lsn.LSN
	now       time.Time
	checksums bool
	page      []byte // one block, reused
	batch     []byte // readBatch relation blocks, reused
}

func (b *builder) dir(name string) error {
	err := b.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700, ModTime: b.now, Format: tar.FormatGNU,
	})
	if err != nil {
		return fmt.Errorf("tar directory %s: %w", name, err)
	}
	return nil
}

// begin starts a file entry of size bytes; its content follows with Write.
func (b *builder) begin(name string, size int64) error {
	err := b.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: b.now, Format: tar.FormatGNU,
	})
	if err != nil {
		return fmt.Errorf("tar file %s: %w", name, err)
	}
	return nil
}

func (b *builder) file(name string, content []byte) error {
	if err := b.begin(name, int64(len(content))); err != nil {
		return err
	}
	if _, err := b.tw.Write(content); err != nil {
		return fmt.Errorf("tar file %s: %w", name, err)
	}
	return nil
}
