package timeline

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
)

func newReq() CreateRequest {
	return CreateRequest{TTID: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}, PgVersion: 150010, SystemID: 9, WalSegSize: 16 << 20}
}

// A timeline whose control file is damaged is skipped at startup, left as
// is on disk, and cannot be silently recreated over.
func TestBrokenTimelineIsSkipped(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{NodeID: 1, NoSync: true}
	reg, err := Load(dir, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	good, bad := newReq(), newReq()
	for _, r := range []CreateRequest{good, bad} {
		if _, err := reg.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Create(good); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	reg.Close()
	ctl := filepath.Join(dir, bad.TTID.Tenant.String(), bad.TTID.Timeline.String(), "safekeeper.control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xFF
	if err := os.WriteFile(ctl, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err = Load(dir, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.Get(good.TTID); err != nil {
		t.Fatalf("good timeline: %v", err)
	}
	if _, err := reg.Get(bad.TTID); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("broken timeline: %v; want ErrNotLoaded", err)
	}
	if _, err := reg.Create(bad); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("create over a broken timeline: %v", err)
	}
	if after, _ := os.ReadFile(ctl); string(after) != string(b) {
		t.Fatal("the broken control file was modified")
	}
	// Deletion is how an operator clears it; a tombstone then blocks re-creation.
	if existed, err := reg.Delete(bad.TTID); err != nil || !existed {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if _, err := reg.Create(bad); !errors.Is(err, ErrTombstone) {
		t.Fatalf("create right after delete: %v", err)
	}
}

func TestCreateValidates(t *testing.T) {
	reg, err := Load(t.TempDir(), Config{NodeID: 1, NoSync: true}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	r := newReq()
	r.PgVersion = 0
	if _, err := reg.Create(r); err == nil {
		t.Fatal("created a timeline with an unknown PostgreSQL version")
	}
	r = newReq()
	r.StartLSN, r.CommitLSN = 0x2000, 0x1000
	if _, err := reg.Create(r); err == nil {
		t.Fatal("created a timeline whose commit LSN precedes its start")
	}
}
