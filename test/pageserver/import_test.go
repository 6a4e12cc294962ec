package pageserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// backupManifest is the part of pg_basebackup's backup_manifest we need.
type backupManifest struct {
	WALRanges []struct {
		Start lsn.LSN `json:"Start-LSN"`
		End   lsn.LSN `json:"End-LSN"`
	} `json:"WAL-Ranges"`
}

// PS §8.2: a vanilla `pg_basebackup -Ft` taken while pgbench writes is
// imported with its pg_wal.tar; the timeline then follows the primary
// through the safekeepers and ends equal to it.
func TestImportVanillaBasebackup(t *testing.T) {
	ctx := context.Background()
	primary := pgharness.New(t, append([]pgharness.Option{
		pgharness.WithConf("wal_keep_size", "4GB"),
		pgharness.WithConf("max_wal_size", "4GB"),
		pgharness.WithConf("checkpoint_timeout", "1h"),
	}, pagecheck.ClusterOptions()...)...)
	primary.RunPgbench(t, "-i", "-s", "2", "-q")
	c := newCluster(t, primary)
	// The safekeepers get the WAL from before the backup starts; commits
	// do not wait for them (no synchronous_standby_names).
	c.startWalproposer(t, primary.InsertWALLSN(t).SegmentStart(primary.WALSegmentSize()))

	load := primary.Command("pgbench", "-c", "2", "-T", "3", "-n")
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the backup copies pages pgbench is changing
	backup := primary.MkdirShared(t, "backup")
	walcheck.RunCmd(t, primary.Command("pg_basebackup", "-D", backup, "-F", "t", "-X", "stream", "-c", "fast"))
	if err := load.Wait(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	var m backupManifest
	b, err := os.ReadFile(filepath.Join(backup, "backup_manifest"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || len(m.WALRanges) != 1 {
		t.Fatalf("backup_manifest: %v (%d WAL ranges)", err, len(m.WALRanges))
	}
	start, end := m.WALRanges[0].Start, m.WALRanges[0].End
	baseTar, err := os.ReadFile(filepath.Join(backup, "base.tar"))
	if err != nil {
		t.Fatal(err)
	}
	walTar, err := os.ReadFile(filepath.Join(backup, "pg_wal.tar"))
	if err != nil {
		t.Fatal(err)
	}

	ps := c.startPageserver(t)
	// Bad uploads are refused and leave nothing behind.
	for _, bad := range []struct {
		what string
		body []byte
		base lsn.LSN
	}{
		{"an empty body", nil, 0},
		{"not a tar", []byte(strings.Repeat("garbage ", 1000)), 0},
		{"trailing garbage", append(append([]byte{}, baseTar...), []byte("trailing garbage")...), 0},
		{"a wrong base_lsn", baseTar, start + 8},
	} {
		err := ps.ImportBasebackup(c.ttid, bytes.NewReader(bad.body), bad.base, end)
		if !isStatus(err, http.StatusBadRequest) {
			t.Errorf("import of %s: %v, want HTTP 400", bad.what, err)
		} else {
			t.Logf("import of %s: %v", bad.what, err)
		}
	}
	if err := ps.ImportWAL(c.ttid, bytes.NewReader(walTar), start, end); !isStatus(err, http.StatusNotFound) {
		t.Errorf("WAL import before the base backup: %v, want HTTP 404", err)
	}

	if err := ps.ImportBasebackup(c.ttid, bytes.NewReader(baseTar), start, end); err != nil {
		t.Fatalf("import base.tar: %v", err)
	}
	if err := ps.ImportBasebackup(c.ttid, bytes.NewReader(baseTar), start, end); !isStatus(err, http.StatusConflict) {
		t.Errorf("second import of the same timeline: %v, want HTTP 409", err)
	}
	if err := ps.ImportWAL(c.ttid, bytes.NewReader(walTar), start+8, end); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("WAL import at a wrong start: %v, want HTTP 400", err)
	}
	if err := ps.ImportWAL(c.ttid, bytes.NewReader(walTar), start, end); err != nil {
		t.Fatalf("import pg_wal.tar: %v", err)
	}
	ti := ps.Timeline(t, c.ttid)
	if ti.LastRecordLSN < end || ti.InitDBLSN != start {
		t.Fatalf("after the import: last_record_lsn %s, initdb_lsn %s; want ≥ %s and %s", ti.LastRecordLSN, ti.InitDBLSN, end, start)
	}
	t.Logf("imported a backup from %s to %s; the timeline is at %s", start, end, ti.LastRecordLSN)

	w := pagecheck.Workload(t, ctx, primary)
	snapshot := pagecheck.SnapshotSQL(t, ctx, primary)
	primary.Stop(t)
	last := walcheck.LatestCheckpoint(t, primary)
	ps.WaitLastRecord(t, c.ttid, last+1, time.Minute)
	ps.Stop()
	pagecheck.Compare(t, ctx, primary, openTimeline(t, ps, c.ttid), daemons.NewRedoPool(t, daemons.RedoOptions(t, 2)), snapshot, w, last)
}

func isStatus(err error, code int) bool {
	var he *daemons.HTTPError
	return errors.As(err, &he) && he.Status == code
}

// Timelines created through the management API: a bootstrap from initdb
// (the pageserver runs initdb), branches, and the errors Neon's API gives.
func TestTimelineManagement(t *testing.T) {
	ps := daemons.StartPageserver(t, "--no-sync")
	tenant := id.Generate()
	root, branch := id.Generate(), id.Generate()
	path := "/v1/tenant/" + tenant.String() + "/timeline"
	create := func(body string) (map[string]any, error) {
		var out map[string]any
		err := ps.Call("POST", path, strings.NewReader(body), &out)
		return out, err
	}
	info, err := create(`{"new_timeline_id": "` + root.String() + `", "pg_version": 15}`)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	last, _ := lsn.Parse(info["last_record_lsn"].(string))
	initdb, _ := lsn.Parse(info["initdb_lsn"].(string))
	if last <= initdb || info["state"] != "Active" {
		t.Fatalf("bootstrapped timeline: %v", info)
	}
	t.Logf("bootstrapped: initdb_lsn %s, last_record_lsn %s (after the shutdown checkpoint record)", initdb, last)

	for _, tc := range []struct {
		what, body string
		code       int
	}{
		{"the same id again", `{"new_timeline_id": "` + root.String() + `"}`, http.StatusConflict},
		{"a bad id", `{"new_timeline_id": "xyz"}`, http.StatusBadRequest},
		{"an unknown field", `{"new_timeline_id": "` + id.Generate().String() + `", "colour": "red"}`, http.StatusBadRequest},
		{"PostgreSQL 16", `{"new_timeline_id": "` + id.Generate().String() + `", "pg_version": 16}`, http.StatusBadRequest},
		{"an unknown ancestor", `{"new_timeline_id": "` + id.Generate().String() + `", "ancestor_timeline_id": "` + id.Generate().String() + `"}`, http.StatusNotFound},
		{"a branch point before initdb", `{"new_timeline_id": "` + id.Generate().String() + `", "ancestor_timeline_id": "` + root.String() + `", "ancestor_start_lsn": "0/42"}`, http.StatusNotAcceptable},
	} {
		if _, err := create(tc.body); !isStatus(err, tc.code) {
			t.Errorf("create with %s: %v, want HTTP %d", tc.what, err, tc.code)
		}
	}
	info, err = create(`{"new_timeline_id": "` + branch.String() + `", "ancestor_timeline_id": "` + root.String() + `"}`)
	if err != nil {
		t.Fatalf("branch: %v", err)
	}
	if info["ancestor_timeline_id"] != root.String() || info["ancestor_lsn"] != last.String() {
		t.Errorf("branch: %v", info)
	}
	var list []map[string]any
	if err := ps.Call("GET", path, nil, &list); err != nil || len(list) != 2 {
		t.Errorf("list: %v, %d timelines", err, len(list))
	}
	// Both come back after a restart.
	ps.Stop()
	ps.Start()
	for _, tl := range []id.ID{root, branch} {
		ti := ps.Timeline(t, id.TenantTimeline{Tenant: tenant, Timeline: tl})
		if ti.LastRecordLSN != last || ti.DiskConsistentLSN != last {
			t.Errorf("timeline %s after a restart: last %s, disk consistent %s; want %s", tl, ti.LastRecordLSN, ti.DiskConsistentLSN, last)
		}
	}
	if err := ps.Call("GET", path+"/"+id.Generate().String(), nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Errorf("an unknown timeline: %v, want HTTP 404", err)
	}
	if v := daemons.Metric(ps.HTTPAddr, "pageserver_timelines"); v != 2 {
		t.Errorf("pageserver_timelines %v, want 2", v)
	}
}

// WAL the pageserver cannot store (a user tablespace) stops the timeline
// with a clear error instead of being dropped; what it had stays readable.
func TestUnsupportedWALBreaksTimeline(t *testing.T) {
	primary := pgharness.New(t, pgharness.NoStart())
	c := newCluster(t, primary)
	ps := c.startPageserver(t)
	c.startFromInitdb(t, ps)
	primary.Exec(t, "CREATE TABLE before_ts AS SELECT generate_series(1, 100) AS x")
	goodLSN := primary.InsertWALLSN(t)
	primary.Exec(t, "CREATE TABLESPACE ts LOCATION '"+primary.MkdirShared(t, "ts")+"'")
	primary.Exec(t, "CREATE TABLE in_ts (x int) TABLESPACE ts")
	walcheck.WaitFor(t, "the timeline to break", 30*time.Second, func() (bool, string) {
		ti := ps.Timeline(t, c.ttid)
		return ti.State == "Broken", ti.State + " " + ti.LastRecordLSN.String()
	})
	ti := ps.Timeline(t, c.ttid)
	if !strings.Contains(ti.StateError, "tablespace") || ti.LastRecordLSN < goodLSN {
		t.Errorf("broken timeline: error %q, last record %s (want ≥ %s)", ti.StateError, ti.LastRecordLSN, goodLSN)
	}
	t.Logf("timeline broken at %s: %s", ti.LastRecordLSN, ti.StateError)
	if !strings.Contains(ps.Log(), "WAL ingest stopped") {
		t.Error("the log does not say that ingest stopped")
	}
}
