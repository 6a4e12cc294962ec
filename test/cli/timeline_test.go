// Package cli_test runs the real bin/strata against real daemons (3
// safekeepers and a pageserver from test/daemons) and real PostgreSQL 15
// computes (test/pgharness) with their walproposer.
package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

var createdLine = regexp.MustCompile(`^created timeline (\S+) \(id ([0-9a-f]{32})\), (?:starting at|branched from (\S+) at) ([0-9A-F]+/[0-9A-F]+)\n$`)

// created parses what `strata timeline create|branch` printed: the id and
// the LSN the timeline starts at.
func created(t *testing.T, r result, name string) (string, lsn.LSN) {
	t.Helper()
	m := createdLine.FindStringSubmatch(r.stdout)
	if m == nil || m[1] != name {
		t.Fatalf("unexpected output for %s:\n%v", name, r)
	}
	return m[2], lsn.MustParse(m[4])
}

// TestTimelinesBasebackupStatus walks the CLI over one cluster: a timeline
// created from initdb on the pageserver, a compute on it (from `strata
// basebackup`, with its walproposer) writing two commits a second apart,
// branches at an LSN and at a time between them, a basebackup at an LSN
// compared with pg_dumpall of the source, status with every daemon up and
// with one killed, and the errors an operator meets.
func TestTimelinesBasebackupStatus(t *testing.T) {
	s := startStorage(t)

	// create: a root timeline bootstrapped on the pageserver, named.
	mainID, start := created(t, s.ok(t, "timeline", "create", "main"), "main")
	if r := s.run(t, "timeline", "create", "main"); r.code != 1 || !strings.Contains(r.stderr, `"main" is timeline `+mainID) {
		t.Errorf("a taken name: %v", r)
	}
	if r := s.run(t, "timeline", "create", "Bad/Name"); r.code != 1 || !strings.Contains(r.stderr, `'B' is not allowed`) {
		t.Errorf("a bad name: %v", r)
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "strata.toml")); err != nil || !strings.Contains(string(b), fmt.Sprintf("main = %q", mainID)) {
		t.Fatalf("strata.toml does not name main %s (%v):\n%s", mainID, err, b)
	}

	// A compute on main from `strata basebackup` (the last record), with a
	// walproposer: commits wait for the safekeepers.
	primary, summary := s.computeFromCLI(t, computeOptions(
		pgharness.WithConf("synchronous_standby_names", "walproposer"),
		pgharness.WithConf("synchronous_commit", "on")), "--timeline", "main")
	if !strings.Contains(summary, "basebackup of main at "+start.String()+" into "+primary.DataDir()) || !strings.Contains(summary, " files in ") {
		t.Errorf("basebackup summary: %q", summary)
	}
	s.streamToSafekeepers(t, primary, mainID, start)

	// Commit A; a time after it; a second later, commit B.
	primary.Exec(t, "CREATE TABLE marker (id int PRIMARY KEY, note text)")
	primary.Exec(t, "INSERT INTO marker VALUES (1, 'A')")
	afterA := s.waitIngested(t, "main", primary.RecordEndBound(t))
	var between time.Time
	primary.QueryRow(t, "SELECT clock_timestamp()").Scan(&between)
	primary.Exec(t, "SELECT pg_sleep(1)")
	primary.Exec(t, "INSERT INTO marker VALUES (2, 'B')")
	afterB := s.waitIngested(t, "main", primary.RecordEndBound(t))
	t.Logf("A ingested by %s, B (a second later) by %s; a time between: %s", afterA, afterB, between.Format(time.RFC3339Nano))

	// branch --at LSN.
	_, at := created(t, s.ok(t, "timeline", "branch", "at_a", "--from", "main", "--at", afterA.String()), "at_a")
	if at != afterA {
		t.Errorf("branch at %s starts at %s", afterA, at)
	}
	// branch --at a time, in two of its forms: the same LSN, between A and B.
	rt := s.ok(t, "timeline", "branch", "before_b", "--at", between.UTC().Format(time.RFC3339Nano))
	brID, atTime := created(t, rt, "before_b")
	ru := s.ok(t, "timeline", "branch", "before_b_unix", "--at", fmt.Sprintf("@%d.%06d", between.Unix(), between.Nanosecond()/1000))
	if _, l := created(t, ru, "before_b_unix"); l != atTime {
		t.Errorf("--at @unix gave %s, --at RFC 3339 %s", l, atTime)
	}
	if atTime <= start || atTime >= afterB {
		t.Errorf("branch at %s starts at %s, not between A (%s) and B (%s)", between, atTime, afterA, afterB)
	}
	// The branch has A and not B.
	br, _ := s.computeFromCLI(t, computeOptions(), "--timeline", "before_b")
	var notes string
	br.QueryRow(t, "SELECT string_agg(note, ',' ORDER BY id) FROM marker").Scan(&notes)
	if notes != "A" {
		t.Errorf("branch before_b at %s has markers %q, want just A", atTime, notes)
	}
	// A time after every commit: the last record, with a note.
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	rf := s.ok(t, "timeline", "branch", "future", "--at", future)
	if _, l := created(t, rf, "future"); l < afterB || !strings.Contains(rf.stderr, "note: no commit on main is after") {
		t.Errorf("branch at a future time: starts at %s (B ends by %s):\n%v", l, afterB, rf)
	}

	// list: names, ancestors as name@LSN, LSNs; JSON and table.
	tls := s.timelines(t)
	if m := tls["main"]; m.ID != mainID || m.Ancestor != nil || m.LastRecordLSN < afterB || m.State != "Active" ||
		m.SafekeeperCommitLSN == nil || *m.SafekeeperCommitLSN < afterB {
		t.Errorf("main listed as %+v", m)
	}
	if b := tls["before_b"]; b.ID != brID || b.Ancestor == nil || b.Ancestor.Name != "main" || b.Ancestor.LSN != atTime {
		t.Errorf("before_b listed as %+v", b)
	}
	table := s.ok(t, "timeline", "list").stdout
	t.Logf("strata timeline list:\n%s", table)
	for _, want := range []string{"NAME", "before_b ", "main@" + atTime.String(), "at_a ", "main@" + afterA.String(), mainID} {
		if !strings.Contains(table, want) {
			t.Errorf("timeline list does not show %q:\n%s", want, table)
		}
	}

	// basebackup at an LSN: a server on it dumps as the primary did there.
	primary.Exec(t, "CREATE TABLE after_b AS SELECT g, md5(g::text) AS h FROM generate_series(1, 2000) g")
	primary.Exec(t, "UPDATE marker SET note = note || ' updated'")
	dump := primary.DumpAll(t) // nothing writes from here on
	end := s.waitIngested(t, "main", primary.RecordEndBound(t))
	copyAtEnd, summary := s.computeFromCLI(t, computeOptions(), "--timeline", "main", "--lsn", end.String())
	if !strings.Contains(summary, " at "+end.String()+" ") {
		t.Errorf("basebackup --lsn %s summary: %q", end, summary)
	}
	if got := copyAtEnd.DumpAll(t); got != dump {
		t.Errorf("pg_dumpall of a basebackup at %s differs from the primary's:\n%s", end, pgharness.DumpDiff(dump, got))
	}

	checkErrors(t, s, afterB, atTime)
	checkStatus(t, s, mainID, afterB)
}

// checkErrors: what an operator gets wrong, and clear messages for it.
func checkErrors(t *testing.T, s *storage, end, branchPoint lsn.LSN) {
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"basebackup", "--timeline", "nope", "-o", filepath.Join(t.TempDir(), "x")}, 1,
			[]string{`no timeline named "nope"`, "before_b", "main"}},
		{[]string{"timeline", "branch", "x", "--from", "nope"}, 1, []string{`no timeline named "nope"`, "at_a"}},
		{[]string{"timeline", "branch", "x", "--at", "0/XYZ"}, 2, []string{`--at "0/XYZ" is not an LSN`}},
		{[]string{"timeline", "branch", "x", "--at", "yesterday"}, 2, []string{`--at "yesterday"`, "RFC 3339"}},
		{[]string{"basebackup", "--lsn", "16B3D08", "-o", filepath.Join(t.TempDir(), "x")}, 2, []string{`--lsn "16B3D08" is not an LSN`}},
		{[]string{"basebackup", "-o", s.dir}, 1, []string{"is not empty"}},
		// Beyond the end: the pageserver waits for WAL that never comes.
		{[]string{"timeline", "branch", "far", "--at", (end + 1<<30).String(), "--timeout", "2s"}, 1,
			[]string{"did not answer within 2s", "beyond the last record of main"}},
		// Before the first commit main holds.
		{[]string{"timeline", "branch", "x", "--at", "2001-01-01T00:00:00Z"}, 1, []string{"2001-01-01T00:00:00Z is before the first commit timeline main holds"}},
		// Below a branch's start.
		{[]string{"basebackup", "--timeline", "before_b", "--lsn", (branchPoint - 0x1000).String(), "-o", filepath.Join(t.TempDir(), "y")}, 1,
			[]string{"cannot serve that LSN"}},
	} {
		r := s.run(t, tc.args...)
		t.Logf("strata %s: exit %d: %s", strings.Join(tc.args, " "), r.code, strings.TrimSpace(r.stderr))
		ok := r.code == tc.code
		for _, w := range tc.want {
			ok = ok && strings.Contains(r.stderr, w)
		}
		if !ok {
			t.Errorf("want exit %d and %q:\n%v", tc.code, tc.want, r)
		}
	}
	if _, ok := s.timelines(t)["far"]; ok {
		t.Error("a branch that timed out was named")
	}
	if _, err := os.Stat(filepath.Join(s.dir, "y")); err == nil {
		t.Error("a failed basebackup left its directory")
	}

	checkInterrupt(t, s, end)

	// A pageserver that is not there.
	down := t.TempDir()
	toml := fmt.Sprintf("tenant_id = %q\n[pageserver]\nid = 1\nlisten_pg = %q\nlisten_grpc = %q\n[[safekeepers]]\nid = 1\nlisten_pg = %q\nlisten_grpc = %q\n",
		s.tenant, daemons.FreePort(t), daemons.FreePort(t), daemons.FreePort(t), daemons.FreePort(t))
	if err := os.WriteFile(filepath.Join(down, "strata.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runStrata(t, s.bin, down, "timeline", "list")
	if r.code != 1 || !regexp.MustCompile(`pageserver 127\.0\.0\.1:\d+ is not answering \(connection refused\): is the cluster up\? try .strata local status.`).MatchString(r.stderr) {
		t.Errorf("pageserver down: %v", r)
	}
	if r := runStrata(t, s.bin, t.TempDir(), "status"); r.code != 1 || !strings.Contains(r.stderr, "strata.toml does not exist") {
		t.Errorf("no cluster file: %v", r)
	}
}

// checkInterrupt: Ctrl-C during a basebackup (here one waiting for WAL
// that never comes) stops it and removes the directory it created.
func checkInterrupt(t *testing.T, s *storage, end lsn.LSN) {
	dir := filepath.Join(t.TempDir(), "interrupted")
	cmd := exec.Command(s.bin, "--dir", s.dir, "basebackup", "--lsn", (end + 1<<30).String(), "-o", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	walcheck.WaitFor(t, "strata basebackup to create its directory", 30*time.Second, func() (bool, string) {
		_, err := os.Stat(dir)
		return err == nil, fmt.Sprint(err)
	})
	// The signal may come before the stream starts or while it waits:
	// either way the context ends it.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "removed "+dir) {
		t.Errorf("basebackup interrupted: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the interrupted basebackup left %s (%v)", dir, err)
	}
}

// statusDoc is `strata status -o json`.
type statusDoc struct {
	TenantID string `json:"tenant_id"`
	Daemons  []struct {
		Kind          string `json:"kind"`
		ID            uint64 `json:"id"`
		ListenGRPC    string `json:"listen_grpc"`
		Healthy       bool   `json:"healthy"`
		Down          bool   `json:"down"`
		Error         string `json:"error"`
		Version       string `json:"version"`
		UptimeSeconds int64  `json:"uptime_seconds"`
	} `json:"daemons"`
	Timelines []struct {
		Name       string `json:"name"`
		ID         string `json:"id"`
		Pageserver *struct {
			LastRecordLSN     lsn.LSN `json:"last_record_lsn"`
			DiskConsistentLSN lsn.LSN `json:"disk_consistent_lsn"`
			WALSource         string  `json:"wal_source"`
			LagBytes          uint64  `json:"lag_bytes"`
		} `json:"pageserver"`
		Safekeepers []struct {
			ID        uint64  `json:"id"`
			CommitLSN lsn.LSN `json:"commit_lsn"`
			FlushLSN  lsn.LSN `json:"flush_lsn"`
		} `json:"safekeepers"`
	} `json:"timelines"`
}

func checkStatus(t *testing.T, s *storage, mainID string, end lsn.LSN) {
	r := s.ok(t, "status")
	t.Logf("strata status:\n%s", r.stdout)
	for _, want := range []string{"pageserver  1", "safekeeper  3", "healthy", "main", mainID, "SK2 COMMIT/FLUSH", s.tenant.String()} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "healthy"); n != 4 {
		t.Errorf("%d daemons healthy, want 4:\n%s", n, r.stdout)
	}

	doc := statusJSON(t, s.ok(t, "status", "-o", "json"))
	if len(doc.Daemons) != 4 {
		t.Fatalf("%d daemons", len(doc.Daemons))
	}
	for _, d := range doc.Daemons {
		if !d.Healthy || d.Down || d.Error != "" || d.Version == "" {
			t.Errorf("daemon %+v", d)
		}
	}
	var main bool
	for _, tl := range doc.Timelines {
		if tl.Name != "main" {
			continue
		}
		main = true
		if tl.ID != mainID || tl.Pageserver == nil || tl.Pageserver.LastRecordLSN < end || tl.Pageserver.WALSource == "" || len(tl.Safekeepers) != 3 {
			t.Errorf("main in status: %+v", tl)
		}
		for _, sk := range tl.Safekeepers {
			if sk.CommitLSN < end || sk.FlushLSN < sk.CommitLSN {
				t.Errorf("safekeeper %d: commit %s, flush %s; WAL reaches %s", sk.ID, sk.CommitLSN, sk.FlushLSN, end)
			}
		}
	}
	if !main {
		t.Errorf("no main in status -o json")
	}

	// A safekeeper down: shown as down with the reason, the rest still
	// printed, exit code 1.
	s.sks[1].Kill()
	r = s.run(t, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "DOWN") || !strings.Contains(r.stdout, "safekeeper 2 "+s.sks[1].GRPCAddr+" is not answering (connection refused)") ||
		strings.Count(r.stdout, "healthy") != 3 || !strings.Contains(r.stdout, mainID) || !strings.Contains(r.stderr, "1 of 4 daemons not healthy: safekeeper 2") {
		t.Errorf("status with safekeeper 2 killed:\n%v", r)
	}
	t.Logf("strata status, safekeeper 2 killed:\n%v", r)
	// timeline list still works, and says what it could not read.
	r = s.ok(t, "timeline", "list")
	if !strings.Contains(r.stderr, "warning: no commit LSNs from safekeeper 2 "+s.sks[1].GRPCAddr+" is not answering") || !strings.Contains(r.stdout, mainID) {
		t.Errorf("timeline list with safekeeper 2 killed:\n%v", r)
	}
	r = s.run(t, "status", "-o", "json")
	doc = statusJSON(t, r)
	if r.code != 1 || !doc.Daemons[2].Down || doc.Daemons[2].ID != 2 || !strings.Contains(doc.Daemons[2].Error, "connection refused") || !doc.Daemons[1].Healthy {
		t.Errorf("status -o json with safekeeper 2 killed:\n%v", r)
	}
}

func statusJSON(t *testing.T, r result) statusDoc {
	t.Helper()
	var doc statusDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("status -o json: %v\n%v", err, r)
	}
	return doc
}
