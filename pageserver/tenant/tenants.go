package tenant

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
)

// A tenant is its directory under <datadir>/tenants: creating one is a
// mkdir, which is atomic, so two requests for the same id cannot both
// succeed, and a crash leaves the tenant either there or not. The HTTP
// API's timeline creation makes the directory as a side effect, as
// Neon's did before tenants had to be created first.

// CreateTenant makes an empty tenant.
func (m *Manager) CreateTenant(tenant id.TenantID) error {
	if tenant.IsZero() {
		return fmt.Errorf("%w: tenant id 0", ErrInvalid)
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrShuttingDown
	}
	dir := m.tenantDir(tenant)
	if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("tenant %s: %w", tenant, ErrExists)
	} else if err != nil {
		return fmt.Errorf("create tenant %s: %w", tenant, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "timelines"), 0o755); err != nil {
		return fmt.Errorf("create tenant %s: %w", tenant, err)
	}
	for _, d := range []string{dir, m.dir} {
		if err := durable.SyncDir(d); err != nil {
			return fmt.Errorf("create tenant %s: %w", tenant, err)
		}
	}
	m.log.Info().Stringer("tenant", tenant).Msg("tenant created")
	return nil
}

// Tenants lists the tenants, sorted.
func (m *Manager) Tenants() ([]id.TenantID, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	var out []id.TenantID
	for _, e := range ents {
		if t, err := id.Parse(e.Name()); err == nil && e.IsDir() {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b id.TenantID) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// CheckTenant returns an error wrapping ErrNotFound if the tenant does
// not exist.
func (m *Manager) CheckTenant(tenant id.TenantID) error {
	st, err := os.Stat(m.tenantDir(tenant))
	switch {
	case errors.Is(err, fs.ErrNotExist) || (err == nil && !st.IsDir()):
		return fmt.Errorf("tenant %s: %w", tenant, ErrNotFound)
	case err != nil:
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return nil
}

func (m *Manager) tenantDir(tenant id.TenantID) string {
	return filepath.Join(m.dir, tenant.String())
}
