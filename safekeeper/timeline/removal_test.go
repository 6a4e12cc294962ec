package timeline

import (
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

// TestLowestReport: with several pageservers reporting, WAL removal is bound
// by the one furthest behind, until its report is older than reportTTL.
func TestLowestReport(t *testing.T) {
	var r removalState
	now := time.Unix(1_000_000, 0)
	if _, ok := r.lowestReport(now); ok {
		t.Fatal("a bound without any report")
	}
	r.reported(1, 0x3000000, now)
	r.reported(2, 0x1C0B460, now.Add(time.Second)) // restarted, behind
	r.reported(1, 0x3500000, now.Add(2*time.Second))
	if l, ok := r.lowestReport(now.Add(3 * time.Second)); !ok || l != 0x1C0B460 {
		t.Fatalf("bound %v %v, want the lagging pageserver's %v", lsn.LSN(l), ok, lsn.LSN(0x1C0B460))
	}
	r.reported(2, 0x3600000, now.Add(4*time.Second))
	if l, _ := r.lowestReport(now.Add(5 * time.Second)); l != 0x3500000 {
		t.Fatalf("bound %v after the lagging one caught up, want %v", lsn.LSN(l), lsn.LSN(0x3500000))
	}
	// Node 1 goes quiet: after reportTTL only node 2 bounds removal.
	r.reported(2, 0x4000000, now.Add(reportTTL))
	if l, _ := r.lowestReport(now.Add(reportTTL + 3*time.Second)); l != 0x4000000 {
		t.Fatalf("bound %v with node 1 silent for longer than reportTTL, want %v", lsn.LSN(l), lsn.LSN(0x4000000))
	}
}
