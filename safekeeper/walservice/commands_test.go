package walservice

import (
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// SK §10.1 oracle 8 (Neon handler.rs test).
func TestParseStartWALPush(t *testing.T) {
	for _, tc := range []struct {
		q       string
		version pamsg.Version
		create  bool
		err     string
	}{
		{q: "START_WAL_PUSH", version: 2, create: true},
		{q: "START_WAL_PUSH (proto_version '3', allow_timeline_creation 'false', unknown 'hoho')", version: 3, create: false},
		{q: "START_WAL_PUSH (proto_version '2')", version: 2, create: true},
		{q: "START_WAL_PUSH (proto_version '4')", err: "unsupported proto_version"},
		{q: "START_WAL_PUSH (proto_version 'x')", err: "not a number"},
		{q: "START_WAL_PUSH proto_version '3'", err: "parentheses"},
		{q: "START_WAL_PUSH (allow_timeline_creation 'maybe')", err: "true or false"},
		{q: "START_WAL_PUSH (proto_version)", err: "key 'value'"},
	} {
		o, err := parseStartWALPush(tc.q)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v; want %q", tc.q, err, tc.err)
			}
			continue
		}
		if err != nil || o.version != tc.version || o.allowCreation != tc.create {
			t.Errorf("%q = %+v, %v", tc.q, o, err)
		}
	}
}

func TestParseStartReplication(t *testing.T) {
	for _, tc := range []struct {
		q     string
		slot  string
		start lsn.LSN
		term  int64 // -1: none
	}{
		{"START_REPLICATION 0/16B9188", "", 0x16B9188, -1},
		{"START_REPLICATION PHYSICAL 1/0", "", 1 << 32, -1},
		{"START_REPLICATION SLOT \"rs1\" 0/3000000 TIMELINE 1", "\"rs1\"", 0x3000000, -1},
		{"START_REPLICATION SLOT s PHYSICAL 0/0 (term='7')", "s", 0, 7},
		{"START_REPLICATION 0/10 TIMELINE 1", "", 0x10, -1},
	} {
		r, err := parseStartReplication(tc.q)
		if err != nil || r.slot != tc.slot || r.start != tc.start || (tc.term < 0) != (r.term == nil) || (r.term != nil && int64(*r.term) != tc.term) {
			t.Errorf("%q = %+v, %v", tc.q, r, err)
		}
	}
	for _, q := range []string{"START_REPLICATION", "START_REPLICATION x/y", "START_REPLICATION LOGICAL 0/0", "START_REPLICATION 123456789/0"} {
		if r, err := parseStartReplication(q); err == nil {
			t.Errorf("%q parsed: %+v", q, r)
		}
	}
}

func TestFormatSegmentSize(t *testing.T) {
	for n, want := range map[uint64]string{16 << 20: "16MB", 1 << 30: "1GB", 1 << 20: "1MB", 64 << 20: "64MB"} {
		if got := formatSegmentSize(n); got != want {
			t.Errorf("formatSegmentSize(%d) = %q; want %q", n, got, want)
		}
	}
}

func FuzzParseCommands(f *testing.F) {
	for _, s := range []string{"START_WAL_PUSH", "START_WAL_PUSH (proto_version '3', allow_timeline_creation 'false')",
		"START_REPLICATION SLOT x PHYSICAL 0/0 (term='1')", "START_REPLICATION 0/3000000 TIMELINE 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.HasPrefix(q, "START_WAL_PUSH") {
			_, _ = parseStartWALPush(q)
		}
		_, _ = parseStartReplication(q)
	})
}
