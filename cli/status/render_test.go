package status

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

func sampleReport() *Report {
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	received := started.Add(time.Minute)
	return &Report{
		TenantID: "0123456789abcdef0123456789abcdef",
		Daemons: []Daemon{
			{Kind: "pageserver", ID: 1, ListenPG: "127.0.0.1:64000", ListenGRPC: "127.0.0.1:64001", ListenHTTP: "127.0.0.1:9898",
				Healthy: true, Version: "dev", StartedAt: &started, UptimeSeconds: 3723},
			{Kind: "safekeeper", ID: 1, ListenPG: "127.0.0.1:5454", ListenGRPC: "127.0.0.1:7676", Healthy: true, Version: "dev", StartedAt: &started, UptimeSeconds: 60},
			{Kind: "safekeeper", ID: 2, ListenPG: "127.0.0.1:5455", ListenGRPC: "127.0.0.1:7677", Down: true,
				Error: "safekeeper 2 127.0.0.1:7677 is not answering (connection refused): is the cluster up? try `strata local status`"},
		},
		Timelines: []Timeline{
			{Name: "main", ID: "11111111111111111111111111111111",
				Pageserver: &PageserverTimeline{State: "Active", LastRecordLSN: lsn.MustParse("0/16B3D08"), DiskConsistentLSN: lsn.MustParse("0/1600000"),
					WALSource: "127.0.0.1:5454", WALSourceID: 1, LagBytes: 2048, LastReceivedAt: &received},
				Safekeepers: []SafekeeperTimeline{{ID: 1, CommitLSN: lsn.MustParse("0/16B4508"), FlushLSN: lsn.MustParse("0/16B4508")}}},
			{Name: "", ID: "22222222222222222222222222222222", Safekeepers: []SafekeeperTimeline{}},
		},
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	want := `DAEMON      ID  GRPC             PG               HTTP            HEALTH   VERSION  UPTIME
pageserver  1   127.0.0.1:64001  127.0.0.1:64000  127.0.0.1:9898  healthy  dev      1h2m3s
safekeeper  1   127.0.0.1:7676   127.0.0.1:5454   -               healthy  dev      1m0s
safekeeper  2   127.0.0.1:7677   127.0.0.1:5455   -               DOWN     -        -
  safekeeper 2 127.0.0.1:7677 is not answering (connection refused): is the cluster up? try ` + "`strata local status`" + `

tenant 0123456789abcdef0123456789abcdef
TIMELINE  ID                                STATE              LAST RECORD  DISK CONSISTENT  SK1 COMMIT/FLUSH       SK2 COMMIT/FLUSH  WAL SOURCE          LAG
main      11111111111111111111111111111111  Active             0/16B3D08    0/1600000        0/16B4508 / 0/16B4508  ?                 sk1 127.0.0.1:5454  2.0 KiB
-         22222222222222222222222222222222  not on pageserver  -            -                -                      ?                 -                   -
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// strata status -o json encodes a Report.
func TestJSON(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.NewBuffer(b)
	// The field names are an interface: scripts read them.
	var doc struct {
		TenantID  string `json:"tenant_id"`
		Daemons   []map[string]any
		Timelines []struct {
			Name        string
			ID          string
			Pageserver  map[string]any
			Safekeepers []map[string]any
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if doc.TenantID != "0123456789abcdef0123456789abcdef" || len(doc.Daemons) != 3 || len(doc.Timelines) != 2 {
		t.Fatalf("document: %s", buf.String())
	}
	ps := doc.Daemons[0]
	for k, v := range map[string]any{
		"kind": "pageserver", "id": 1.0, "listen_pg": "127.0.0.1:64000", "listen_grpc": "127.0.0.1:64001",
		"listen_http": "127.0.0.1:9898", "healthy": true, "down": false, "version": "dev",
		"started_at": "2026-11-25T10:00:00Z", "uptime_seconds": 3723.0,
	} {
		if ps[k] != v {
			t.Errorf("daemons[0].%s = %v, want %v", k, ps[k], v)
		}
	}
	if _, ok := ps["error"]; ok {
		t.Error("a healthy daemon has an error field")
	}
	down := doc.Daemons[2]
	if down["healthy"] != false || down["down"] != true || !strings.Contains(down["error"].(string), "connection refused") {
		t.Errorf("down safekeeper: %v", down)
	}
	main := doc.Timelines[0]
	for k, v := range map[string]any{
		"state": "Active", "last_record_lsn": "0/16B3D08", "disk_consistent_lsn": "0/1600000",
		"wal_source": "127.0.0.1:5454", "wal_source_id": 1.0, "lag_bytes": 2048.0, "last_received_at": "2026-11-25T10:01:00Z",
	} {
		if main.Pageserver[k] != v {
			t.Errorf("timelines[0].pageserver.%s = %v, want %v", k, main.Pageserver[k], v)
		}
	}
	if main.Name != "main" || len(main.Safekeepers) != 1 || main.Safekeepers[0]["commit_lsn"] != "0/16B4508" ||
		main.Safekeepers[0]["flush_lsn"] != "0/16B4508" || main.Safekeepers[0]["id"] != 1.0 {
		t.Errorf("timelines[0]: %+v", main)
	}
	if doc.Timelines[1].Pageserver != nil || doc.Timelines[1].Safekeepers == nil {
		t.Errorf("timelines[1]: pageserver %v (want null), safekeepers %v (want [])", doc.Timelines[1].Pageserver, doc.Timelines[1].Safekeepers)
	}
	if !strings.Contains(buf.String(), `"safekeepers":[]`) {
		t.Errorf("an empty safekeeper list is not []:\n%s", buf.String())
	}
}

func TestUnhealthy(t *testing.T) {
	bad := sampleReport().Unhealthy()
	if len(bad) != 1 || bad[0].ID != 2 {
		t.Errorf("Unhealthy = %+v", bad)
	}
}
