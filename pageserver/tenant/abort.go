package tenant

import (
	"fmt"

	"strata.dev/libs/id"
)

// AbortImport drops an import that waits for its WAL (ImportBasebackup
// returned without Done): its files go and the id is free again.
func (m *Manager) AbortImport(ttid id.TenantTimeline) error {
	m.mu.Lock()
	p := m.pending[ttid]
	delete(m.pending, ttid)
	m.mu.Unlock()
	if p == nil {
		return fmt.Errorf("timeline %s is not waiting for WAL: %w", ttid, ErrNotFound)
	}
	p.abort()
	m.release(ttid)
	m.log.Info().Stringer("timeline", ttid).Msg("import waiting for its WAL aborted")
	return nil
}
