package timeline

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
)

func sampleListing() *Listing {
	commit := lsn.MustParse("0/3000100")
	l := &Listing{TenantID: "0123456789abcdef0123456789abcdef", Timelines: []Info{
		{Name: "", ID: "ffffffffffffffffffffffffffffffff", State: "Broken", StateError: "ingest failed",
			LastRecordLSN: 0x100, DiskConsistentLSN: 0x100},
		{Name: "main", ID: "11111111111111111111111111111111", State: "Active",
			LastRecordLSN: lsn.MustParse("0/3000100"), DiskConsistentLSN: lsn.MustParse("0/2000000"), SafekeeperCommitLSN: &commit},
		{Name: "before_drop", ID: "22222222222222222222222222222222", State: "Active",
			Ancestor:      &Ancestor{Name: "main", ID: "11111111111111111111111111111111", LSN: lsn.MustParse("0/16B3D08")},
			LastRecordLSN: lsn.MustParse("0/16B3D08"), DiskConsistentLSN: lsn.MustParse("0/16B3D08")},
		{Name: "", ID: "33333333333333333333333333333333", State: "Active",
			Ancestor:      &Ancestor{ID: "ffffffffffffffffffffffffffffffff", LSN: 0x80},
			LastRecordLSN: 0x80, DiskConsistentLSN: 0x80},
	}}
	sortInfos(l.Timelines)
	return l
}

func TestListTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleListing().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	want := `NAME                              ID                                ANCESTOR                               LAST RECORD  DISK CONSISTENT  SAFEKEEPER COMMIT  STATE
before_drop                       22222222222222222222222222222222  main@0/16B3D08                         0/16B3D08    0/16B3D08        -                  Active
main                              11111111111111111111111111111111  -                                      0/3000100    0/2000000        0/3000100          Active
33333333333333333333333333333333  33333333333333333333333333333333  ffffffffffffffffffffffffffffffff@0/80  0/80         0/80             -                  Active
ffffffffffffffffffffffffffffffff  ffffffffffffffffffffffffffffffff  -                                      0/100        0/100            -                  Broken: ingest failed
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// strata timeline list -o json encodes a Listing.
func TestListJSON(t *testing.T) {
	b, err := json.Marshal(sampleListing())
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.NewBuffer(b)
	var doc struct {
		TenantID  string           `json:"tenant_id"`
		Timelines []map[string]any `json:"timelines"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Timelines) != 4 || doc.TenantID == "" {
		t.Fatalf("document:\n%s", buf.String())
	}
	br, main := doc.Timelines[0], doc.Timelines[1]
	anc, _ := br["ancestor"].(map[string]any)
	if br["name"] != "before_drop" || anc["name"] != "main" || anc["lsn"] != "0/16B3D08" || anc["id"] != "11111111111111111111111111111111" {
		t.Errorf("before_drop: %v", br)
	}
	if br["safekeeper_commit_lsn"] != nil {
		t.Errorf("before_drop safekeeper_commit_lsn = %v, want null", br["safekeeper_commit_lsn"])
	}
	for k, v := range map[string]any{"name": "main", "id": "11111111111111111111111111111111", "ancestor": nil,
		"last_record_lsn": "0/3000100", "disk_consistent_lsn": "0/2000000", "state": "Active", "safekeeper_commit_lsn": "0/3000100"} {
		if main[k] != v {
			t.Errorf("main.%s = %v, want %v", k, main[k], v)
		}
	}
	if _, ok := main["state_error"]; ok || !strings.Contains(buf.String(), `"state_error":"ingest failed"`) {
		t.Errorf("state_error only when set:\n%s", buf.String())
	}
}
