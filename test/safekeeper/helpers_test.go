package safekeeper_test

import (
	"strconv"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

func walLSN(t *testing.T, c *pgharness.Cluster, expr string) lsn.LSN {
	t.Helper()
	var s string
	c.QueryRow(t, "SELECT "+expr+"::text").Scan(&s)
	l, err := lsn.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func pgVersionNum(t *testing.T, c *pgharness.Cluster) uint32 {
	t.Helper()
	var s string
	c.QueryRow(t, "SHOW server_version_num").Scan(&s)
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	walcheck.WaitFor(t, what, timeout, cond)
}

func timeline(t *testing.T, sk *daemons.Safekeeper, ttid id.TenantTimeline) *pb.TimelineInfo {
	t.Helper()
	return sk.Timeline(t, ttid)
}
