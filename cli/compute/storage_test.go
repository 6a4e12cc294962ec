package compute

import (
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	pspb "strata.dev/proto/pageserver/v1"
)

func TestCheckStaticLSN(t *testing.T) {
	root := &pspb.TimelineInfo{InitdbLsn: 0x1500780, LastRecordLsn: 0x3000000, SafekeeperCommitLsn: 0x3000100, GcCutoffLsn: 0x1600000}
	branch := &pspb.TimelineInfo{AncestorTimelineId: "x", AncestorLsn: 0x2000000, LastRecordLsn: 0x2500000}
	for _, tc := range []struct {
		info      *pspb.TimelineInfo
		committed lsn.LSN // on the safekeepers
		at        lsn.LSN
		err       string
	}{
		{root, 0, 0x2000000, ""},
		{root, 0, 0x3000100, ""}, // the walreceiver saw it committed, not yet ingested: the basebackup waits
		{root, 0, 0x3000101, "past the end"},
		{root, 0x3000200, 0x3000200, ""}, // committed on the safekeepers
		{root, 0x3000200, 0x3000201, "past the end of timeline main (0/3000200)"},
		{root, 0, 0x1500000, "before timeline main begins (0/1500780)"},
		{root, 0, 0x1550000, "below timeline main's GC cutoff"},
		{branch, 0, 0x2000000, ""},
		{branch, 0, 0x1FFFFFF, "branches off at 0/2000000"},
	} {
		err := checkStaticLSN("main", tc.info, tc.committed, tc.at)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkStaticLSN(%s): %v, want %q", tc.at, err, tc.err)
		}
	}
}
