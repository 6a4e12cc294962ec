package control

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/pamsg"
)

// goldenJoint is the state of the "v10 joint" golden vector.
func goldenJoint(t *testing.T) *State {
	t.Helper()
	for _, v := range specGoldenVectors() {
		if v.name == "v10 joint" {
			return v.want()
		}
	}
	t.Fatal("no v10 joint vector")
	return nil
}

// The field names and value shapes are those of Neon's serde output.
const goldenJointJSON = `{
  "tenant_id": "cf0480929707ee75372337efaa5ecf96",
  "timeline_id": "112ded66422aa5e953e5440fa5427ac4",
  "mconf": {
    "generation": 7,
    "members": [
      {"id": 1, "host": "sk-1.local", "pg_port": 5454},
      {"id": 2, "host": "sk-2.local", "pg_port": 5454}
    ],
    "new_members": [{"id": 3, "host": "sk-3.local", "pg_port": 5454}]
  },
  "acceptor_state": {
    "term": 3,
    "term_history": [{"term": 2, "lsn": "0/1000028"}, {"term": 3, "lsn": "0/2534868"}]
  },
  "server": {"pg_version": 150004, "system_id": 1311768467139281697, "wal_seg_size": 16777216},
  "proposer_uuid": "00000000000000000000000000000000",
  "timeline_start_lsn": "0/1000028",
  "local_start_lsn": "0/1000028",
  "commit_lsn": "0/2534410",
  "backup_lsn": "0/2000000",
  "peer_horizon_lsn": "0/2534410",
  "remote_consistent_lsn": "0/2400000",
  "partial_backup": {"segments": [{
    "status": "Uploaded",
    "name": "000000010000000000000002_2_0000000002534868_0000000002534410_sk1.partial",
    "commit_lsn": "0/2534410",
    "flush_lsn": "0/2534868",
    "term": 2
  }]},
  "eviction_state": {"Offloaded": "0/2534868"},
  "creation_ts": {"secs_since_epoch": 1742891223, "nanos_since_epoch": 123456789}
}`

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestMarshalJSONGolden(t *testing.T) {
	got, err := json.Marshal(goldenJoint(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := compact(t, goldenJointJSON); string(got) != want {
		t.Fatalf("JSON\n got %s\nwant %s", got, want)
	}
	var back State
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(goldenJoint(t)) {
		t.Fatalf("round trip = %+v", back)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for name, s := range map[string]*State{
		"full":   fullState(),
		"legacy": neonLegacyState(pamsg.TermHistory{{Term: 43}}, 1),
		"empty joint": func() *State {
			s := fullState()
			s.Mconf.NewMembers = []pamsg.SafekeeperID{}
			return s
		}(),
		"zero": {CreationTS: time.Unix(0, 0)},
	} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var back State
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		if !back.Equal(s) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", name, back, s)
		}
		if (back.Mconf.NewMembers == nil) != (s.Mconf.NewMembers == nil) {
			t.Errorf("%s: joint-ness lost", name)
		}
	}
}

func TestMarshalJSONShapes(t *testing.T) {
	b, err := json.Marshal(&State{CreationTS: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"eviction_state":"Present"`,
		`"members":[]`,
		`"new_members":null`,
		`"term_history":[]`,
		`"partial_backup":{"segments":[]}`,
		`"commit_lsn":"0/0"`,
		`"creation_ts":{"secs_since_epoch":0,"nanos_since_epoch":0}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if _, err := json.Marshal(&State{}); err == nil {
		t.Error("marshalled a creation time before the epoch")
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	good := compact(t, goldenJointJSON)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"missing top-level field", `"commit_lsn":"0/2534410",`, ``, `missing field "commit_lsn"`},
		{"missing nested field", `"pg_version":150004,`, ``, `missing field "pg_version"`},
		{"missing member field", `{"id":1,"host":"sk-1.local","pg_port":5454}`, `{"id":1,"host":"sk-1.local"}`, `missing field "pg_port"`},
		{"null field", `"commit_lsn":"0/2534410"`, `"commit_lsn":null`, `field "commit_lsn" is null`},
		{"bad lsn", `"commit_lsn":"0/2534410"`, `"commit_lsn":"x"`, "invalid LSN"},
		{"bad id", `"tenant_id":"cf04`, `"tenant_id":"zz04`, "invalid id"},
		{"bad eviction name", `{"Offloaded":"0/2534868"}`, `"Gone"`, "eviction_state"},
		{"bad eviction object", `{"Offloaded":"0/2534868"}`, `{"Evicted":"0/1"}`, "eviction_state"},
		{"bad upload status", `"Uploaded"`, `"Done"`, "unknown upload status"},
		{"creation out of range", `"secs_since_epoch":1742891223`, `"secs_since_epoch":18446744073709551615`, "out of range"},
		{"not an object", good, `[]`, "cannot unmarshal array"},
		{"null state", good, `null`, "want an object"},
	} {
		in := strings.Replace(good, tc.from, tc.to, 1)
		if in == good {
			t.Fatalf("%s: replacement did not apply", tc.name)
		}
		var s State
		err := json.Unmarshal([]byte(in), &s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// new_members is a Rust Option: absent and null both mean "not joint".
func TestUnmarshalJSONNewMembersOptional(t *testing.T) {
	good := compact(t, goldenJointJSON)
	for _, repl := range []string{`,"new_members":null`, ``} {
		in := strings.Replace(good, `,"new_members":[{"id":3,"host":"sk-3.local","pg_port":5454}]`, repl, 1)
		var s State
		if err := json.Unmarshal([]byte(in), &s); err != nil {
			t.Fatalf("%q: %v", repl, err)
		}
		if s.Mconf.NewMembers != nil {
			t.Errorf("%q: NewMembers = %v, want nil", repl, s.Mconf.NewMembers)
		}
	}
}
