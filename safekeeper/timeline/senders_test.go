package timeline

import (
	"testing"

	"strata.dev/libs/pamsg"
)

// SK §10.1 oracle 10 (Neon send_wal.rs tests): the aggregate takes the
// lowest non-zero xmin of the standbys.
func TestHotStandbyAggregation(t *testing.T) {
	standby := func(xmin, cxmin uint64, ts int64) SenderInfo {
		return SenderInfo{Kind: SenderStandby, HSFeedback: pamsg.HotStandbyFeedback{Xmin: xmin, CatalogXmin: cxmin, TS: ts}}
	}
	if got := aggregateHSFeedback([]SenderInfo{standby(0, 0, 5), standby(0, 0, 6)}); got != (pamsg.HotStandbyFeedback{}) {
		t.Errorf("only invalid xmins: %+v; want zeros", got)
	}
	got := aggregateHSFeedback([]SenderInfo{standby(0, 0, 9), standby(42, 0, 3), standby(64, 70, 4)})
	if got.Xmin != 42 || got.CatalogXmin != 70 || got.TS != 4 {
		t.Errorf("{0, 42, 64}: %+v; want xmin 42, catalog xmin 70, ts 4", got)
	}
	// Pageservers do not hold back the primary's xmin.
	ps := SenderInfo{Kind: SenderPageserver, HSFeedback: pamsg.HotStandbyFeedback{Xmin: 1}}
	if got := aggregateHSFeedback([]SenderInfo{ps}); got.Xmin != 0 {
		t.Errorf("pageserver counted: %+v", got)
	}
}
