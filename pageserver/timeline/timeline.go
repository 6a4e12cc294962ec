// Package timeline is one timeline's versioned storage (PS §5): the
// (key, LSN) → value store that WAL ingest writes and page reads query.
//
// Commits go into an open in-memory layer. When it reaches
// CheckpointDistance (or on Freeze/Flush, or when older than
// CheckpointTimeout) it is frozen, and a background goroutine writes each
// frozen layer to an L0 delta layer file covering the whole key space,
// then advances disk_consistent_lsn and rewrites the metadata file. A read
// of (key, LSN) searches the open, frozen and file layers newest first and
// falls through to the ancestor timeline (§5.1, §5.5). Compact writes image
// layers where delta layers pile up (§5.3, image part only).
//
// Locking: Timeline.mu guards the LSN bookkeeping (last/prev record LSN,
// disk_consistent_lsn), the broken and closed states, and every
// replacement of the layer map. The layer map is an immutable snapshot
// behind an atomic pointer (layermap.go): readers never take Timeline.mu.
// The open in-memory layer has its own RWMutex; Commit appends to it while
// holding Timeline.mu, so a freeze never races with an append. Lock order:
// Timeline.mu, then memLayer.mu. Slow work (writing files, reading layers)
// happens outside Timeline.mu.
//
// Durability: a layer file is complete once it has its name; metadata is
// written after the layers it covers. On Open, temporary files and layers
// above disk_consistent_lsn are deleted and last_record_lsn restarts at
// disk_consistent_lsn: the caller re-ingests the WAL above it.
//
// Not done yet (later work): L0→L1 compaction (layers here are L0 deltas
// and image layers only, never overlapping in LSN), GC and the use of
// latest_gc_cutoff_lsn beyond refusing reads below it, remote storage,
// a page cache, and a layer map search structure better than a scan of
// the layers (fine for hundreds of layers).
package timeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// Defaults of Options (Neon's, PS §9.2).
const (
	DefaultCheckpointDistance   = 256 << 20
	DefaultCheckpointTimeout    = 10 * time.Minute
	DefaultImageThreshold       = 3
	DefaultCompactionTargetSize = 128 << 20
)

// maxFrozen bounds the frozen layers waiting for the flusher; Commit waits
// beyond it, which pushes back on ingest instead of growing memory.
const maxFrozen = 2

// Reconstructor turns an image and the records above it into a value (WAL
// redo, PS §4); compaction uses it to materialise images.
type Reconstructor interface {
	Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
}

// KeySpaceFunc returns the live key space at an LSN (PS §5.4): sorted or
// not, each range dense (every key in it exists). Sparse keys (aux files,
// replication origins) are not materialised into image layers yet, and
// ranges in the sparse part of the key space are ignored.
type KeySpaceFunc func(ctx context.Context, at lsn.LSN) ([]key.Range, error)

// Options configure a timeline; zero fields take the defaults.
type Options struct {
	TenantTimeline id.TenantTimeline
	PgVersion      uint32
	InitDBLSN      lsn.LSN
	// Ancestor is the parent timeline of a branch (nil for a root) and
	// AncestorLSN the branch point. On Open they come from the metadata;
	// Ancestor must be that parent, opened.
	Ancestor    *Timeline
	AncestorLSN lsn.LSN
	// CheckpointDistance is the size of the open layer (and the WAL
	// distance since the last freeze) at which it is frozen.
	CheckpointDistance uint64
	// CheckpointTimeout freezes an open layer this old; negative disables.
	CheckpointTimeout time.Duration
	// ImageThreshold is how many delta layers above the newest image of a
	// key range make Compact write a new image layer for it.
	ImageThreshold int
	// CompactionTargetSize is the size of an image layer's key range, in
	// keys of 8 KiB.
	CompactionTargetSize uint64
	Log                  zerolog.Logger
	Reconstructor        Reconstructor
	// NoSync skips fsync of layer and metadata files (directory entries
	// are still synced). Unsafe: for tests only.
	NoSync bool
	// BlockCache, if not nil, keeps the layer-file blocks reads fetch
	// (shared by every timeline of a pageserver).
	BlockCache *layer.BlockCache

	// createFile creates temporary files (tests inject write errors).
	createFile func(path string) (layer.File, error)
}

func (o *Options) setDefaults() {
	if o.CheckpointDistance == 0 {
		o.CheckpointDistance = DefaultCheckpointDistance
	}
	if o.CheckpointTimeout == 0 {
		o.CheckpointTimeout = DefaultCheckpointTimeout
	}
	if o.ImageThreshold <= 0 {
		o.ImageThreshold = DefaultImageThreshold
	}
	if o.CompactionTargetSize == 0 {
		o.CompactionTargetSize = DefaultCompactionTargetSize
	}
	if o.createFile == nil {
		o.createFile = layer.CreateFile
		if o.NoSync {
			o.createFile = func(path string) (layer.File, error) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return nil, err
				}
				return noSyncFile{f}, nil
			}
		}
	}
}

// Timeline is one timeline's storage. Commit is for one goroutine; the
// other methods are safe for concurrent use.
type Timeline struct {
	dir  string
	opts Options
	log  zerolog.Logger

	// Immutable after Create/Open.
	id          id.TenantTimeline
	ancestor    *Timeline
	ancestorLSN lsn.LSN
	initDBLSN   lsn.LSN
	pgVersion   uint32

	layers   atomic.Pointer[layerMap]
	meta     metaCache     // the newest value of each metadata key
	commits  atomic.Uint64 // Commits so far; written under mu
	closed   atomic.Bool
	gcCutoff atomic.Uint64 // lsn.LSN; written under mu, read by Get without it

	mu           sync.Mutex
	last, prev   lsn.LSN // last_record_lsn and the start of that record
	dcl          lsn.LSN // disk_consistent_lsn
	dclPrev      lsn.LSN // prev_record_lsn at dcl, as in the metadata
	lastFreezeAt lsn.LSN
	broken       error
	changed      chan struct{} // closed (and replaced) whenever the above change

	compactMu sync.Mutex // one Compact at a time
	// compacted is the layer map the last complete Compact pass started
	// from; under compactMu. While it is still the current one, no delta
	// layer came that could call for an image: the next pass has nothing
	// to do.
	compacted *layerMap
	flushWake chan struct{} // buffered(1): frozen layers are waiting
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the flusher has exited
}

// Create makes a new, empty timeline in dir: a root timeline at InitDBLSN
// or a branch of Ancestor at AncestorLSN. last_record_lsn starts at
// max(InitDBLSN, AncestorLSN).
//
// A root timeline accepts values at exactly InitDBLSN (the initial
// import, in as many Commits as needed, each with lastRecord = InitDBLSN)
// until something above it is committed or a flush makes it durable; a
// crash before that flush leaves a timeline that accepts the import again.
func Create(dir string, opts Options) (*Timeline, error) {
	opts.setDefaults()
	m := metadata{initDBLSN: opts.InitDBLSN, pgVersion: opts.PgVersion, gcCutoff: opts.InitDBLSN}
	if a := opts.Ancestor; a != nil {
		if err := a.checkBranchPoint(opts.AncestorLSN); err != nil {
			return nil, fmt.Errorf("create timeline %s: %w", opts.TenantTimeline, err)
		}
		if opts.PgVersion != 0 && opts.PgVersion != a.pgVersion {
			return nil, fmt.Errorf("create timeline %s: PostgreSQL %d, ancestor has %d", opts.TenantTimeline, opts.PgVersion, a.pgVersion)
		}
		m.ancestor = a.id.Timeline
		m.ancestorLSN = opts.AncestorLSN
		m.initDBLSN = a.initDBLSN
		m.pgVersion = a.pgVersion
		a.mu.Lock()
		m.gcCutoff = lsn.LSN(a.gcCutoff.Load())
		if a.last == opts.AncestorLSN {
			m.prevRecordLSN = a.prev
		}
		a.mu.Unlock()
	} else if opts.AncestorLSN != 0 {
		return nil, fmt.Errorf("create timeline %s: ancestor LSN %s without an ancestor", opts.TenantTimeline, opts.AncestorLSN)
	}
	m.diskConsistentLSN = max(m.initDBLSN, m.ancestorLSN)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create timeline %s: %w", opts.TenantTimeline, err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("create timeline %s: directory %s is not empty: %w", opts.TenantTimeline, dir, ErrExists)
	}
	if err := writeMetadata(dir, m, opts.createFile); err != nil {
		return nil, fmt.Errorf("create timeline %s: %w", opts.TenantTimeline, err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("create timeline %s: %w", opts.TenantTimeline, err)
	}
	openStart := m.diskConsistentLSN + 1
	if opts.Ancestor == nil {
		openStart = m.initDBLSN
	}
	return start(dir, opts, m, openStart, nil), nil
}

func (t *Timeline) checkBranchPoint(at lsn.LSN) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed.Load():
		return fmt.Errorf("ancestor %s: %w", t.id, ErrClosed)
	case at > t.last:
		return fmt.Errorf("branch point %s is above the ancestor's last record LSN %s", at, t.last)
	case at < t.ancestorLSN:
		return fmt.Errorf("branch point %s is below the ancestor's own ancestor LSN %s", at, t.ancestorLSN)
	case at < lsn.LSN(t.gcCutoff.Load()):
		return fmt.Errorf("branch point %s is below the ancestor's GC cutoff %s", at, lsn.LSN(t.gcCutoff.Load()))
	}
	return nil
}

// Open loads a timeline from dir after a restart: last_record_lsn is
// disk_consistent_lsn, and the WAL above it must be committed again.
func Open(dir string, opts Options) (*Timeline, error) {
	opts.setDefaults()
	m, err := readMetadata(dir)
	if err != nil {
		return nil, fmt.Errorf("open timeline %s: %w", opts.TenantTimeline, err)
	}
	switch a := opts.Ancestor; {
	case m.ancestor.IsZero() && a != nil:
		return nil, fmt.Errorf("open timeline %s: an ancestor given for a root timeline", opts.TenantTimeline)
	case !m.ancestor.IsZero() && (a == nil || a.id.Timeline != m.ancestor):
		return nil, fmt.Errorf("open timeline %s: its ancestor %s must be given, opened", opts.TenantTimeline, m.ancestor)
	case opts.AncestorLSN != 0 && opts.AncestorLSN != m.ancestorLSN:
		return nil, fmt.Errorf("open timeline %s: ancestor LSN %s given, metadata says %s", opts.TenantTimeline, opts.AncestorLSN, m.ancestorLSN)
	}
	hist, err := loadLayers(dir, m.diskConsistentLSN, opts.BlockCache, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("open timeline %s: %w", opts.TenantTimeline, err)
	}
	openStart := m.diskConsistentLSN + 1
	if m.ancestor.IsZero() && len(hist) == 0 && m.diskConsistentLSN == m.initDBLSN {
		openStart = m.initDBLSN // the import never reached disk: accept it again
	}
	return start(dir, opts, m, openStart, hist), nil
}

// loadLayers lists the layer files of dir, deleting temporary files and
// layers in the future of dcl (PS §5.7).
func loadLayers(dir string, dcl lsn.LSN, cache *layer.BlockCache, log zerolog.Logger) ([]*historic, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var hist []*historic
	removed := false
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		if name == MetadataFile || !e.Type().IsRegular() {
			continue
		}
		if strings.HasSuffix(name, layer.TempSuffix) {
			log.Info().Str("file", path).Msg("removing temporary file")
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			removed = true
			continue
		}
		n, err := layer.ParseName(name)
		if err != nil {
			log.Warn().Str("file", path).Msg("ignoring a file that is not a layer")
			continue
		}
		if future := n.LSNs.End > dcl+1; future {
			log.Info().Str("file", path).Stringer("disk_consistent_lsn", dcl).Msg("removing layer in the future of disk_consistent_lsn")
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			removed = true
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		hist = append(hist, &historic{name: n, path: path, size: info.Size(), cache: cache})
	}
	if removed {
		if err := durable.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	return hist, nil
}

func start(dir string, opts Options, m metadata, openStart lsn.LSN, hist []*historic) *Timeline {
	t := &Timeline{
		dir:          dir,
		opts:         opts,
		log:          opts.Log.With().Str("timeline", opts.TenantTimeline.String()).Logger(),
		id:           opts.TenantTimeline,
		ancestor:     opts.Ancestor,
		ancestorLSN:  m.ancestorLSN,
		initDBLSN:    m.initDBLSN,
		pgVersion:    m.pgVersion,
		last:         m.diskConsistentLSN,
		prev:         m.prevRecordLSN,
		dcl:          m.diskConsistentLSN,
		dclPrev:      m.prevRecordLSN,
		lastFreezeAt: m.diskConsistentLSN,
		changed:      make(chan struct{}),
		flushWake:    make(chan struct{}, 1),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	open := &memRef{mem: newMemLayer(newChunkPool(opts.CheckpointDistance)), lsns: layer.LSNRange{Start: openStart, End: lsn.Max}}
	t.gcCutoff.Store(uint64(m.gcCutoff))
	t.layers.Store(newLayerMap(open, nil, hist))
	go t.flushLoop()
	return t
}

// Close stops background work and releases the layer files. It does not
// flush: call Flush first for that. Reads racing with Close may fail.
func (t *Timeline) Close() error {
	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		return nil
	}
	t.closed.Store(true)
	t.notifyLocked()
	t.mu.Unlock()
	close(t.stop)
	<-t.done
	for _, h := range t.layers.Load().historic {
		h.close()
	}
	return nil
}

// notifyLocked wakes everyone waiting for a change; t.mu is held.
func (t *Timeline) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// ID is the tenant and timeline id.
func (t *Timeline) ID() id.TenantTimeline { return t.id }

// Ancestor is the parent timeline and the branch point (nil, 0 for a root).
func (t *Timeline) Ancestor() (*Timeline, lsn.LSN) { return t.ancestor, t.ancestorLSN }

// InitDBLSN is the LSN of the initial import.
func (t *Timeline) InitDBLSN() lsn.LSN { return t.initDBLSN }

// PgVersion is the PostgreSQL major version.
func (t *Timeline) PgVersion() uint32 { return t.pgVersion }

// LastRecordLSN is the end of the last committed record and its start.
func (t *Timeline) LastRecordLSN() (last, prev lsn.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last, t.prev
}

// DiskConsistentLSN is the LSN up to which everything is in layer files.
func (t *Timeline) DiskConsistentLSN() lsn.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dcl
}

// GCCutoff is the lowest LSN still readable.
func (t *Timeline) GCCutoff() lsn.LSN { return lsn.LSN(t.gcCutoff.Load()) }

// Broken is the error that stopped flushing, or nil.
func (t *Timeline) Broken() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.broken
}

// WaitLSN waits until last_record_lsn reaches l, for at most timeout
// (no limit when timeout ≤ 0) or until ctx ends.
func (t *Timeline) WaitLSN(ctx context.Context, l lsn.LSN, timeout time.Duration) error {
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		t.mu.Lock()
		last, broken, ch := t.last, t.broken, t.changed
		t.mu.Unlock()
		switch {
		case last >= l:
			return nil
		case t.closed.Load():
			return fmt.Errorf("wait for LSN %s on timeline %s: %w", l, t.id, ErrClosed)
		case broken != nil:
			return fmt.Errorf("wait for LSN %s on timeline %s (last record LSN %s): %w", l, t.id, last, broken)
		}
		select {
		case <-ch:
		case <-expired:
			return fmt.Errorf("%w: timeline %s: waited %s for LSN %s, last record LSN is %s", ErrWaitLSNTimeout, t.id, timeout, l, last)
		case <-ctx.Done():
			return fmt.Errorf("wait for LSN %s on timeline %s (last record LSN %s): %w", l, t.id, last, ctx.Err())
		}
	}
}

// LayerInfo describes one layer for metrics and status pages.
type LayerInfo struct {
	Name     string // the file name, or "inmemory-<start>-<end>"
	Kind     layer.Kind
	InMemory bool // open or frozen in-memory layer (Kind is KindDelta)
	Keys     key.Range
	LSNs     layer.LSNRange // an open layer ends at lsn.Max
	Size     int64
}

// Layers lists the layers, in-memory ones first.
func (t *Timeline) Layers() []LayerInfo {
	lm := t.layers.Load()
	var out []LayerInfo
	for _, m := range append([]*memRef{lm.open}, lm.frozen...) {
		size, _ := m.mem.info()
		out = append(out, LayerInfo{
			Name: fmt.Sprintf("inmemory-%016X-%016X", uint64(m.lsns.Start), uint64(m.lsns.End)),
			Kind: layer.KindDelta, InMemory: true, Keys: key.Full, LSNs: m.lsns, Size: int64(size),
		})
	}
	for _, h := range lm.historic {
		out = append(out, LayerInfo{Name: filepath.Base(h.path), Kind: h.name.Kind, Keys: h.name.Keys, LSNs: h.name.LSNs, Size: h.size})
	}
	return out
}

var errStopped = errors.New("stopped")

// noSyncFile is a file whose Sync does nothing (Options.NoSync).
type noSyncFile struct{ *os.File }

func (noSyncFile) Sync() error { return nil }
