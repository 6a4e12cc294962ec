package timeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/safekeeper/control"
)

// Errors callers branch on.
var (
	ErrNotFound     = errors.New("timeline not found")
	ErrExists       = errors.New("timeline already exists")
	ErrTombstone    = errors.New("timeline was deleted recently")
	ErrNotLoaded    = errors.New("timeline exists on disk but failed to load")
	tombstoneMaxAge = 24 * time.Hour
)

// Registry is every timeline of a safekeeper, loaded from its data directory
// (layout of SK §4.0: <datadir>/<tenant>/<timeline>/).
type Registry struct {
	datadir string
	cfg     Config
	log     zerolog.Logger

	mu         sync.Mutex
	timelines  map[id.TenantTimeline]*Timeline
	broken     map[id.TenantTimeline]error // directories that failed to load
	tombstones map[id.TenantTimeline]time.Time
}

// Load opens every timeline under datadir. A timeline that fails to load is
// logged and left untouched on disk; creating it again is refused.
func Load(datadir string, cfg Config, log zerolog.Logger) (*Registry, error) {
	if cfg.ControlFileSaveInterval == 0 {
		cfg.ControlFileSaveInterval = 300 * time.Second
	}
	r := &Registry{
		datadir: datadir, cfg: cfg, log: log,
		timelines:  make(map[id.TenantTimeline]*Timeline),
		broken:     make(map[id.TenantTimeline]error),
		tombstones: make(map[id.TenantTimeline]time.Time),
	}
	if err := os.MkdirAll(filepath.Join(datadir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("create %s/tmp: %w", datadir, err)
	}
	// Half-created timelines never got their final name; drop them.
	if err := removeContents(filepath.Join(datadir, "tmp")); err != nil {
		return nil, err
	}
	tenants, err := os.ReadDir(datadir)
	if err != nil {
		return nil, fmt.Errorf("read data directory: %w", err)
	}
	for _, te := range tenants {
		tenant, err := id.Parse(te.Name())
		if err != nil || !te.IsDir() {
			continue
		}
		tls, err := os.ReadDir(filepath.Join(datadir, te.Name()))
		if err != nil {
			return nil, fmt.Errorf("read tenant directory %s: %w", te.Name(), err)
		}
		for _, tle := range tls {
			timeline, err := id.Parse(tle.Name())
			if err != nil || !tle.IsDir() {
				continue
			}
			ttid := id.TenantTimeline{Tenant: tenant, Timeline: timeline}
			t, err := r.openDir(ttid)
			if err != nil {
				log.Error().Err(err).Str("timeline", ttid.String()).Msg("timeline failed to load; left as is on disk")
				r.broken[ttid] = err
				continue
			}
			r.timelines[ttid] = t
		}
	}
	return r, nil
}

func (r *Registry) dir(ttid id.TenantTimeline) string {
	return filepath.Join(r.datadir, ttid.Tenant.String(), ttid.Timeline.String())
}

func (r *Registry) openDir(ttid id.TenantTimeline) (*Timeline, error) {
	dir := r.dir(ttid)
	state, err := control.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load control file of %s: %w", ttid, err)
	}
	return open(dir, ttid, state, &r.cfg)
}

// Get returns a loaded timeline.
func (r *Registry) Get(ttid id.TenantTimeline) (*Timeline, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.timelines[ttid]; ok {
		return t, nil
	}
	if err, ok := r.broken[ttid]; ok {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotLoaded, ttid, err)
	}
	if _, ok := r.tombstones[ttid]; ok {
		return nil, fmt.Errorf("%w: %s", ErrTombstone, ttid)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, ttid)
}

// List returns every loaded timeline, sorted by id.
func (r *Registry) List() []*Timeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Timeline, 0, len(r.timelines))
	for _, t := range r.timelines {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TTID.String() < out[j].TTID.String() })
	return out
}

// CreateRequest describes a timeline to create.
type CreateRequest struct {
	TTID       id.TenantTimeline
	Mconf      pamsg.Configuration
	PgVersion  uint32
	SystemID   uint64
	WalSegSize uint32
	// StartLSN and CommitLSN are 0 for a timeline created by a proposer's
	// greeting; the first election fills them in (SK §4.1 initial values).
	StartLSN  lsn.LSN
	CommitLSN lsn.LSN
}

// Create makes a new timeline atomically (SK §4.0): its directory appears
// under its final name only once its control file is durable.
func (r *Registry) Create(req CreateRequest) (*Timeline, error) {
	if req.PgVersion == 0 || req.WalSegSize == 0 {
		return nil, fmt.Errorf("create timeline %s: PostgreSQL version and WAL segment size must be known (got %d, %d)", req.TTID, req.PgVersion, req.WalSegSize)
	}
	if req.CommitLSN == 0 {
		req.CommitLSN = req.StartLSN
	}
	if req.CommitLSN < req.StartLSN {
		return nil, fmt.Errorf("create timeline %s: commit LSN %v is before start LSN %v", req.TTID, req.CommitLSN, req.StartLSN)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.timelines[req.TTID]; ok {
		return nil, fmt.Errorf("%w: %s", ErrExists, req.TTID)
	}
	if err, ok := r.broken[req.TTID]; ok {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotLoaded, req.TTID, err)
	}
	if ts, ok := r.tombstones[req.TTID]; ok && time.Since(ts) < tombstoneMaxAge {
		return nil, fmt.Errorf("%w: %s was deleted at %s", ErrTombstone, req.TTID, ts.Format(time.RFC3339))
	}
	state := &control.State{
		Tenant: req.TTID.Tenant, Timeline: req.TTID.Timeline,
		Mconf:            req.Mconf.Clone(),
		Server:           control.ServerInfo{PgVersion: req.PgVersion, SystemID: req.SystemID, WalSegSize: req.WalSegSize},
		TimelineStartLSN: req.StartLSN, LocalStartLSN: req.StartLSN,
		CommitLSN: req.CommitLSN, BackupLSN: req.StartLSN, PeerHorizonLSN: req.StartLSN,
		CreationTS: time.Now().UTC(),
	}
	if req.CommitLSN != 0 {
		state.AcceptorState.TermHistory = pamsg.TermHistory{{Term: 0, LSN: req.StartLSN}}
	}
	final := r.dir(req.TTID)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("%w: directory %s already exists", ErrExists, final)
	}
	tmp, err := r.tempDir(req.TTID)
	if err != nil {
		return nil, err
	}
	if err := control.Persist(tmp, state, r.cfg.NoSync); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create timeline %s: %w", req.TTID, err)
	}
	if err := r.install(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create timeline %s: %w", req.TTID, err)
	}
	t, err := open(final, req.TTID, state, &r.cfg)
	if err != nil {
		return nil, fmt.Errorf("open new timeline %s: %w", req.TTID, err)
	}
	r.timelines[req.TTID] = t
	r.log.Info().Str("timeline", req.TTID.String()).Uint32("pg_version", req.PgVersion).Msg("created timeline")
	return t, nil
}

func (r *Registry) tempDir(ttid id.TenantTimeline) (string, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	dir := filepath.Join(r.datadir, "tmp", fmt.Sprintf("%s_%s_%s_temptli", ttid.Tenant, ttid.Timeline, hex.EncodeToString(rnd[:])))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create temporary timeline directory: %w", err)
	}
	return dir, nil
}

// install renames a fully written temporary timeline directory into place, durably.
func (r *Registry) install(tmp, final string) error {
	tenantDir := filepath.Dir(final)
	if err := os.MkdirAll(tenantDir, 0o700); err != nil {
		return fmt.Errorf("create tenant directory: %w", err)
	}
	if !r.cfg.NoSync {
		for _, d := range []string{tmp, tenantDir, r.datadir} {
			if err := durable.SyncDir(d); err != nil {
				return err
			}
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename timeline directory into place: %w", err)
	}
	if !r.cfg.NoSync {
		if err := durable.SyncDir(tenantDir); err != nil {
			return err
		}
		if err := durable.SyncDir(filepath.Dir(tmp)); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a timeline: its connections end, its directory goes, and a
// tombstone keeps a still-running proposer from recreating it (SK §4.7).
// It reports whether the directory existed.
func (r *Registry) Delete(ttid id.TenantTimeline) (bool, error) {
	r.mu.Lock()
	t, ok := r.timelines[ttid]
	delete(r.timelines, ttid)
	delete(r.broken, ttid)
	r.tombstones[ttid] = time.Now()
	r.mu.Unlock()
	if ok {
		if err := t.close(); err != nil {
			r.log.Warn().Err(err).Str("timeline", ttid.String()).Msg("closing deleted timeline")
		}
	}
	dir := r.dir(ttid)
	_, statErr := os.Stat(dir)
	existed := statErr == nil
	if err := os.RemoveAll(dir); err != nil {
		return existed, fmt.Errorf("delete timeline %s: %w", ttid, err)
	}
	if existed && !r.cfg.NoSync {
		if err := durable.SyncDir(filepath.Dir(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return existed, err
		}
	}
	r.log.Info().Str("timeline", ttid.String()).Bool("dir_existed", existed).Msg("deleted timeline")
	return existed, nil
}

// Run does the background upkeep of every timeline until ctx ends: lazy
// control-file persists and WAL removal (SK §8.4), every interval.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.upkeep(now)
		}
	}
}

func (r *Registry) upkeep(now time.Time) {
	for _, t := range r.List() {
		if err := t.Upkeep(now); err != nil && !errors.Is(err, ErrDeleted) {
			r.log.Error().Err(err).Str("timeline", t.TTID.String()).Msg("control file upkeep failed")
		}
		n, err := t.RemoveOldWAL()
		if err != nil {
			r.log.Error().Err(err).Str("timeline", t.TTID.String()).Msg("WAL removal failed")
		} else if n > 0 {
			r.log.Info().Int("segments", n).Str("timeline", t.TTID.String()).Msg("removed old WAL segments")
		}
	}
	r.mu.Lock()
	for ttid, ts := range r.tombstones {
		if now.Sub(ts) > tombstoneMaxAge {
			delete(r.tombstones, ttid)
		}
	}
	r.mu.Unlock()
}

// Close persists and closes every timeline.
func (r *Registry) Close() {
	for _, t := range r.List() {
		if err := t.Checkpoint(); err != nil && !errors.Is(err, ErrDeleted) {
			r.log.Warn().Err(err).Str("timeline", t.TTID.String()).Msg("final control file persist failed")
		}
		_ = t.close()
	}
}

func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
		}
	}
	return nil
}
