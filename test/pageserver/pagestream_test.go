package pageserver_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pageservice"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// Acceptance 4 of issue 7: the pagestream protocol on the pageserver's
// libpq port answers what the primary's files say after its shutdown
// checkpoint. Relation sizes, existence, every page of a few relations
// (under pagecheck.MaskPage), a CLOG segment and a database size; a
// request ahead of ingest times out with a clear error; bad requests get
// errors and the server goes on.
func TestPagestream(t *testing.T) {
	ctx := context.Background()
	primary := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart(), pgharness.WithConf("max_wal_size", "4GB")},
		computeOptions()...)...)
	c := newCluster(t, primary)
	// Small layers and frequent compaction: pages come from image layers,
	// deltas and the WAL-redo pool. A short wait: the future-LSN request
	// must give up quickly.
	ps := c.startPageserver(t, "--wait-lsn-timeout", "2s")
	c.startFromInitdb(t, ps)

	pagecheck.Workload(t, ctx, primary)
	primary.Exec(t, "CHECKPOINT")
	snapshot := pagecheck.SnapshotSQL(t, ctx, primary)
	var postgresDB int64
	primary.QueryRow(t, "SELECT oid::int8 FROM pg_database WHERE datname = 'postgres'").Scan(&postgresDB)
	db := uint32(postgresDB)
	rels := mainForks(t, primary, "pgbench_accounts", "pgbench_accounts_pkey", "pg_class", "t1_v")
	var accounts int64
	primary.QueryRow(t, "SELECT count(*) FROM pgbench_accounts").Scan(&accounts)
	primary.Stop(t)
	end := walcheck.LatestCheckpoint(t, primary)
	final := ps.WaitLastRecord(t, c.ttid, end+1, time.Minute).LastRecordLSN
	t.Logf("pageserver at %s", final)

	dial := func(v pageservice.Version) *pageservice.Client { return ps.Pagestream(t, c.ttid, v) }
	cl := dial(pageservice.V3)

	// Sizes of every logged, non-FSM fork (the FSM is not WAL-logged) at
	// the latest LSN, as a primary asks, and at the final LSN.
	disk := pagecheck.DiskForks(t, primary.DataDir())
	sized := 0
	for rel, n := range disk {
		if rel.Fork == key.ForkFSM || snapshot.Unlogged[rel] {
			continue
		}
		got, err := cl.Nblocks(rel, lsn.Invalid)
		if err != nil {
			t.Errorf("nblocks %s: %v", rel, err)
			continue
		}
		if got != n {
			t.Errorf("nblocks %s: %d, primary's file %d", rel, got, n)
		}
		sized++
	}
	t.Logf("nblocks of %d relation forks equal to the primary's files", sized)

	// Every page of a few relations at the final LSN.
	pages, err := comparePages(t, cl, primary, rels, final)
	if err != nil {
		t.Error(err)
	}
	t.Logf("%d pages equal to the primary's under MaskPage", pages)
	// Beyond the end: a zero page, as Neon answers.
	acc := rels["pgbench_accounts"]
	if page, err := cl.GetPage(acc, disk[acc]+10, final); err != nil || !bytes.Equal(page, make([]byte, pageservice.BlockSize)) {
		t.Errorf("page beyond the end: %v", err)
	}

	// Existence, over v2 too.
	cl2 := dial(pageservice.V2)
	missing := key.Rel{Spc: key.DefaultTablespace, DB: db, Rel: 999999, Fork: key.ForkMain}
	for _, cc := range []*pageservice.Client{cl, cl2} {
		if ok, err := cc.Exists(acc, final); err != nil || !ok {
			t.Errorf("exists pgbench_accounts: %v %v", ok, err)
		}
		if ok, err := cc.Exists(missing, final); err != nil || ok {
			t.Errorf("exists of a missing relation: %v %v", ok, err)
		}
	}

	// The CLOG segment, 8192-byte pages as in the file.
	file, err := os.ReadFile(filepath.Join(primary.DataDir(), "pg_xact", "0000"))
	if err != nil {
		t.Fatal(err)
	}
	if seg, err := cl.SlruSegment(key.Clog, 0, final); err != nil || !bytes.Equal(seg, file) {
		t.Errorf("pg_xact/0000: %d bytes (%v), primary %d bytes, first difference at %d", len(seg), err, len(file), pagecheck.FirstDiff(seg, file))
	}

	// The database size lies between the logged forks and all forks.
	var low, high int64
	for rel, n := range disk {
		if rel.DB != db {
			continue
		}
		high += int64(n) * pageservice.BlockSize
		if rel.Fork != key.ForkFSM && !snapshot.Unlogged[rel] {
			low += int64(n) * pageservice.BlockSize
		}
	}
	if size, err := cl.DBSize(db, final); err != nil || size < low || size > high {
		t.Errorf("dbsize %d (%v), want within [%d, %d]", size, err, low, high)
	}

	// Failed requests get a tag-103 answer and the stream goes on.
	for what, req := range map[string]pageservice.Request{
		"nblocks of a missing relation": {Tag: pageservice.TagNblocks, Header: pageservice.Header{RequestLSN: final}, Rel: missing},
		"request LSN 0":                 {Tag: pageservice.TagExists, Rel: acc},
		"LSN below not_modified_since":  {Tag: pageservice.TagExists, Header: pageservice.Header{RequestLSN: final - 8, NotModifiedSince: final}, Rel: acc},
		"a missing SLRU segment":        {Tag: pageservice.TagGetSlruSegment, Header: pageservice.Header{RequestLSN: final}, SlruKind: key.Clog, Segno: 0x777},
	} {
		_, err := cl.Do(req)
		if !pageservice.IsRequestError(err) {
			t.Errorf("%s: %v, want a request error", what, err)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}

	// A request ahead of ingest waits --wait-lsn-timeout, then fails.
	future := final + 1<<30
	t0 := time.Now()
	_, err = cl.Do(pageservice.Request{Tag: pageservice.TagNblocks, Header: pageservice.Header{RequestLSN: future, NotModifiedSince: future}, Rel: acc})
	took := time.Since(t0)
	if !pageservice.IsRequestError(err) || !strings.Contains(err.Error(), "timed out waiting for WAL") {
		t.Errorf("request at a future LSN: %v", err)
	}
	if took < 2*time.Second || took > 20*time.Second {
		t.Errorf("request at a future LSN answered after %v, want about the 2s wait timeout", took)
	}
	t.Logf("future LSN after %v: %v", took.Round(time.Millisecond), err)
	if n, err := cl.Nblocks(acc, final); err != nil || n != disk[acc] {
		t.Errorf("after the timeout: nblocks %d, %v", n, err)
	}

	// A message that is no request ends that connection with an
	// ErrorResponse; the server goes on serving others.
	for _, garbage := range [][]byte{{}, {9, 1, 2}, {byte(pageservice.TagGetPage), 0, 0}} {
		bad := dial(pageservice.V3)
		if err := bad.SendRaw(garbage); err != nil {
			t.Fatal(err)
		}
		_ = bad.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := bad.Receive()
		var se *pageservice.ServerError
		if !errors.As(err, &se) || se.Code != "08P01" || !strings.Contains(se.Message, "malformed pagestream message") {
			t.Errorf("garbage %x: %v, want a protocol violation", garbage, err)
		}
	}
	if n, err := dial(pageservice.V3).Nblocks(acc, final); err != nil || n != disk[acc] {
		t.Errorf("a new connection after malformed requests: nblocks %d, %v", n, err)
	}

	checkBasebackupCommand(t, ctx, ps, c.ttid, accounts)
}

// checkBasebackupCommand fetches basebackups over the libpq port (PS §7):
// vanilla PostgreSQL starts from one without recovery and has the
// primary's rows; the gzip variant is a gzipped tar; a bad request gets an
// error.
func checkBasebackupCommand(t *testing.T, ctx context.Context, ps *daemons.Pageserver, ttid id.TenantTimeline, accounts int64) {
	pc, err := pgconn.Connect(ctx, ps.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	cmd := fmt.Sprintf("basebackup %s %s", ttid.Tenant, ttid.Timeline)
	// The primary's settings: the workload left a prepared transaction.
	r := computeFromBasebackup(t, ctx, ps, ttid, "", pagecheck.ClusterOptions())
	var n int64
	r.QueryRow(t, "SELECT count(*) FROM pgbench_accounts").Scan(&n)
	if n != accounts {
		t.Errorf("pgbench_accounts has %d rows, the primary had %d", n, accounts)
	}

	var gz bytes.Buffer
	if _, err := pc.CopyTo(ctx, &gz, cmd+" --gzip"); err != nil {
		t.Fatalf("%s --gzip: %v", cmd, err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	tr, found := tar.NewReader(zr), false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("gzipped basebackup: %v", err)
		}
		found = found || h.Name == "global/pg_control"
	}
	if !found {
		t.Error("gzipped basebackup has no global/pg_control")
	}

	for _, bad := range []string{"basebackup " + ttid.Tenant.String(), cmd + " not-an-lsn"} {
		if _, err := pc.CopyTo(ctx, io.Discard, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// An LSN before the timeline began is refused with the reason.
	if _, err := pc.CopyTo(ctx, io.Discard, cmd+" 0/10"); err == nil || !strings.Contains(err.Error(), "LSN out of range") {
		t.Errorf("basebackup below the timeline's start: %v, want LSN out of range", err)
	}
}
