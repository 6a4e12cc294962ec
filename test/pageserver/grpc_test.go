package pageserver_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/pageserver/v1"
	"strata.dev/test/daemons"
)

// pgClass is pg_class of the postgres database (OID 5 since PostgreSQL
// 15; a mapped catalog keeps its OID as file number after initdb).
var pgClass = &pb.RelTag{SpcOid: 1663, DbOid: 5, RelNumber: 1259}

// Issue 8, acceptance 4: every method of the pageserver's management
// service through a real client connection to a real pageserver, with
// its errors: unknown and malformed ids, LSNs below the GC cutoff or not
// reached in time, a taken id, a branched-off timeline's deletion, bad
// relations and tars. Then a restart keeps what was created and nothing
// that was deleted.
func TestGRPCManagementAPI(t *testing.T) {
	ctx := context.Background()
	ps := daemons.StartPageserver(t, "--no-sync", "--wait-lsn-timeout", "2s")
	c := ps.GRPC()

	// Health and reflection, for grpcurl and load balancers.
	conn := ps.GRPCConn()
	for _, svc := range []string{"", "strata.pageserver.v1.Pageserver"} {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", svc, h, err)
		}
	}
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := refl.Recv(); err != nil || !strings.Contains(resp.String(), "strata.pageserver.v1.Pageserver") || !strings.Contains(resp.String(), "grpc.health.v1.Health") {
		t.Fatalf("reflection: %v %v", resp, err)
	}
	refl.CloseSend()

	st, err := c.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.NodeId != 1 || st.ListenGrpc != ps.GRPCAddr || st.ListenPg != ps.PGAddr || st.ListenHttp != ps.HTTPAddr ||
		st.Datadir != ps.Dir || st.Tenants != 0 || st.Timelines != 0 || st.Version == "" ||
		st.StartedUnixMs <= 0 || st.StartedUnixMs > time.Now().UnixMilli() {
		t.Errorf("Status = %v", st)
	}

	// Tenants.
	created, err := c.CreateTenant(ctx, &pb.CreateTenantRequest{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := id.Parse(created.TenantId)
	if err != nil {
		t.Fatalf("CreateTenant chose %q: %v", created.TenantId, err)
	}
	tenant := id.Generate()
	if r, err := c.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: tenant.String()}); err != nil || r.TenantId != tenant.String() {
		t.Fatalf("CreateTenant(%s) = %v, %v", tenant, r, err)
	}
	_, err = c.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: tenant.String()})
	wantCode(t, "a second CreateTenant", err, codes.AlreadyExists)
	for _, bad := range []string{"xyz", strings.Repeat("0", 32), strings.ToUpper(id.Generate().String()) + "0"} {
		_, err = c.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: bad})
		wantCode(t, "CreateTenant "+bad, err, codes.InvalidArgument)
	}
	lt, err := c.ListTenants(ctx, &pb.ListTenantsRequest{})
	want := []string{tenant.String(), other.String()}
	slices.Sort(want)
	if err != nil || !slices.Equal(lt.TenantIds, want) {
		t.Fatalf("ListTenants = %v, %v; want %v", lt, err, want)
	}

	// A root timeline from initdb, and what creating one refuses.
	root := id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}
	bootstrap := func(ttid id.TenantTimeline) (*pb.TimelineInfo, error) {
		return c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(),
			Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{PgVersion: 15}}})
	}
	_, err = bootstrap(id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()})
	wantCode(t, "CreateTimeline in an unknown tenant", err, codes.NotFound)
	_, err = c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String()})
	wantCode(t, "CreateTimeline without a source", err, codes.InvalidArgument)
	_, err = c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String(),
		Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{PgVersion: 14}}})
	wantCode(t, "CreateTimeline of PostgreSQL 14", err, codes.InvalidArgument)
	_, err = c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: "nope", TimelineId: id.Generate().String(),
		Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{}}})
	wantCode(t, "CreateTimeline with a malformed tenant id", err, codes.InvalidArgument)
	_, err = c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: tenant.String(), TimelineId: "12",
		Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{}}})
	wantCode(t, "CreateTimeline with a malformed timeline id", err, codes.InvalidArgument)

	ri, err := bootstrap(root)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if ri.TenantId != tenant.String() || ri.TimelineId != root.Timeline.String() || ri.State != "Active" || ri.PgVersion != 15 ||
		ri.AncestorTimelineId != "" || ri.InitdbLsn == 0 || ri.LastRecordLsn <= ri.InitdbLsn || ri.GcCutoffLsn != ri.InitdbLsn ||
		ri.DiskConsistentLsn != ri.LastRecordLsn || ri.RemoteConsistentLsn != ri.DiskConsistentLsn || ri.DeltaLayers+ri.ImageLayers == 0 ||
		ri.LayerBytes == 0 || ri.LogicalSizeBytes != 0 {
		t.Errorf("bootstrapped timeline: %v", ri)
	}
	_, err = bootstrap(root)
	wantCode(t, "a second CreateTimeline with the same id", err, codes.AlreadyExists)
	last := ri.LastRecordLsn

	// GetTimeline and ListTimelines.
	gi, err := c.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: tenant.String(), TimelineId: root.Timeline.String(), IncludeLogicalSize: true})
	if err != nil {
		t.Fatal(err)
	}
	// Three databases of initdb's catalogs: several MiB each.
	if gi.LogicalSizeBytes < 10<<20 || gi.LogicalSizeBytes%8192 != 0 || gi.LastRecordLsn != last {
		t.Errorf("GetTimeline with logical size: %v", gi)
	}
	for _, tc := range []struct {
		what, tenant, timeline string
		code                   codes.Code
	}{
		{"an unknown timeline", tenant.String(), id.Generate().String(), codes.NotFound},
		{"an unknown tenant", id.Generate().String(), root.Timeline.String(), codes.NotFound},
		{"a malformed timeline id", tenant.String(), "zz", codes.InvalidArgument},
		{"no tenant id", "", root.Timeline.String(), codes.InvalidArgument},
	} {
		_, err := c.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: tc.tenant, TimelineId: tc.timeline})
		wantCode(t, "GetTimeline of "+tc.what, err, tc.code)
	}
	if l, err := c.ListTimelines(ctx, &pb.ListTimelinesRequest{TenantId: other.String()}); err != nil || len(l.Timelines) != 0 {
		t.Errorf("ListTimelines of an empty tenant = %v, %v", l, err)
	}
	_, err = c.ListTimelines(ctx, &pb.ListTimelinesRequest{TenantId: id.Generate().String()})
	wantCode(t, "ListTimelines of an unknown tenant", err, codes.NotFound)
	_, err = c.ListTimelines(ctx, &pb.ListTimelinesRequest{TenantId: "x"})
	wantCode(t, "ListTimelines of a malformed tenant", err, codes.InvalidArgument)

	// Pages and relation sizes.
	page := func(ttid id.TenantTimeline, rel *pb.RelTag, blk uint32, at uint64) (*pb.GetPageResponse, error) {
		return c.GetPage(ctx, &pb.GetPageRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), Rel: rel, Block: blk, Lsn: at})
	}
	relSize := func(ttid id.TenantTimeline, rel *pb.RelTag, at uint64) (*pb.GetRelSizeResponse, error) {
		return c.GetRelSize(ctx, &pb.GetRelSizeRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), Rel: rel, Lsn: at})
	}
	sz, err := relSize(root, pgClass, 0)
	if err != nil || !sz.Exists || sz.Blocks == 0 {
		t.Fatalf("GetRelSize of pg_class = %v, %v", sz, err)
	}
	getPages := func() float64 {
		return ps.Metric(t, `pageserver_smgr_query_started_global_count{smgr_query_type="get_page_at_lsn"}`)
	}
	started := getPages()
	p0, err := page(root, pgClass, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := getPages() - started; n != 1 {
		t.Errorf("one gRPC GetPage counted %v times in the GetPage metrics", n)
	}
	checkHeapPage(t, "pg_class block 0", p0.Page)
	if p0.Lsn != last {
		t.Errorf("GetPage at 0 read at %v, the last record is %v", lsn.LSN(p0.Lsn), lsn.LSN(last))
	}
	if p, err := page(root, pgClass, 0, last); err != nil || !bytes.Equal(p.Page, p0.Page) {
		t.Errorf("GetPage at the last record LSN: %v (same page: %v)", err, err == nil && bytes.Equal(p.Page, p0.Page))
	}
	if p, err := page(root, pgClass, sz.Blocks+10, 0); err != nil || !bytes.Equal(p.Page, make([]byte, 8192)) {
		t.Errorf("GetPage beyond the end: %v (want a zero page)", err)
	}
	missing := &pb.RelTag{SpcOid: 1663, DbOid: 5, RelNumber: 999999}
	if sz, err := relSize(root, missing, 0); err != nil || sz.Exists || sz.Blocks != 0 {
		t.Errorf("GetRelSize of a missing relation = %v, %v", sz, err)
	}
	waits0 := daemons.Metric(ps.HTTPAddr, "pageserver_wait_lsn_seconds_count")
	for _, tc := range []struct {
		what string
		rel  *pb.RelTag
		blk  uint32
		at   uint64
		code codes.Code
	}{
		{"a missing relation", missing, 0, 0, codes.NotFound},
		{"a missing database", &pb.RelTag{SpcOid: 1663, DbOid: 424242, RelNumber: 1259}, 0, 0, codes.NotFound},
		{"no relation", nil, 0, 0, codes.InvalidArgument},
		{"fork 7", &pb.RelTag{SpcOid: 1663, DbOid: 5, RelNumber: 1259, Fork: 7}, 0, 0, codes.InvalidArgument},
		{"relation 0", &pb.RelTag{SpcOid: 1663, DbOid: 5}, 0, 0, codes.InvalidArgument},
		{"an LSN below the GC cutoff", pgClass, 0, ri.GcCutoffLsn - 8, codes.OutOfRange},
		{"an LSN not reached in the wait timeout", pgClass, 0, last + 1<<20, codes.OutOfRange},
	} {
		_, err := page(root, tc.rel, tc.blk, tc.at)
		wantCode(t, "GetPage of "+tc.what, err, tc.code)
		if tc.rel != missing && !strings.Contains(tc.what, "database") {
			_, err = relSize(root, tc.rel, tc.at)
			wantCode(t, "GetRelSize of "+tc.what, err, tc.code)
		}
	}
	// The two reads ahead of ingest waited, and the wait_lsn metrics saw it
	// as they see pagestream's.
	if waits := daemons.Metric(ps.HTTPAddr, "pageserver_wait_lsn_seconds_count") - waits0; waits != 2 {
		t.Errorf("%v waits for ingest observed, want 2 (GetPage and GetRelSize ahead of ingest)", waits)
	}
	_, err = page(id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}, pgClass, 0, 0)
	wantCode(t, "GetPage of an unknown timeline", err, codes.NotFound)
	_, err = relSize(id.TenantTimeline{Tenant: id.Generate(), Timeline: root.Timeline}, pgClass, 0)
	wantCode(t, "GetRelSize in an unknown tenant", err, codes.NotFound)

	// A basebackup: the tar in chunks, its LSN and size estimate first;
	// its pg_class has the page GetPage returned.
	backup, first, err := fetchBasebackup(ctx, c, root, 0)
	if err != nil {
		t.Fatal(err)
	}
	if first.Lsn != last || first.EstimatedSize < uint64(len(backup))/2 || first.EstimatedSize > 2*uint64(len(backup)) {
		t.Errorf("first chunk: LSN %v (last record %v), estimate %d bytes for a tar of %d", lsn.LSN(first.Lsn), lsn.LSN(last), first.EstimatedSize, len(backup))
	}
	if f := tarFile(t, backup, "base/5/1259"); len(f) != int(sz.Blocks)*8192 || !bytes.Equal(f[:8192], p0.Page) {
		t.Errorf("base/5/1259 in the basebackup: %d bytes (%d blocks), block 0 equal to GetPage's: %v", len(f), sz.Blocks, len(f) >= 8192 && bytes.Equal(f[:8192], p0.Page))
	}
	for _, tc := range []struct {
		what string
		ttid id.TenantTimeline
		at   uint64
		code codes.Code
	}{
		{"an unknown timeline", id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}, 0, codes.NotFound},
		{"an LSN below the GC cutoff", root, ri.GcCutoffLsn - 8, codes.OutOfRange},
		{"an LSN not reached in the wait timeout", root, last + 8192, codes.OutOfRange},
	} {
		_, _, err := fetchBasebackup(ctx, c, tc.ttid, tc.at)
		wantCode(t, "Basebackup of "+tc.what, err, tc.code)
	}

	// The basebackup imported as a root timeline of the other tenant.
	hdr := &pb.ImportHeader{TenantId: other.String(), PgVersion: 15}
	ii, err := importTar(ctx, c, hdr, backup)
	if err != nil {
		t.Fatalf("ImportBasebackup: %v", err)
	}
	imported := id.TenantTimeline{Tenant: other, Timeline: id.MustParse(ii.TimelineId)}
	if ii.TenantId != other.String() || ii.State != "Active" || ii.InitdbLsn < last || ii.LastRecordLsn != ii.InitdbLsn {
		t.Errorf("imported timeline: %v (from a backup at %v)", ii, lsn.LSN(last))
	}
	if p, err := page(imported, pgClass, 0, 0); err != nil || !bytes.Equal(p.Page, p0.Page) {
		t.Errorf("pg_class block 0 of the imported timeline: %v (same page: %v)", err, err == nil && bytes.Equal(p.Page, p0.Page))
	}
	hdr.TimelineId = imported.Timeline.String()
	_, err = importTar(ctx, c, hdr, backup)
	wantCode(t, "an import with a taken id", err, codes.AlreadyExists)
	var junk bytes.Buffer
	tw := tar.NewWriter(&junk)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	badImports := []struct {
		what string
		hdr  *pb.ImportHeader
		data []byte
		code codes.Code
	}{
		{"a corrupt tar", &pb.ImportHeader{TenantId: other.String()}, bytes.Repeat([]byte("not a tar "), 1000), codes.InvalidArgument},
		{"a truncated tar", &pb.ImportHeader{TenantId: other.String()}, backup[:len(backup)/2], codes.InvalidArgument},
		{"a tar of no data directory", &pb.ImportHeader{TenantId: other.String()}, junk.Bytes(), codes.InvalidArgument},
		{"an empty tar", &pb.ImportHeader{TenantId: other.String()}, nil, codes.InvalidArgument},
		{"the wrong base LSN", &pb.ImportHeader{TenantId: other.String(), BaseLsn: ii.InitdbLsn + 8}, backup, codes.InvalidArgument},
		{"WAL the tar does not have", &pb.ImportHeader{TenantId: other.String(), EndLsn: ii.InitdbLsn + 1<<20}, backup, codes.InvalidArgument},
		{"end below base", &pb.ImportHeader{TenantId: other.String(), BaseLsn: ii.InitdbLsn, EndLsn: ii.InitdbLsn - 8}, backup, codes.InvalidArgument},
		{"an unknown tenant", &pb.ImportHeader{TenantId: id.Generate().String()}, backup, codes.NotFound},
		{"a malformed timeline id", &pb.ImportHeader{TenantId: other.String(), TimelineId: "0x12"}, backup, codes.InvalidArgument},
		{"PostgreSQL 16", &pb.ImportHeader{TenantId: other.String(), PgVersion: 16}, backup, codes.InvalidArgument},
		{"no header", nil, backup, codes.InvalidArgument},
	}
	for _, tc := range badImports {
		_, err := importTar(ctx, c, tc.hdr, tc.data)
		wantCode(t, "ImportBasebackup of "+tc.what, err, tc.code)
	}
	// A second header in the middle of the tar.
	stream, err := c.ImportBasebackup(ctx)
	if err == nil {
		stream.Send(&pb.ImportBasebackupRequest{Part: &pb.ImportBasebackupRequest_Header{Header: &pb.ImportHeader{TenantId: other.String()}}})
		stream.Send(&pb.ImportBasebackupRequest{Part: &pb.ImportBasebackupRequest_Data{Data: backup[:100000]}})
		stream.Send(&pb.ImportBasebackupRequest{Part: &pb.ImportBasebackupRequest_Header{Header: &pb.ImportHeader{TenantId: other.String()}}})
		_, err = stream.CloseAndRecv()
	}
	wantCode(t, "ImportBasebackup with a second header", err, codes.InvalidArgument)
	// Failed imports leave nothing behind.
	if l, err := c.ListTimelines(ctx, &pb.ListTimelinesRequest{TenantId: other.String()}); err != nil || len(l.Timelines) != 1 {
		t.Errorf("after the failed imports, ListTimelines = %v, %v; want only the import", l, err)
	}
	if left := tempDirs(t, ps, other); len(left) > 0 {
		t.Errorf("failed imports left %v", left)
	}

	// A branch at the last record; the LSNs a branch refuses.
	branch := id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}
	branchOf := func(ttid id.TenantTimeline, ancestor string, at uint64) (*pb.TimelineInfo, error) {
		return c.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(),
			Source: &pb.CreateTimelineRequest_Branch{Branch: &pb.Branch{AncestorTimelineId: ancestor, AncestorLsn: at}}})
	}
	bi, err := branchOf(branch, root.Timeline.String(), 0)
	if err != nil {
		t.Fatalf("branch: %v", err)
	}
	if bi.AncestorTimelineId != root.Timeline.String() || bi.AncestorLsn != last || bi.LastRecordLsn != last || bi.InitdbLsn != ri.InitdbLsn {
		t.Errorf("branch: %v", bi)
	}
	if p, err := page(branch, pgClass, 0, 0); err != nil || !bytes.Equal(p.Page, p0.Page) {
		t.Errorf("pg_class block 0 of the branch (from its ancestor's layers): %v", err)
	}
	for _, tc := range []struct {
		what, ancestor string
		at             uint64
		code           codes.Code
	}{
		{"an unknown ancestor", id.Generate().String(), 0, codes.NotFound},
		{"a malformed ancestor", "ancestor", 0, codes.InvalidArgument},
		{"no ancestor", "", 0, codes.InvalidArgument},
		{"an LSN below the GC cutoff", root.Timeline.String(), ri.GcCutoffLsn - 8, codes.OutOfRange},
		{"an LSN not reached in the wait timeout", root.Timeline.String(), last + 8192, codes.OutOfRange},
	} {
		_, err := branchOf(id.TenantTimeline{Tenant: tenant, Timeline: id.Generate()}, tc.ancestor, tc.at)
		wantCode(t, "a branch of "+tc.what, err, tc.code)
	}
	_, err = branchOf(branch, root.Timeline.String(), 0)
	wantCode(t, "a branch with a taken id", err, codes.AlreadyExists)
	_, err = branchOf(id.TenantTimeline{Tenant: other, Timeline: id.Generate()}, root.Timeline.String(), 0)
	wantCode(t, "a branch of another tenant's timeline", err, codes.NotFound)
	if l, err := c.ListTimelines(ctx, &pb.ListTimelinesRequest{}); err != nil || len(l.Timelines) != 3 {
		t.Errorf("ListTimelines of every tenant = %v, %v; want 3", l, err)
	}

	// Checkpoint.
	for _, skip := range []bool{true, false} {
		ci, err := c.Checkpoint(ctx, &pb.CheckpointRequest{TenantId: tenant.String(), TimelineId: branch.Timeline.String(), SkipCompaction: skip})
		if err != nil || ci.DiskConsistentLsn != ci.LastRecordLsn {
			t.Errorf("Checkpoint(skip_compaction %v) = %v, %v", skip, ci, err)
		}
	}
	_, err = c.Checkpoint(ctx, &pb.CheckpointRequest{TenantId: tenant.String(), TimelineId: id.Generate().String()})
	wantCode(t, "Checkpoint of an unknown timeline", err, codes.NotFound)

	// Deletion: not while a branch depends on the timeline.
	del := func(ttid id.TenantTimeline) error {
		_, err := c.DeleteTimeline(ctx, &pb.DeleteTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String()})
		return err
	}
	wantCode(t, "deleting a timeline with a branch", del(root), codes.FailedPrecondition)
	if _, err := os.Stat(ps.TimelineDir(root)); err != nil {
		t.Errorf("the refused delete touched the files: %v", err)
	}
	if err := del(branch); err != nil {
		t.Fatalf("delete the branch: %v", err)
	}
	if _, err := os.Stat(ps.TimelineDir(branch)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted branch's directory: %v", err)
	}
	_, err = c.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: tenant.String(), TimelineId: branch.Timeline.String()})
	wantCode(t, "GetTimeline of a deleted timeline", err, codes.NotFound)
	wantCode(t, "deleting a deleted timeline", del(branch), codes.NotFound)
	_, err = c.DeleteTimeline(ctx, &pb.DeleteTimelineRequest{TenantId: tenant.String(), TimelineId: "x"})
	wantCode(t, "deleting with a malformed id", err, codes.InvalidArgument)
	if err := del(root); err != nil {
		t.Fatalf("delete the root once its branch is gone: %v", err)
	}
	// The id is free again.
	if _, err := bootstrap(branch); err != nil {
		t.Fatalf("bootstrap with a deleted timeline's id: %v", err)
	}

	// A restart loads what is there; the leftovers of a delete that a
	// crash interrupted are removed.
	leftover := filepath.Join(filepath.Dir(ps.TimelineDir(root)), id.Generate().String()+"-deleted.___temp")
	if err := os.MkdirAll(filepath.Join(leftover, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(leftover, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(leftover, 0o777); err != nil {
		t.Fatal(err)
	}
	ps.Stop()
	ps.Start()
	c = ps.GRPC()
	st, err = c.Status(ctx, &pb.StatusRequest{})
	if err != nil || st.Tenants != 2 || st.Timelines != 2 {
		t.Errorf("Status after the restart = %v, %v; want 2 tenants and 2 timelines", st, err)
	}
	l, err := c.ListTimelines(ctx, &pb.ListTimelinesRequest{})
	var ids []string
	for _, ti := range l.GetTimelines() {
		ids = append(ids, ti.TimelineId)
	}
	slices.Sort(ids)
	want = []string{imported.Timeline.String(), branch.Timeline.String()}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("timelines after the restart: %v, %v; want %v", ids, err, want)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover of a deletion after the restart: %v", err)
	}
	if p, err := page(imported, pgClass, 0, 0); err != nil || !bytes.Equal(p.Page, p0.Page) {
		t.Errorf("pg_class block 0 of the imported timeline after the restart: %v", err)
	}
}

// wantCode fails the test unless err has status code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v, want %s", what, err, want)
	}
}

// checkHeapPage checks the header of a heap page read from storage.
func checkHeapPage(t *testing.T, what string, p []byte) {
	t.Helper()
	if len(p) != 8192 {
		t.Fatalf("%s: %d bytes", what, len(p))
	}
	lower, upper := binary.LittleEndian.Uint16(p[12:]), binary.LittleEndian.Uint16(p[14:])
	special, version := binary.LittleEndian.Uint16(p[16:]), binary.LittleEndian.Uint16(p[18:])
	if lower < 24 || lower > upper || upper > special || special != 8192 || version != 8192|4 {
		t.Errorf("%s: header lower %d upper %d special %d version %#x", what, lower, upper, special, version)
	}
}

// fetchBasebackup reads a whole Basebackup stream.
func fetchBasebackup(ctx context.Context, c pb.PageserverClient, ttid id.TenantTimeline, at uint64) ([]byte, *pb.BasebackupChunk, error) {
	s, err := c.Basebackup(ctx, &pb.BasebackupRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), Lsn: at})
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	var first *pb.BasebackupChunk
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, first, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = chunk
		} else if chunk.Lsn != 0 || chunk.EstimatedSize != 0 {
			return nil, nil, errors.New("a chunk after the first has an LSN or estimate")
		}
		if len(chunk.Data) > 256<<10 {
			return nil, nil, errors.New("a chunk larger than 256 KiB")
		}
		out = append(out, chunk.Data...)
	}
}

// importTar sends an ImportBasebackup stream: the header (if any), then
// data in pieces of 100 000 bytes.
func importTar(ctx context.Context, c pb.PageserverClient, hdr *pb.ImportHeader, data []byte) (*pb.TimelineInfo, error) {
	s, err := c.ImportBasebackup(ctx)
	if err != nil {
		return nil, err
	}
	if hdr != nil {
		if err := s.Send(&pb.ImportBasebackupRequest{Part: &pb.ImportBasebackupRequest_Header{Header: hdr}}); err != nil {
			return s.CloseAndRecv() // the server's reason
		}
	}
	for len(data) > 0 {
		n := min(len(data), 100000)
		if err := s.Send(&pb.ImportBasebackupRequest{Part: &pb.ImportBasebackupRequest_Data{Data: data[:n]}}); err != nil {
			return s.CloseAndRecv()
		}
		data = data[n:]
	}
	return s.CloseAndRecv()
}

// tarFile returns the content of one file of a tar.
func tarFile(t *testing.T, tarball []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in the tar: %v", name, err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// tempDirs lists the temporary directories in a tenant's timelines directory.
func tempDirs(t *testing.T, ps *daemons.Pageserver, tenant id.TenantID) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(ps.Dir, "tenants", tenant.String(), "timelines"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".___temp") {
			out = append(out, e.Name())
		}
	}
	return out
}
