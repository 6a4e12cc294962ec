package tenant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/timeline"
)

// pendingImport is a timeline whose base backup is imported and which
// waits for the WAL up to the backup's end (ImportWAL).
type pendingImport struct {
	tl   *timeline.Timeline
	feed *feed
	tmp  string
	end  lsn.LSN
}

// Bootstrap creates a root timeline from a fresh initdb (PS §8.1): the
// data directory is imported at its shutdown checkpoint, and that
// checkpoint record is ingested, so a compute can start right after it.
func (m *Manager) Bootstrap(ctx context.Context, ttid id.TenantTimeline) (*Timeline, error) {
	if err := m.reserve(ttid); err != nil {
		return nil, err
	}
	defer m.release(ttid)
	initdbDir := m.timelineDir(ttid) + "-initdb" + tempSuffix
	if err := clearTemp(initdbDir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(initdbDir)
	started := time.Now()
	if err := m.initdb(ctx, initdbDir); err != nil {
		return nil, err
	}
	at, err := ingest.ImportLSN(os.DirFS(initdbDir))
	if err != nil {
		return nil, fmt.Errorf("initdb's data directory: %w", err)
	}
	p, err := m.importDir(ctx, ttid, initdbDir, at)
	if err != nil {
		return nil, err
	}
	// Ingest the shutdown checkpoint record itself.
	if err := p.importWAL(ctx, filepath.Join(initdbDir, "pg_wal"), at+1); err != nil {
		p.abort()
		return nil, err
	}
	t, err := m.finishImport(ctx, ttid, p)
	if err != nil {
		return nil, err
	}
	m.log.Info().Stringer("timeline", ttid).Stringer("last_record_lsn", lastRecord(t.Timeline)).
		Dur("took", time.Since(started)).Msg("timeline bootstrapped from initdb")
	return t, nil
}

func (m *Manager) initdb(ctx context.Context, dir string) error {
	if os.Geteuid() == 0 {
		return errors.New("initdb cannot run as root: run the pageserver as an unprivileged user")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(m.opts.PgBinDir, "initdb"),
		"--pgdata", dir, "--username", m.opts.InitdbSuperuser, "--encoding", "UTF8", "--locale", "C",
		"--no-instructions", "--no-sync", "--auth", "trust")
	// Nothing of the pageserver's environment (PGDATA, PGUSER ...) leaks in.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	if v, ok := os.LookupEnv("LD_LIBRARY_PATH"); ok {
		cmd.Env = append(cmd.Env, "LD_LIBRARY_PATH="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// Branch creates a timeline that starts as ancestor at lsn at (its last
// record LSN when at is 0; the ancestor is waited for up to the timeout,
// Timeline.ReadLSN).
func (m *Manager) Branch(ctx context.Context, ttid id.TenantTimeline, ancestor id.TimelineID, at lsn.LSN, wait time.Duration) (*Timeline, error) {
	// Reserved before the ancestor is looked up: DeleteTimeline refuses
	// while a timeline of the tenant is being created.
	if err := m.reserve(ttid); err != nil {
		return nil, err
	}
	defer m.release(ttid)
	parent, err := m.Get(id.TenantTimeline{Tenant: ttid.Tenant, Timeline: ancestor})
	if err != nil {
		return nil, fmt.Errorf("ancestor: %w", err)
	}
	// The branch point must be an LSN the ancestor serves reads at; a
	// refusal keeps ReadLSN's ErrLSNOutOfRange, so the gRPC API can say
	// OUT_OF_RANGE where the HTTP API says "invalid".
	if at, _, err = parent.ReadLSN(ctx, at, wait); err != nil {
		return nil, fmt.Errorf("%w: branch point: %w", ErrInvalid, err)
	}
	tmp := m.timelineDir(ttid) + tempSuffix
	if err := clearTemp(tmp); err != nil {
		return nil, err
	}
	opts := m.timelineOptions(ttid, parent)
	opts.AncestorLSN = at
	tl, err := timeline.Create(tmp, opts)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	tl.Close()
	t, err := m.publish(ttid, tmp, parent)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	m.log.Info().Stringer("timeline", ttid).Stringer("ancestor", ancestor).Stringer("at", at).Msg("branch created")
	return t, nil
}

// ImportResult says where an import stands.
type ImportResult struct {
	BaseLSN lsn.LSN
	// LastRecordLSN is where the timeline is now.
	LastRecordLSN lsn.LSN
	// Done: the timeline is active. Otherwise it waits for ImportWAL.
	Done bool
}

// ImportBasebackup creates a root timeline from a tar of a PostgreSQL 15
// data directory (PS §8.2): a vanilla pg_basebackup -Ft base.tar, or a
// cleanly shut-down cluster. Every file is stored at the backup's start
// LSN (from its backup_label, or the shutdown checkpoint), which must
// equal base if base is given. WAL up to end (if above the start) comes
// from the tar's own pg_wal when it has it (pg_basebackup -X fetch),
// otherwise from a following ImportWAL; until then the timeline is not
// active. With end at or below the start, the timeline is active at once
// and streams the rest from the safekeepers.
func (m *Manager) ImportBasebackup(ctx context.Context, ttid id.TenantTimeline, tarball io.Reader, base, end lsn.LSN) (ImportResult, error) {
	if err := m.reserve(ttid); err != nil {
		return ImportResult{}, err
	}
	waiting := false // for ImportWAL, which keeps ttid reserved
	defer func() {
		if !waiting {
			m.release(ttid)
		}
	}()
	upload := m.timelineDir(ttid) + "-upload" + tempSuffix
	if err := clearTemp(upload); err != nil {
		return ImportResult{}, err
	}
	defer os.RemoveAll(upload)
	started := time.Now()
	files, err := extractTar(tarball, upload)
	if err != nil {
		return ImportResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	at, err := ingest.ImportLSN(os.DirFS(upload))
	if err != nil {
		return ImportResult{}, fmt.Errorf("%w: not a PostgreSQL 15 data directory: %w", ErrInvalid, err)
	}
	if base != lsn.Invalid && base != at {
		return ImportResult{}, fmt.Errorf("%w: base_lsn %s, but the backup starts at %s", ErrInvalid, base, at)
	}
	p, err := m.importDir(ctx, ttid, upload, at)
	if err != nil {
		return ImportResult{}, err
	}
	if end > at {
		walDir := filepath.Join(upload, "pg_wal")
		if segs, _ := segmentFiles(walDir, p.feed.segSize); len(segs) == 0 {
			p.end, waiting = end, true
			m.mu.Lock()
			m.pending[ttid] = p
			m.mu.Unlock()
			m.log.Info().Stringer("timeline", ttid).Int("files", files).Stringer("base_lsn", at).Stringer("end_lsn", end).
				Dur("took", time.Since(started)).Msg("base backup imported; waiting for its WAL")
			return ImportResult{BaseLSN: at, LastRecordLSN: at}, nil
		}
		if err := p.importWAL(ctx, walDir, end); err != nil {
			p.abort()
			return ImportResult{}, err
		}
	}
	t, err := m.finishImport(ctx, ttid, p)
	if err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{BaseLSN: at, LastRecordLSN: lastRecord(t.Timeline), Done: true}
	m.log.Info().Stringer("timeline", ttid).Int("files", files).Stringer("base_lsn", at).
		Stringer("last_record_lsn", res.LastRecordLSN).Dur("took", time.Since(started)).Msg("base backup imported")
	return res, nil
}

// ImportWAL ingests a tar of WAL segment files (pg_basebackup's
// pg_wal.tar) into a timeline waiting for it after ImportBasebackup, up
// to the end given there, and activates it. start, if given, must be the
// timeline's last record LSN.
func (m *Manager) ImportWAL(ctx context.Context, ttid id.TenantTimeline, tarball io.Reader, start, end lsn.LSN) (ImportResult, error) {
	m.mu.Lock()
	p := m.pending[ttid]
	delete(m.pending, ttid)
	m.mu.Unlock()
	if p == nil {
		return ImportResult{}, fmt.Errorf("timeline %s is not waiting for WAL: %w", ttid, ErrNotFound)
	}
	keep := func() { // a bad request leaves the import waiting
		m.mu.Lock()
		m.pending[ttid] = p
		m.mu.Unlock()
	}
	last := lastRecord(p.tl)
	if start != lsn.Invalid && start != last {
		keep()
		return ImportResult{}, fmt.Errorf("%w: start_lsn %s, the timeline is at %s", ErrInvalid, start, last)
	}
	if end != lsn.Invalid && end != p.end {
		keep()
		return ImportResult{}, fmt.Errorf("%w: end_lsn %s, the base backup import said %s", ErrInvalid, end, p.end)
	}
	walDir := m.timelineDir(ttid) + "-wal" + tempSuffix
	if err := clearTemp(walDir); err != nil {
		keep()
		return ImportResult{}, err
	}
	defer os.RemoveAll(walDir)
	if _, err := extractTar(tarball, walDir); err != nil {
		keep()
		return ImportResult{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer m.release(ttid)
	if err := p.importWAL(ctx, walDir, p.end); err != nil {
		p.abort()
		return ImportResult{}, err
	}
	t, err := m.finishImport(ctx, ttid, p)
	if err != nil {
		return ImportResult{}, err
	}
	return ImportResult{BaseLSN: p.tl.InitDBLSN(), LastRecordLSN: lastRecord(t.Timeline), Done: true}, nil
}

// clearTemp removes a leftover temporary directory (or file) and makes
// sure its parent exists; whatever fills it creates the directory.
func clearTemp(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Dir(dir), 0o755)
}

// importDir creates a timeline in its temporary directory and imports the
// data directory dataDir into it at at (ingest.ImportLSN of it).
func (m *Manager) importDir(ctx context.Context, ttid id.TenantTimeline, dataDir string, at lsn.LSN) (*pendingImport, error) {
	tmp := m.timelineDir(ttid) + tempSuffix
	if err := clearTemp(tmp); err != nil {
		return nil, err
	}
	opts := m.timelineOptions(ttid, nil)
	opts.InitDBLSN, opts.PgVersion = at, pgVersion
	tl, err := timeline.Create(tmp, opts)
	if err != nil {
		return nil, err
	}
	p := &pendingImport{tl: tl, tmp: tmp}
	if _, err := ingest.Import(ctx, tl, os.DirFS(dataDir)); err != nil {
		p.abort()
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if p.feed, err = m.newFeed(tl); err != nil {
		p.abort()
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// finishImport makes an imported timeline durable and active.
func (m *Manager) finishImport(ctx context.Context, ttid id.TenantTimeline, p *pendingImport) (*Timeline, error) {
	if err := p.feed.flush(ctx); err != nil {
		p.abort()
		return nil, err
	}
	if err := p.tl.Flush(ctx); err != nil {
		p.abort()
		return nil, err
	}
	p.tl.Close()
	t, err := m.publish(ttid, p.tmp, nil)
	if err != nil {
		os.RemoveAll(p.tmp)
		return nil, err
	}
	return t, nil
}

func (p *pendingImport) abort() {
	p.tl.Close()
	os.RemoveAll(p.tmp)
}

// importWAL ingests the WAL segment files in dir from the timeline's last
// record until a record ends at or beyond end.
func (p *pendingImport) importWAL(ctx context.Context, dir string, end lsn.LSN) error {
	segs, err := segmentFiles(dir, p.feed.segSize)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	segSize := p.feed.segSize
	pos := lastRecord(p.tl)
	for pos < end {
		segno := pos.SegmentNumber(segSize)
		name, ok := segs[segno]
		if !ok {
			return fmt.Errorf("%w: the WAL ends at %s (no segment %d), before %s", ErrInvalid, pos, segno, end)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if uint64(len(b)) != segSize {
			return fmt.Errorf("%w: WAL segment %s has %d bytes, want %d", ErrInvalid, name, len(b), segSize)
		}
		err = p.feed.ingest(ctx, pos, b[pos.SegmentOffset(segSize):], end)
		done, _ := p.feed.in.LastRecordLSN()
		if err != nil {
			if done >= end && errors.Is(err, wal.ErrEndOfWAL) {
				return nil // zeros after the last record of the backup
			}
			return fmt.Errorf("%w: WAL segment %s: %w", ErrInvalid, name, err)
		}
		if done >= end {
			return nil
		}
		pos = pos.SegmentStart(segSize) + lsn.LSN(segSize)
	}
	return nil
}

// segmentFiles maps segment numbers to the WAL segment files in dir (the
// highest timeline when several have the same segment).
func segmentFiles(dir string, segSize uint64) (map[uint64]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	segs := map[uint64]string{}
	for _, e := range ents {
		if !e.Type().IsRegular() || !wal.IsSegmentFileName(e.Name()) {
			continue
		}
		_, segno, partial, err := wal.ParseSegmentFileName(e.Name(), segSize)
		if err != nil || partial {
			continue
		}
		if cur, ok := segs[segno]; !ok || e.Name() > cur {
			segs[segno] = e.Name()
		}
	}
	return segs, nil
}
