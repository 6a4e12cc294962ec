// Package tenant keeps a pageserver's tenants and timelines: their
// directories under <datadir>/tenants, creating timelines (bootstrap from
// initdb, branches, imports of base backups), and for every active
// timeline a WAL receiver that streams from the safekeepers into it.
//
// Layout: <datadir>/tenants/<tenant>/timelines/<timeline>/ holds one
// timeline's metadata and layer files (package timeline). A timeline is
// built in <timeline>.___temp next to it and renamed into place once it is
// complete and durable, so after a crash a timeline directory is either
// whole or absent; Load deletes leftover temporary directories.
//
// Files: manager.go (loading, the registry, shutdown), create.go (new
// timelines), feed.go (WAL bytes into a timeline), tarfile.go (reading tar
// uploads), run.go (per-timeline WAL receivers and compaction).
package tenant

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/timeline"
	"strata.dev/pageserver/walreceiver"
	skpb "strata.dev/proto/safekeeper/v1"
)

// Errors the management API maps to status codes.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid request")
	ErrShuttingDown = errors.New("the pageserver is shutting down")
)

// tempSuffix marks a timeline directory under construction.
const tempSuffix = ".___temp"

// Options configure a Manager.
type Options struct {
	// Safekeepers are the libpq addresses WAL is streamed from; none: no
	// timeline streams (imports only).
	Safekeepers []string
	// SafekeepersGRPC are the same safekeepers' gRPC addresses, in the
	// same order (empty: none known). With them the receivers watch the
	// safekeepers (WatchTimeline) and report to each of them
	// (ReportPageserverFeedback); without, they poll TIMELINE_STATUS.
	SafekeepersGRPC []string
	SafekeeperToken string
	NodeID          uint64
	// Timeline is the template of every timeline's options (checkpoint
	// distance, image threshold ...); the ids, ancestry and log are set
	// per timeline.
	Timeline timeline.Options
	// CompactionPeriod is how often active timelines are compacted; ≤ 0
	// disables compaction.
	CompactionPeriod time.Duration
	// PgBinDir holds initdb, for bootstrapping timelines.
	PgBinDir string
	// InitdbSuperuser is the superuser initdb creates.
	InitdbSuperuser string
	// Receiver tunes the WAL receivers (addresses and ids are set per timeline).
	Receiver walreceiver.Config
	Log      zerolog.Logger
}

// Manager is the registry of a pageserver's timelines.
type Manager struct {
	dir  string
	opts Options
	log  zerolog.Logger

	ctx    context.Context // ends at Close: stops receivers and compaction
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// skConns are the safekeepers' gRPC connections, shared by every
	// timeline's receiver; closed by Close after the receivers stopped.
	skConns   []*grpc.ClientConn
	skClients []skpb.SafekeeperClient

	mu        sync.Mutex
	timelines map[id.TenantTimeline]*Timeline
	// busy holds ids being created or imported, so that two requests for
	// the same id do not race.
	busy map[id.TenantTimeline]bool
	// pending are imports waiting for their WAL (ImportWAL).
	pending map[id.TenantTimeline]*pendingImport
	closed  bool
}

// Load opens every timeline under datadir and starts streaming WAL into
// them. A timeline that fails to open is logged and left out; its files
// stay for an operator to inspect.
func Load(datadir string, opts Options) (*Manager, error) {
	dir := filepath.Join(datadir, "tenants")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		dir: dir, opts: opts, log: opts.Log, ctx: ctx, cancel: cancel,
		timelines: make(map[id.TenantTimeline]*Timeline),
		busy:      make(map[id.TenantTimeline]bool),
		pending:   make(map[id.TenantTimeline]*pendingImport),
	}
	if m.opts.Timeline.Reconstructor == nil {
		m.opts.Timeline.Reconstructor = neonredo.Reconstructor{}
	}
	if err := m.dialSafekeepers(); err != nil {
		cancel()
		return nil, err
	}
	found, err := m.scan()
	if err != nil {
		cancel()
		m.closeSafekeeperConns()
		return nil, err
	}
	// Ancestors first: a branch opens on top of its opened parent.
	for len(found) > 0 {
		progress := false
		for ttid, anc := range found {
			var parent *Timeline
			if !anc.IsZero() {
				if parent = m.timelines[id.TenantTimeline{Tenant: ttid.Tenant, Timeline: anc}]; parent == nil {
					continue
				}
			}
			delete(found, ttid)
			progress = true
			t, err := m.open(ttid, parent)
			if err != nil {
				m.log.Error().Err(err).Stringer("timeline", ttid).Msg("timeline not loaded")
				continue
			}
			m.timelines[ttid] = t
			t.start()
		}
		if !progress {
			for ttid, anc := range found {
				m.log.Error().Stringer("timeline", ttid).Stringer("ancestor", anc).Msg("timeline not loaded: its ancestor is missing or failed to load")
			}
			break
		}
	}
	if opts.CompactionPeriod > 0 {
		m.wg.Add(1)
		go m.compactLoop()
	}
	return m, nil
}

// dialSafekeepers makes the gRPC connections to the safekeepers (no I/O
// yet: they connect on first use).
func (m *Manager) dialSafekeepers() error {
	addrs := m.opts.SafekeepersGRPC
	if len(addrs) == 0 {
		return nil
	}
	if len(addrs) != len(m.opts.Safekeepers) {
		return fmt.Errorf("%d safekeeper gRPC addresses for %d safekeepers: want one per safekeeper, in the same order: %w",
			len(addrs), len(m.opts.Safekeepers), ErrInvalid)
	}
	conns, err := walreceiver.Dial(addrs, m.opts.Receiver.BackoffMin, m.opts.Receiver.BackoffMax)
	if err != nil {
		return err
	}
	m.skConns = conns
	for _, c := range conns {
		m.skClients = append(m.skClients, skpb.NewSafekeeperClient(c))
	}
	return nil
}

func (m *Manager) closeSafekeeperConns() {
	for _, c := range m.skConns {
		c.Close()
	}
}

// scan lists the timeline directories with their ancestors and removes
// temporary ones.
func (m *Manager) scan() (map[id.TenantTimeline]id.TimelineID, error) {
	found := make(map[id.TenantTimeline]id.TimelineID)
	tenants, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	for _, te := range tenants {
		tenant, err := id.Parse(te.Name())
		if err != nil || !te.IsDir() {
			m.log.Warn().Str("name", te.Name()).Msg("ignoring a file that is not a tenant directory")
			continue
		}
		tlDir := filepath.Join(m.dir, te.Name(), "timelines")
		ents, err := os.ReadDir(tlDir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), tempSuffix) {
				m.log.Info().Str("dir", e.Name()).Msg("removing an unfinished timeline")
				if err := os.RemoveAll(filepath.Join(tlDir, e.Name())); err != nil {
					return nil, err
				}
				continue
			}
			tl, err := id.Parse(e.Name())
			if err != nil || !e.IsDir() {
				m.log.Warn().Str("name", e.Name()).Msg("ignoring a file that is not a timeline directory")
				continue
			}
			ttid := id.TenantTimeline{Tenant: tenant, Timeline: tl}
			anc, _, err := timeline.ReadAncestor(filepath.Join(tlDir, e.Name()))
			if err != nil {
				m.log.Error().Err(err).Stringer("timeline", ttid).Msg("timeline not loaded")
				continue
			}
			found[ttid] = anc
		}
	}
	return found, nil
}

// timelineDir is where a timeline's files are.
func (m *Manager) timelineDir(ttid id.TenantTimeline) string {
	return filepath.Join(m.dir, ttid.Tenant.String(), "timelines", ttid.Timeline.String())
}

func (m *Manager) timelineOptions(ttid id.TenantTimeline, parent *Timeline) timeline.Options {
	o := m.opts.Timeline
	o.TenantTimeline = ttid
	o.Log = m.log.With().Stringer("timeline", ttid).Logger()
	if parent != nil {
		o.Ancestor = parent.Timeline
	}
	return o
}

func (m *Manager) open(ttid id.TenantTimeline, parent *Timeline) (*Timeline, error) {
	tl, err := timeline.Open(m.timelineDir(ttid), m.timelineOptions(ttid, parent))
	if err != nil {
		return nil, err
	}
	t, err := m.newTimeline(tl)
	if err != nil {
		tl.Close()
		return nil, fmt.Errorf("timeline %s: %w", ttid, err)
	}
	last, _ := tl.LastRecordLSN()
	m.log.Info().Stringer("timeline", ttid).Stringer("disk_consistent_lsn", tl.DiskConsistentLSN()).
		Stringer("last_record_lsn", last).Msg("timeline loaded")
	return t, nil
}

// Get returns an active timeline.
func (m *Manager) Get(ttid id.TenantTimeline) (*Timeline, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.timelines[ttid]; t != nil {
		return t, nil
	}
	return nil, fmt.Errorf("timeline %s: %w", ttid, ErrNotFound)
}

// List returns the timelines of tenant (all tenants if it is zero), sorted.
func (m *Manager) List(tenant id.TenantID) []*Timeline {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Timeline
	for ttid, t := range m.timelines {
		if tenant.IsZero() || ttid.Tenant == tenant {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *Timeline) int { return strings.Compare(a.ID().String(), b.ID().String()) })
	return out
}

// Close stops every receiver, commits what they decoded, flushes every
// timeline to layer files (so a restart has nothing to re-ingest) and
// closes them.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	all := make([]*Timeline, 0, len(m.timelines))
	for _, t := range m.timelines {
		all = append(all, t)
	}
	for ttid, p := range m.pending {
		m.log.Info().Stringer("timeline", ttid).Msg("dropping an import that waits for its WAL")
		p.abort()
	}
	clear(m.pending)
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	var errs []error
	for _, t := range all {
		t.stop()
		if err := t.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush timeline %s: %w", t.ID(), err))
		}
	}
	// Branches before their ancestors.
	slices.SortFunc(all, func(a, b *Timeline) int { return depth(b) - depth(a) })
	for _, t := range all {
		t.Close()
	}
	m.closeSafekeeperConns()
	return errors.Join(errs...)
}

func depth(t *Timeline) int {
	n := 0
	for a, _ := t.Ancestor(); a != nil; a, _ = a.Ancestor() {
		n++
	}
	return n
}

// reserve marks ttid as being created; release undoes it.
func (m *Manager) reserve(ttid id.TenantTimeline) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return ErrShuttingDown
	case m.timelines[ttid] != nil:
		return fmt.Errorf("timeline %s: %w", ttid, ErrExists)
	case m.busy[ttid]:
		return fmt.Errorf("timeline %s is being created: %w", ttid, ErrExists)
	}
	m.busy[ttid] = true
	return nil
}

func (m *Manager) release(ttid id.TenantTimeline) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.busy, ttid)
}

// publish moves a finished timeline built in tmp into place, opens it and
// starts it.
func (m *Manager) publish(ttid id.TenantTimeline, tmp string, parent *Timeline) (*Timeline, error) {
	dir := m.timelineDir(ttid)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("timeline %s: %w", ttid, err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("timeline %s: %w", ttid, err)
	}
	t, err := m.open(ttid, parent)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		t.Close()
		return nil, ErrShuttingDown
	}
	m.timelines[ttid] = t
	t.start()
	return t, nil
}

// lastRecord is a helper for log lines and replies.
func lastRecord(tl *timeline.Timeline) lsn.LSN {
	l, _ := tl.LastRecordLSN()
	return l
}
