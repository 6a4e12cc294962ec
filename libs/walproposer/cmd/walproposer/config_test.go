package main

import (
	"bytes"
	"strings"
	"testing"
)

// The example in deploy/ must stay valid.
func TestDeployExample(t *testing.T) {
	c, err := parseConfig([]string{"--config", "../../../../deploy/config/walproposer.toml"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Safekeepers) != 3 || c.AppName != "walproposer" || c.ttid.Tenant.String() != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("example parsed as %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tenant-id", "x"}, "--safekeepers is required"},
		{[]string{"--safekeepers", "a:1", "--tenant-id", "zz"}, "--tenant-id"},
		{[]string{"--safekeepers", "nohost", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef", "--pgconn", "x"}, "not host:port"},
		{[]string{"--safekeepers", "a:1", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef"}, "--pgconn is required"},
		{[]string{"--safekeepers", "a:1", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef", "--pgconn", "x", "--start-lsn", "nope"}, "--start-lsn"},
		{[]string{"--safekeepers", "a:1", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef", "--sync-safekeepers", "--proto-version", "4"}, "--proto-version"},
		{[]string{"--safekeepers", "a:1", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef", "--sync-safekeepers", "--procs", "-1"}, "--procs"},
	} {
		_, err := parseConfig(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.args, err, tc.want)
		}
	}
	c, err := parseConfig([]string{"--sync-safekeepers", "--safekeepers", "a:1, b:2,c:3", "--tenant-id", "0123456789abcdef0123456789abcdef", "--timeline-id", "0123456789abcdef0123456789abcdef"}, &bytes.Buffer{})
	if err != nil || len(c.Safekeepers) != 3 || c.Safekeepers[1] != "b:2" || c.Procs != 1 {
		t.Fatalf("sync mode config: %+v, procs %d, %v", c.Safekeepers, c.Procs, err)
	}
}
