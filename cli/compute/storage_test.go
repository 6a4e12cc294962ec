package compute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"strata.dev/cli/cluster"
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

// Remove deletes the compute's own directory and pid files, and a data
// directory recorded elsewhere, but nothing beside that one.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	e := &Env{Dir: dir, ServerDir: dir}
	own := e.DataDir("a")
	elsewhere := filepath.Join(t.TempDir(), "data")
	keep := filepath.Join(filepath.Dir(elsewhere), "keep")
	for _, d := range []string{own, elsewhere} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove("a", cluster.Compute{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(own)); !os.IsNotExist(err) {
		t.Errorf("the compute's own directory is still there: %v", err)
	}
	if err := e.Remove("b", cluster.Compute{Datadir: elsewhere}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(elsewhere); !os.IsNotExist(err) {
		t.Errorf("the recorded data directory is still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file beside the recorded data directory went: %v", err)
	}
}
