package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"strata.dev/libs/lsn"
	"strata.dev/test/walcheck"
)

// state is what must survive a compute restart: pgbench's committed
// transactions and a table of known rows.
type state struct {
	Balance, History, Markers int64
	Notes                     string
}

func readState(t *testing.T, uri string) state {
	t.Helper()
	conn := connect(t, uri)
	defer conn.Close(context.Background())
	var s state
	ctx := context.Background()
	if err := conn.QueryRow(ctx, "SELECT sum(abalance)::int8 FROM pgbench_accounts").Scan(&s.Balance); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&s.History); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*), string_agg(id || ':' || note, ',' ORDER BY id) FROM marker").Scan(&s.Markers, &s.Notes); err != nil {
		t.Fatal(err)
	}
	return s
}

func connect(t *testing.T, uri string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, uri+"?sslmode=disable")
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// statusReport is the part of `strata status -o json` the test reads.
type statusReport struct {
	Daemons []struct {
		Kind    string `json:"kind"`
		ID      uint64 `json:"id"`
		Healthy bool   `json:"healthy"`
		Error   string `json:"error"`
	} `json:"daemons"`
	Timelines []struct {
		Name       string `json:"name"`
		Pageserver *struct {
			LastRecordLSN string `json:"last_record_lsn"`
		} `json:"pageserver"`
		Safekeepers []struct {
			ID        uint64 `json:"id"`
			CommitLSN string `json:"commit_lsn"`
		} `json:"safekeepers"`
	} `json:"timelines"`
}

// mainLSNs runs `strata status -o json`, checks that every daemon is
// healthy, and returns timeline main's last record on the pageserver and
// its lowest commit LSN on the safekeepers.
func mainLSNs(t *testing.T, c *cli) (pageserver, safekeepers lsn.LSN) {
	t.Helper()
	var r statusReport
	if err := json.Unmarshal([]byte(c.ok("status", "-o", "json")), &r); err != nil {
		t.Fatalf("strata status -o json: %v", err)
	}
	if len(r.Daemons) != 4 {
		t.Errorf("strata status shows %d daemons, want 4", len(r.Daemons))
	}
	for _, d := range r.Daemons {
		if !d.Healthy {
			t.Errorf("strata status: %s %d not healthy: %s", d.Kind, d.ID, d.Error)
		}
	}
	for _, tl := range r.Timelines {
		if tl.Name != "main" {
			continue
		}
		if tl.Pageserver == nil || len(tl.Safekeepers) != 3 {
			t.Fatalf("strata status: timeline main on the pageserver %v, on %d safekeepers", tl.Pageserver, len(tl.Safekeepers))
		}
		ps := lsn.MustParse(tl.Pageserver.LastRecordLSN)
		sk := lsn.LSN(1<<64 - 1)
		for _, s := range tl.Safekeepers {
			sk = min(sk, lsn.MustParse(s.CommitLSN))
		}
		return ps, sk
	}
	t.Fatal("strata status: no timeline main")
	return 0, 0
}

// Issue 8, acceptance 1, and everything `strata local` and `strata
// compute` promise: a new cluster in one command, pgbench through the URI
// it prints, `strata status` with LSNs advancing, a compute restart from
// storage that loses nothing, a static read-only compute at an earlier LSN,
// one read-write compute per timeline, a branch at a time before a DROP
// TABLE with the table back on its compute, and `strata local down`
// leaving no process behind.
func TestLocalCluster(t *testing.T) {
	ctx := context.Background()
	c := newCLI(t)
	flags, primaryPort := portFlags(t)

	out := c.ok(append(append([]string{"local", "up"}, flags...), "--pg-option", "work_mem=7MB")...)
	uri := lastURI(t, out)
	if want := "postgresql://postgres@127.0.0.1:" + primaryPort + "/postgres"; uri != want {
		t.Fatalf("strata local up printed %s, want %s", uri, want)
	}
	conn := connect(t, uri)
	for setting, want := range map[string]string{"work_mem": "7MB", "synchronous_standby_names": "walproposer", "synchronous_commit": "on"} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s on the primary: %q, %v; want %q", setting, got, err, want)
		}
	}

	// pgbench, and LSNs advancing on every daemon.
	pgbench(t, uri, "-i", "-s", "1", "-q")
	ps0, sk0 := mainLSNs(t, c)
	pgbench(t, uri, "-T", "3", "-c", "2", "-n")
	exec1(t, conn, "CREATE TABLE marker (id int PRIMARY KEY, note text)")
	for i := 1; i <= 3; i++ {
		exec1(t, conn, "INSERT INTO marker VALUES ($1, 'early')", i)
	}
	var early string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&early); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		exec1(t, conn, "INSERT INTO marker VALUES ($1, 'late')", i)
	}
	conn.Close(ctx)
	before := readState(t, uri)
	walcheck.WaitFor(t, "LSNs to advance in strata status", time.Minute, func() (bool, string) {
		ps, sk := mainLSNs(t, c)
		return ps > ps0 && sk > sk0, "pageserver " + ps0.String() + " -> " + ps.String() + ", safekeepers " + sk0.String() + " -> " + sk.String()
	})

	// A restart from storage loses nothing committed, and the primary keeps
	// taking writes.
	c.ok("local", "compute", "restart")
	if got := readState(t, uri); got != before {
		t.Errorf("after compute restart: %+v, committed before: %+v", got, before)
	}
	pgbench(t, uri, "-t", "20", "-c", "1", "-n")

	// A static read-only compute at an earlier LSN sees the state there and
	// refuses writes.
	roURI := lastURI(t, c.ok("compute", "start", "--timeline", "main", "--lsn", early, "--port", freePort(t)))
	if roURI == uri {
		t.Fatalf("the read-only compute got the primary's URI %s", roURI)
	}
	ro := connect(t, roURI)
	var notes string
	if err := ro.QueryRow(ctx, "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM marker").Scan(&notes); err != nil {
		t.Fatal(err)
	}
	if want := "1:early,2:early,3:early"; notes != want {
		t.Errorf("read-only compute at %s: markers %q, want %q", early, notes, want)
	}
	if _, err := ro.Exec(ctx, "INSERT INTO marker VALUES (100, 'no')"); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a write on the read-only compute: %v, want a read-only error", err)
	}
	ro.Close(ctx)

	// One read-write compute per timeline.
	errOut := c.fail("compute", "start", "--timeline", "main", "--name", "second")
	if !strings.Contains(errOut, "already has a read-write compute, main") {
		t.Errorf("a second read-write compute on main: %q, want the running one named", errOut)
	}

	// A branch at a time before DROP TABLE has the table back.
	conn = connect(t, uri)
	var beforeDrop time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&beforeDrop); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	exec1(t, conn, "DROP TABLE marker")
	conn.Close(ctx)
	c.ok("timeline", "branch", "old", "--at", beforeDrop.UTC().Format(time.RFC3339Nano))
	oldURI := lastURI(t, c.ok("compute", "start", "--timeline", "old", "--port", freePort(t)))
	if got := readState(t, oldURI); got.Notes != before.Notes {
		t.Errorf("compute on branch old: markers %q, want %q as before the DROP TABLE", got.Notes, before.Notes)
	}
	mc := connect(t, uri)
	var n int
	if err := mc.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'marker'").Scan(&n); err != nil || n != 0 {
		t.Errorf("marker on main after DROP TABLE: %d, %v", n, err)
	}
	mc.Close(ctx)

	// Everything runs; `up` again changes nothing; down stops it all.
	for _, l := range strings.Split(strings.TrimSpace(c.ok("local", "status")), "\n")[1:] {
		if !strings.Contains(l, " running ") {
			t.Errorf("strata local status: %q is not running", l)
		}
	}
	var computes []struct {
		Name, Timeline, Mode, URI string
		Running                   bool
	}
	if err := json.Unmarshal([]byte(c.ok("compute", "list", "-o", "json")), &computes); err != nil {
		t.Fatalf("strata compute list -o json: %v", err)
	}
	if len(computes) != 3 {
		t.Errorf("strata compute list: %+v, want the primary, the read-only compute and old's", computes)
	}
	for _, ci := range computes {
		if !ci.Running || ci.URI == "" || (ci.Name == "main" && (ci.Mode != "read-write" || ci.URI != uri)) {
			t.Errorf("strata compute list: %+v", ci)
		}
	}
	if out := c.ok("local", "up"); !strings.Contains(out, "everything was already running") {
		t.Errorf("local up on a running cluster did not say so")
	}
	pids := c.pidFiles()
	// 3 safekeepers, the pageserver, 3 computes, 2 walproposers.
	if len(pids) != 9 {
		t.Errorf("pid files: %v, want 9", pids)
	}
	out = c.ok("local", "down")
	for name, pid := range pids {
		if running(pid) {
			t.Errorf("%s: pid %d still runs after strata local down", name, pid)
		}
	}
	if !strings.Contains(out, "stopped 9 processes") {
		t.Errorf("strata local down did not report 9 processes stopped")
	}
	if left := c.pidFiles(); len(left) != 0 {
		t.Errorf("pid files left after down: %v", left)
	}
	if out := c.ok("local", "down"); !strings.Contains(out, "nothing was running") {
		t.Errorf("a second down: %q", out)
	}
}

// Bad input to `strata local up` and `strata compute start` is a clear
// error that starts nothing: a taken port names the flag that changes it.
func TestLocalUpErrors(t *testing.T) {
	c := newCLI(t)
	flags, _ := portFlags(t)
	ln := listen(t)
	flags = append(flags, "--pageserver-grpc-port", ln)
	errOut := c.fail(append([]string{"local", "up"}, flags...)...)
	if !strings.Contains(errOut, "port "+ln+", for pageserver gRPC, is taken") || !strings.Contains(errOut, "--pageserver-grpc-port") {
		t.Errorf("a taken port: %q", errOut)
	}
	if len(c.pidFiles()) != 0 {
		t.Errorf("a failed up left processes: %v", c.pidFiles())
	}
	if r := c.run("local", "up", "--pg-option", "port=1"); r.code != 2 || !strings.Contains(r.stderr, "strata sets it") {
		t.Errorf("--pg-option port=1: exit %d, %q", r.code, r.stderr)
	}
	if errOut := c.fail("compute", "start", "--timeline", "main"); !strings.Contains(errOut, "strata local up") {
		t.Errorf("compute start without a cluster: %q", errOut)
	}
	if out := c.ok("local", "down"); !strings.Contains(out, "nothing to stop") {
		t.Errorf("down without a cluster: %q", out)
	}
}
