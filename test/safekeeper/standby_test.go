package safekeeper_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/pamsg"
	"strata.dev/test/pgharness"
)

// A vanilla PostgreSQL standby whose primary_conninfo points at a
// safekeeper streams from it and replays the primary's transactions; its
// status replies and hot-standby feedback reach the safekeeper.
func TestStandbyStreamsFromSafekeeper(t *testing.T) {
	e := newEnv(t, pamsg.V3, 3)
	e.primary.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	e.primary.Exec(t, "INSERT INTO t SELECT g, 'before the standby' FROM generate_series(1, 1000) g")
	sk := e.sks[0]
	host, port, _ := strings.Cut(sk.PGAddr, ":")
	conninfo := fmt.Sprintf("host=%s port=%s application_name=standby1 options='-c tenant_id=%s timeline_id=%s'", host, port, e.ttid.Tenant, e.ttid.Timeline)
	standby := pgharness.NewStandby(t, e.primary,
		pgharness.WithConf("primary_conninfo", conninfo),
		pgharness.WithConf("hot_standby_feedback", "on"),
		pgharness.WithConf("wal_receiver_status_interval", "1s"))
	e.primary.Exec(t, "INSERT INTO t SELECT g, 'after' FROM generate_series(1001, 2000) g")
	waitFor(t, "the standby to replay from the safekeeper", 60*time.Second, func() (bool, string) {
		var n int
		standby.QueryRow(t, "SELECT count(*) FROM t").Scan(&n)
		return n == 2000, fmt.Sprintf("%d rows", n)
	})
	var inRecovery bool
	standby.QueryRow(t, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	if !inRecovery {
		t.Fatal("the standby is not in recovery")
	}
	// It streams from the safekeeper, not from the primary.
	var n int
	e.primary.QueryRow(t, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1'").Scan(&n)
	if n != 0 {
		t.Fatal("the standby is connected to the primary")
	}
	waitFor(t, "the standby's feedback on the safekeeper", 30*time.Second, func() (bool, string) {
		for _, s := range timeline(t, sk, e.ttid).Senders {
			if s.AppName == "standby1" && s.Kind == "standby" && s.FlushLsn > 0 && s.Xmin > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprint(timeline(t, sk, e.ttid).Senders)
	})
}
