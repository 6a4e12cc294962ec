package pageserver_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	pb "strata.dev/proto/pageserver/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
)

// LsnForTimestamp through gRPC, and the reads a branch refuses below its
// branch point. A compute started from a gRPC basebackup of a bootstrapped
// timeline commits row 1, waits a second, commits row 2 (and row 3); its
// WAL comes back to the pageserver as an import of that basebackup with
// the compute's pg_wal, so the commits are WAL records of the new
// timeline. A timestamp between rows 1 and 2 is PRESENT, and a compute on
// a branch at the LSN it gives has row 1 but not row 2; one before the
// compute started is PAST, one after the last commit FUTURE.
func TestGRPCLsnForTimestamp(t *testing.T) {
	ctx := context.Background()
	ps := daemons.StartPageserver(t, "--no-sync", "--wait-lsn-timeout", "2s")
	c := ps.GRPC()
	tenant := id.Generate()
	if _, err := c.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: tenant.String()}); err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String(),
		Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{}}})
	if err != nil {
		t.Fatal(err)
	}
	boot := id.TenantTimeline{Tenant: tenant, Timeline: id.MustParse(created.TimelineId)}
	lsnFor := func(ttid id.TenantTimeline, ts time.Time) (*pb.LsnForTimestampResponse, error) {
		return c.LsnForTimestamp(ctx, &pb.LsnForTimestampRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), TimestampUnixUs: ts.UnixMicro()})
	}
	// initdb's transactions are in the imported files, not in WAL records.
	if r, err := lsnFor(boot, time.Now()); err != nil || r.Kind != pb.LsnForTimestampResponse_NO_DATA || r.Lsn != created.LastRecordLsn {
		t.Errorf("LsnForTimestamp of a bootstrapped timeline = %v, %v; want NO_DATA at %v", r, err, lsn.LSN(created.LastRecordLsn))
	}
	_, err = lsnFor(id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}, time.Now())
	wantCode(t, "LsnForTimestamp of an unknown timeline", err, codes.NotFound)
	_, err = c.LsnForTimestamp(ctx, &pb.LsnForTimestampRequest{TenantId: tenant.String(), TimelineId: "?"})
	wantCode(t, "LsnForTimestamp with a malformed id", err, codes.InvalidArgument)

	backup, _, err := fetchBasebackup(ctx, c, boot, 0)
	if err != nil {
		t.Fatal(err)
	}
	compute := computeFromTar(t, backup, pgharness.WithConf("wal_keep_size", "1GB"))
	var before, between, after time.Time
	compute.QueryRow(t, "SELECT clock_timestamp()").Scan(&before)
	compute.Exec(t, "CREATE TABLE marker (id int PRIMARY KEY)")
	compute.Exec(t, "INSERT INTO marker VALUES (1)")
	compute.QueryRow(t, "SELECT clock_timestamp() + interval '0.5 s'").Scan(&between)
	compute.Exec(t, "SELECT pg_sleep(1)")
	compute.Exec(t, "INSERT INTO marker VALUES (2)")
	compute.Exec(t, "INSERT INTO marker VALUES (3)")
	compute.QueryRow(t, "SELECT clock_timestamp()").Scan(&after)
	end := compute.RecordEndBound(t)
	compute.Stop(t)

	// The basebackup's files with the compute's WAL since.
	withWAL := replaceWAL(t, backup, compute.WALDir())
	ii, err := importTar(ctx, c, &pb.ImportHeader{TenantId: tenant.String(), EndLsn: uint64(end)}, withWAL)
	if err != nil {
		t.Fatalf("import with WAL up to %s: %v", end, err)
	}
	tl := id.TenantTimeline{Tenant: tenant, Timeline: id.MustParse(ii.TimelineId)}
	if lsn.LSN(ii.LastRecordLsn) < end || ii.LastRecordLsn <= ii.InitdbLsn {
		t.Fatalf("imported timeline at %v, want at least %s: %v", lsn.LSN(ii.LastRecordLsn), end, ii)
	}

	present, err := lsnFor(tl, between)
	if err != nil || present.Kind != pb.LsnForTimestampResponse_PRESENT || present.Lsn <= ii.InitdbLsn || present.Lsn >= ii.LastRecordLsn {
		t.Fatalf("LsnForTimestamp between the commits = %v, %v (timeline from %v to %v)", present, err, lsn.LSN(ii.InitdbLsn), lsn.LSN(ii.LastRecordLsn))
	}
	t.Logf("timeline %v..%v, rows 2 and 3 end by %s; between rows 1 and 2: %v", lsn.LSN(ii.InitdbLsn), lsn.LSN(ii.LastRecordLsn), end, lsn.LSN(present.Lsn))
	if r, err := lsnFor(tl, before.Add(-time.Minute)); err != nil || r.Kind != pb.LsnForTimestampResponse_PAST || r.Lsn != ii.InitdbLsn {
		t.Errorf("LsnForTimestamp before every commit = %v, %v; want PAST at %v", r, err, lsn.LSN(ii.InitdbLsn))
	}
	if r, err := lsnFor(tl, after.Add(time.Minute)); err != nil || r.Kind != pb.LsnForTimestampResponse_FUTURE || r.Lsn != ii.LastRecordLsn {
		t.Errorf("LsnForTimestamp after every commit = %v, %v; want FUTURE at %v", r, err, lsn.LSN(ii.LastRecordLsn))
	}

	// A branch there: a compute from its basebackup has row 1 only.
	br := id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}
	bi, err := c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String(), TimelineId: br.Timeline.String(),
		Source: &pb.CreateTimelineRequest_Branch{Branch: &pb.Branch{AncestorTimelineId: tl.Timeline.String(), AncestorLsn: present.Lsn}}})
	if err != nil || bi.AncestorLsn != present.Lsn || bi.LastRecordLsn != present.Lsn {
		t.Fatalf("branch at %v: %v, %v", lsn.LSN(present.Lsn), bi, err)
	}
	brBackup, first, err := fetchBasebackup(ctx, c, br, 0)
	if err != nil || first.Lsn != present.Lsn {
		t.Fatalf("basebackup of the branch: %v (first chunk %v)", err, first)
	}
	asOf := computeFromTar(t, brBackup)
	var rows string
	asOf.QueryRow(t, "SELECT string_agg(id::text, ',' ORDER BY id) FROM marker").Scan(&rows)
	if rows != "1" {
		t.Errorf("a compute on the branch at %v has rows %q, want \"1\"", lsn.LSN(present.Lsn), rows)
	}
	asOf.Stop(t)

	// Below its branch point a branch serves nothing, though its
	// ancestor's GC cutoff is lower.
	below := ii.InitdbLsn + (present.Lsn-ii.InitdbLsn)/2&^7
	if below <= bi.GcCutoffLsn || below >= present.Lsn {
		t.Fatalf("no LSN between the GC cutoff %v and the branch point %v", lsn.LSN(bi.GcCutoffLsn), lsn.LSN(present.Lsn))
	}
	_, err = c.GetPage(ctx, &pb.GetPageRequest{TenantId: tenant.String(), TimelineId: br.Timeline.String(), Rel: pgClass, Lsn: below})
	wantCode(t, "GetPage of a branch below its branch point", err, codes.OutOfRange)
	_, err = c.GetRelSize(ctx, &pb.GetRelSizeRequest{TenantId: tenant.String(), TimelineId: br.Timeline.String(), Rel: pgClass, Lsn: below})
	wantCode(t, "GetRelSize of a branch below its branch point", err, codes.OutOfRange)
	_, _, err = fetchBasebackup(ctx, c, br, below)
	wantCode(t, "Basebackup of a branch below its branch point", err, codes.OutOfRange)
	_, err = c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String(),
		Source: &pb.CreateTimelineRequest_Branch{Branch: &pb.Branch{AncestorTimelineId: br.Timeline.String(), AncestorLsn: below}}})
	wantCode(t, "a branch of a branch below its branch point", err, codes.OutOfRange)
	// The ancestor serves that LSN.
	if _, err := c.GetPage(ctx, &pb.GetPageRequest{TenantId: tenant.String(), TimelineId: tl.Timeline.String(), Rel: pgClass, Lsn: below}); err != nil {
		t.Errorf("GetPage of the ancestor at %v: %v", lsn.LSN(below), err)
	}
}

// replaceWAL returns the tar with the WAL segment files of walDir in
// pg_wal instead of its own.
func replaceWAL(t *testing.T, tarball []byte, walDir string) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "pg_wal/") && h.Typeflag == tar.TypeReg {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !wal.IsSegmentFileName(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(walDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: "pg_wal/" + e.Name(), Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
