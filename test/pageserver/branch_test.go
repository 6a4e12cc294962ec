package pageserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/pageserver/httpapi"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
)

// Acceptance 3 of issue 7: a branch created at an earlier LSN of a running
// timeline gets its own compute and its own writes, streamed through the
// same safekeepers into the same pageserver, while the parent keeps
// writing. Each compute, and a fresh compute from a basebackup of each
// timeline at its latest LSN, sees only its own timeline's rows.
func TestBranchAtEarlierLSN(t *testing.T) {
	ctx := context.Background()
	c, ps := startWithStorage(t)
	primary := c.primary

	// Rows A, then the branch point: a record end the pageserver has
	// ingested, with A committed before it.
	primary.RunPgbench(t, "-i", "-s", "1", "-q")
	primary.Exec(t, "CREATE TABLE marker (id int PRIMARY KEY, note text)")
	insertMarkers(t, primary, "A", 1)
	atBranch := readState(t, primary)
	branchLSN := ps.WaitLastRecord(t, c.ttid, primary.RecordEndBound(t), time.Minute).LastRecordLSN
	t.Logf("branch point %s: %+v", branchLSN, atBranch)

	// Rows B on the parent only, then the branch.
	insertMarkers(t, primary, "B", 10)
	primary.RunPgbench(t, "-t", "50", "-c", "1", "-n")
	br := &cluster{sks: c.sks, ttid: id.TenantTimeline{Tenant: c.ttid.Tenant, Timeline: id.Generate()}}
	body, err := json.Marshal(map[string]string{
		"new_timeline_id":      br.ttid.Timeline.String(),
		"ancestor_timeline_id": c.ttid.Timeline.String(),
		"ancestor_start_lsn":   branchLSN.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var created httpapi.TimelineInfo
	if err := ps.Call("POST", "/v1/tenant/"+c.ttid.Tenant.String()+"/timeline", bytes.NewReader(body), &created); err != nil {
		t.Fatalf("create branch: %v", err)
	}
	t.Logf("branch %s created: last_record_lsn %s", br.ttid, created.LastRecordLSN)
	if created.LastRecordLSN != branchLSN {
		t.Errorf("the branch starts at %s, want %s", created.LastRecordLSN, branchLSN)
	}

	// The branch's compute starts from its basebackup at the branch point
	// and has A but not B.
	br.primary = computeFromBasebackup(t, ctx, ps, br.ttid, branchLSN.String(), computeOptions())
	if got := readState(t, br.primary); got != atBranch {
		t.Errorf("the branch compute at %s: %+v, the parent had %+v there", branchLSN, got, atBranch)
	}
	br.startWalproposer(t, branchLSN)
	if log := br.wp.Log(); !strings.Contains(log, "from="+branchLSN.String()) {
		t.Errorf("the branch's walproposer does not stream from %s:\n%s", branchLSN, log)
	}

	// Rows C on the branch, D on the parent; commits return once a quorum
	// of safekeepers has them.
	insertMarkers(t, br.primary, "C", 20)
	br.primary.RunPgbench(t, "-t", "30", "-c", "1", "-n")
	insertMarkers(t, primary, "D", 30)
	primary.RunPgbench(t, "-t", "20", "-c", "1", "-n")

	parent, branch := readState(t, primary), readState(t, br.primary)
	if want := atBranch.Notes + ",10:B,11:B,12:B,30:D,31:D,32:D"; parent.Notes != want {
		t.Errorf("parent markers %q, want %q", parent.Notes, want)
	}
	if want := atBranch.Notes + ",20:C,21:C,22:C"; branch.Notes != want {
		t.Errorf("branch markers %q, want %q", branch.Notes, want)
	}
	if parent.History != atBranch.History+70 || branch.History != atBranch.History+30 {
		t.Errorf("history rows: parent %d, branch %d; %d at the branch point, want +70 and +30",
			parent.History, branch.History, atBranch.History)
	}

	// The pageserver streams each timeline's WAL from the safekeepers, and
	// a basebackup of each at its latest LSN starts a compute with that
	// timeline's content.
	for _, tc := range []struct {
		name string
		cl   *cluster
		want computeState
	}{{"parent", c, parent}, {"branch", br, branch}} {
		end := tc.cl.primary.RecordEndBound(t)
		daemons.WaitFlushed(t, tc.cl.sks, tc.cl.ttid, end)
		ti := ps.WaitLastRecord(t, tc.cl.ttid, end, time.Minute)
		t.Logf("%s: WAL ends at %s; pageserver at %s", tc.name, end, ti.LastRecordLSN)
		r := computeFromBasebackup(t, ctx, ps, tc.cl.ttid, ti.LastRecordLSN.String(), pagecheck.ClusterOptions())
		if got := readState(t, r); got != tc.want {
			t.Errorf("%s: a compute from a basebackup at %s: %+v, the %s compute has %+v", tc.name, ti.LastRecordLSN, got, tc.name, tc.want)
		}
	}
	if ti := ps.Timeline(t, br.ttid); ti.LastRecordLSN <= branchLSN {
		t.Errorf("the branch timeline did not advance past %s: %+v", branchLSN, ti)
	}
}

// insertMarkers commits three marker rows from id first on, noted tag.
func insertMarkers(t *testing.T, c *pgharness.Cluster, tag string, first int) {
	t.Helper()
	for i := first; i < first+3; i++ {
		c.Exec(t, "INSERT INTO marker VALUES ($1, $2)", i, tag)
	}
}
