package tenant

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

var (
	// ErrHasBranches is wrapped when a timeline cannot be deleted because
	// other timelines branch off it.
	ErrHasBranches = errors.New("other timelines branch off it")
	// ErrBusy is wrapped when a request conflicts with one in progress;
	// it may succeed if retried.
	ErrBusy = errors.New("busy")
)

// deletedSuffix names a timeline directory being removed. It ends in
// tempSuffix, so the startup scan removes what a crash left of it.
const deletedSuffix = "-deleted" + tempSuffix

// DeleteTimeline stops a timeline (its WAL receiver, flushes and
// compaction) and removes its files. Crash safety: the directory is first
// renamed to a temporary name (durably), then removed; a timeline is thus
// either whole under its name or gone, and Load removes the leftovers.
func (m *Manager) DeleteTimeline(ctx context.Context, ttid id.TenantTimeline) error {
	t, err := m.takeForDelete(ttid)
	if err != nil {
		return err
	}
	defer m.release(ttid)

	t.stop()
	t.Close()
	// Compaction takes the timeline's compaction lock and fails at once on
	// a closed timeline: once this call returns, none is running.
	_ = t.Timeline.Compact(ctx, func(context.Context, lsn.LSN) ([]key.Range, error) { return nil, nil })

	dir := m.timelineDir(ttid)
	trash := dir + deletedSuffix
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("delete timeline %s: %w", ttid, err)
	}
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("delete timeline %s: %w", ttid, err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("delete timeline %s: %w", ttid, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		// Deleted all the same: the next start removes the rest.
		m.log.Warn().Err(err).Stringer("timeline", ttid).Msg("remove a deleted timeline's files")
	}
	m.log.Info().Stringer("timeline", ttid).Msg("timeline deleted")
	return nil
}

// takeForDelete removes ttid from the registry, keeping its id reserved
// until the files are gone, unless something depends on it.
func (m *Manager) takeForDelete(ttid id.TenantTimeline) (*Timeline, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrShuttingDown
	}
	t := m.timelines[ttid]
	if t == nil {
		return nil, fmt.Errorf("timeline %s: %w", ttid, ErrNotFound)
	}
	var children []string
	for other, c := range m.timelines {
		if a, _ := c.Ancestor(); a == t.Timeline {
			children = append(children, other.Timeline.String())
		}
	}
	if len(children) > 0 {
		return nil, fmt.Errorf("timeline %s: %w: %s", ttid, ErrHasBranches, strings.Join(children, ", "))
	}
	// A branch being created may be about to take t as its ancestor
	// (Branch reserves the new id before it looks the ancestor up). Imports
	// waiting for their WAL are root timelines.
	for b := range m.busy {
		if b.Tenant == ttid.Tenant && m.pending[b] == nil {
			return nil, fmt.Errorf("timeline %s: timeline %s of the tenant is being created: %w", ttid, b.Timeline, ErrBusy)
		}
	}
	delete(m.timelines, ttid)
	m.busy[ttid] = true
	return t, nil
}
