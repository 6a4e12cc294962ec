package status

import (
	"testing"

	"strata.dev/cli/client"
	"strata.dev/cli/cluster"
	"strata.dev/libs/lsn"
	pspb "strata.dev/proto/pageserver/v1"
	skpb "strata.dev/proto/safekeeper/v1"
)

func TestMergeTimelines(t *testing.T) {
	const (
		main   = "11111111111111111111111111111111"
		branch = "22222222222222222222222222222222"
		orphan = "33333333333333333333333333333333"
		gone   = "44444444444444444444444444444444"
	)
	c := &client.Cluster{File: &cluster.File{
		Timelines:   map[string]string{"main": main, "br": branch, "gone": gone},
		Safekeepers: []cluster.Daemon{{ID: 1, ListenPG: "127.0.0.1:5454"}, {ID: 3, ListenPG: "127.0.0.1:5456"}},
	}}
	ps := []*pspb.TimelineInfo{
		{TimelineId: main, State: "Active", LastRecordLsn: 1000, DiskConsistentLsn: 500, SafekeeperCommitLsn: 1100, WalSource: "127.0.0.1:5456"},
		{TimelineId: branch, State: "Active", LastRecordLsn: 300, SafekeeperCommitLsn: 900},
		{TimelineId: orphan, State: "Broken", StateError: "bad", LastRecordLsn: 50},
	}
	sks := []Daemon{{Kind: "safekeeper", ID: 1}, {Kind: "safekeeper", ID: 3}}
	skTimelines := [][]*skpb.TimelineInfo{
		{{TimelineId: main, CommitLsn: 1200, FlushLsn: 1300}},
		{{TimelineId: main, CommitLsn: 1150, FlushLsn: 1150}, {TimelineId: branch, CommitLsn: 250, FlushLsn: 250}},
	}
	got := mergeTimelines(c, ps, sks, skTimelines)
	if len(got) != 4 {
		t.Fatalf("%d timelines: %+v", len(got), got)
	}
	// Named first by name, then by id.
	for i, want := range []struct{ name, id string }{{"br", branch}, {"gone", gone}, {"main", main}, {"", orphan}} {
		if got[i].Name != want.name || got[i].ID != want.id {
			t.Errorf("timelines[%d] = %s %s, want %s %s", i, got[i].Name, got[i].ID, want.name, want.id)
		}
	}
	m := got[2]
	if len(m.Safekeepers) != 2 || m.Safekeepers[0].ID != 1 || m.Safekeepers[1].CommitLSN != 1150 {
		t.Errorf("main's safekeepers: %+v", m.Safekeepers)
	}
	// Lag against the highest commit LSN known: safekeeper 1's 1200.
	if m.Pageserver.LagBytes != 200 || m.Pageserver.WALSource != "127.0.0.1:5456" || m.Pageserver.WALSourceID != 3 || m.Pageserver.LastRecordLSN != lsn.LSN(1000) {
		t.Errorf("main on the pageserver: %+v", m.Pageserver)
	}
	// The walreceiver's own commit LSN counts when it is the highest.
	if got[0].Pageserver.LagBytes != 600 {
		t.Errorf("br lag %d, want 600", got[0].Pageserver.LagBytes)
	}
	if got[1].Pageserver != nil || len(got[1].Safekeepers) != 0 {
		t.Errorf("gone: %+v", got[1])
	}
	if got[3].Pageserver.State != "Broken" || got[3].Pageserver.StateError != "bad" {
		t.Errorf("orphan: %+v", got[3].Pageserver)
	}
}
