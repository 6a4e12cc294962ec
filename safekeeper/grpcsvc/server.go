// Package grpcsvc is the safekeeper's gRPC control and status service
// (proto/safekeeper/v1), with the standard health and reflection services so
// grpcurl and load balancers work against it.
package grpcsvc

import (
	"context"
	"errors"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/wal"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/safekeeper/timeline"
)

// Addresses are what Status reports about the daemon.
type Addresses struct {
	ListenPG, ListenGRPC, ListenHTTP, Datadir string
}

// Service implements pb.SafekeeperServer.
type Service struct {
	pb.UnimplementedSafekeeperServer
	Registry *timeline.Registry
	NodeID   id.NodeID
	Addrs    Addresses
	Version  string
	Started  time.Time
}

// Register adds the service, health and reflection to s.
func (svc *Service) Register(s *grpc.Server) {
	pb.RegisterSafekeeperServer(s, svc)
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(pb.Safekeeper_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
}

func (svc *Service) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{
		NodeId: uint64(svc.NodeID), ListenPg: svc.Addrs.ListenPG, ListenGrpc: svc.Addrs.ListenGRPC,
		ListenHttp: svc.Addrs.ListenHTTP, Datadir: svc.Addrs.Datadir,
		Timelines: uint32(len(svc.Registry.List())), Version: svc.Version, StartedUnixMs: svc.Started.UnixMilli(),
	}, nil
}

func (svc *Service) ListTimelines(context.Context, *pb.ListTimelinesRequest) (*pb.ListTimelinesResponse, error) {
	var out pb.ListTimelinesResponse
	for _, t := range svc.Registry.List() {
		out.Timelines = append(out.Timelines, svc.info(t))
	}
	return &out, nil
}

func parseTTID(tenant, tl string) (id.TenantTimeline, error) {
	var ttid id.TenantTimeline
	var err error
	if ttid.Tenant, err = id.Parse(tenant); err != nil {
		return ttid, status.Errorf(codes.InvalidArgument, "tenant_id: %v", err)
	}
	if ttid.Timeline, err = id.Parse(tl); err != nil {
		return ttid, status.Errorf(codes.InvalidArgument, "timeline_id: %v", err)
	}
	return ttid, nil
}

func (svc *Service) get(tenant, tl string) (*timeline.Timeline, error) {
	ttid, err := parseTTID(tenant, tl)
	if err != nil {
		return nil, err
	}
	t, err := svc.Registry.Get(ttid)
	if err != nil {
		return nil, toStatus(err)
	}
	return t, nil
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, timeline.ErrNotFound), errors.Is(err, timeline.ErrTombstone):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, timeline.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, timeline.ErrNotLoaded):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, timeline.ErrDeleted):
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (svc *Service) GetTimeline(_ context.Context, r *pb.GetTimelineRequest) (*pb.TimelineInfo, error) {
	t, err := svc.get(r.TenantId, r.TimelineId)
	if err != nil {
		return nil, err
	}
	return svc.info(t), nil
}

func (svc *Service) WatchTimeline(r *pb.WatchTimelineRequest, stream grpc.ServerStreamingServer[pb.TimelineInfo]) error {
	t, err := svc.get(r.TenantId, r.TimelineId)
	if err != nil {
		return err
	}
	interval := time.Duration(r.MinIntervalMs) * time.Millisecond
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	ctx := stream.Context()
	for {
		_, changed := t.WatchStatus()
		if err := stream.Send(svc.info(t)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.Context().Done():
			return status.Errorf(codes.NotFound, "timeline %s was deleted", t.TTID)
		case <-changed:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func (svc *Service) CreateTimeline(_ context.Context, r *pb.CreateTimelineRequest) (*pb.TimelineInfo, error) {
	ttid, err := parseTTID(r.TenantId, r.TimelineId)
	if err != nil {
		return nil, err
	}
	seg := r.WalSegSize
	if seg == 0 {
		seg = lsn.DefaultSegmentSize
	}
	if err := wal.ValidateSegmentSize(uint64(seg)); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if r.PgVersion < 140000 || r.PgVersion >= 180000 {
		return nil, status.Errorf(codes.InvalidArgument, "pg_version %d: want PG_VERSION_NUM of PostgreSQL 14 to 17, e.g. 150010", r.PgVersion)
	}
	t, err := svc.Registry.Create(timeline.CreateRequest{
		TTID: ttid, PgVersion: r.PgVersion, SystemID: r.SystemId, WalSegSize: seg,
		StartLSN: lsn.LSN(r.StartLsn), CommitLSN: lsn.LSN(r.CommitLsn),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return svc.info(t), nil
}

func (svc *Service) DeleteTimeline(_ context.Context, r *pb.DeleteTimelineRequest) (*pb.DeleteTimelineResponse, error) {
	ttid, err := parseTTID(r.TenantId, r.TimelineId)
	if err != nil {
		return nil, err
	}
	existed, err := svc.Registry.Delete(ttid)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteTimelineResponse{DirExisted: existed}, nil
}

func (svc *Service) ReportPageserverFeedback(_ context.Context, r *pb.ReportPageserverFeedbackRequest) (*pb.ReportPageserverFeedbackResponse, error) {
	t, err := svc.get(r.TenantId, r.TimelineId)
	if err != nil {
		return nil, err
	}
	st := t.Status()
	if lsn.LSN(r.RemoteConsistentLsn) > st.CommitLSN && st.CommitLSN != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "remote_consistent_lsn %v is beyond the timeline's commit LSN %v: the pageserver cannot hold WAL that was never committed",
			lsn.LSN(r.RemoteConsistentLsn), st.CommitLSN)
	}
	err = t.RecordPageserverFeedback(r.PageserverId, pamsg.PageserverFeedback{
		CurrentTimelineSize: r.CurrentTimelineSize,
		LastReceivedLSN:     lsn.LSN(r.LastReceivedLsn),
		DiskConsistentLSN:   lsn.LSN(r.DiskConsistentLsn),
		RemoteConsistentLSN: lsn.LSN(r.RemoteConsistentLsn),
		ReplyTime:           time.Now(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReportPageserverFeedbackResponse{CommitLsn: uint64(t.Status().CommitLSN)}, nil
}

// info renders a timeline for the API.
func (svc *Service) info(t *timeline.Timeline) *pb.TimelineInfo {
	s := t.Status()
	out := &pb.TimelineInfo{
		TenantId: t.TTID.Tenant.String(), TimelineId: t.TTID.Timeline.String(), NodeId: uint64(svc.NodeID),
		Term: uint64(s.Term), LastLogTerm: uint64(s.LastLogTerm),
		PgVersion: s.Server.PgVersion, SystemId: s.Server.SystemID, WalSegSize: s.Server.WalSegSize,
		FlushLsn: uint64(s.FlushLSN), WriteLsn: uint64(s.WriteLSN), CommitLsn: uint64(s.CommitLSN),
		PersistedCommitLsn: uint64(s.PersistedCommitLSN), BackupLsn: uint64(s.BackupLSN),
		RemoteConsistentLsn: uint64(s.RemoteConsistentLSN), PeerHorizonLsn: uint64(s.PeerHorizonLSN),
		LocalStartLsn: uint64(s.LocalStartLSN), TimelineStartLsn: uint64(s.TimelineStartLSN),
		TermStartLsn: uint64(s.TermStartLSN), RemovalHorizonLsn: uint64(t.RemovalHorizon()),
		RemovedSegments: t.RemovedSegments(),
		Mconf:           mconf(s.Mconf),
	}
	for _, e := range s.TermHistory {
		out.TermHistory = append(out.TermHistory, &pb.TermSwitch{Term: uint64(e.Term), Lsn: uint64(e.LSN)})
	}
	if entries, err := os.ReadDir(t.Dir()); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				out.DiskUsageBytes += uint64(fi.Size())
			}
			if wal.IsSegmentFileName(e.Name()) {
				out.SegmentsOnDisk++
			}
		}
	}
	for _, p := range t.Proposers() {
		out.Proposers = append(out.Proposers, &pb.Proposer{
			ConnId: p.ConnID, Addr: p.Addr, AppName: p.AppName, ProtocolVersion: uint32(p.Version),
			Term: uint64(p.Term), State: p.State.String(), ConnectedUnixMs: p.Started.UnixMilli(),
		})
	}
	for _, snd := range t.Senders() {
		out.Senders = append(out.Senders, &pb.Sender{
			ConnId: snd.ConnID, Addr: snd.Addr, AppName: snd.AppName, Kind: snd.Kind.String(), Recovery: snd.Recovery,
			StartLsn: uint64(snd.StartLSN), SentLsn: uint64(snd.SentLSN),
			WriteLsn: uint64(snd.Reply.WriteLSN), FlushLsn: uint64(snd.Reply.FlushLSN), ApplyLsn: uint64(snd.Reply.ApplyLSN),
			Xmin: snd.HSFeedback.Xmin, CatalogXmin: snd.HSFeedback.CatalogXmin,
			LastReceivedLsn: uint64(snd.PSFeedback.LastReceivedLSN), DiskConsistentLsn: uint64(snd.PSFeedback.DiskConsistentLSN),
			RemoteConsistentLsn: uint64(snd.PSFeedback.RemoteConsistentLSN), ConnectedUnixMs: snd.Started.UnixMilli(),
		})
	}
	return out
}

func mconf(c pamsg.Configuration) *pb.MembershipConfiguration {
	out := &pb.MembershipConfiguration{Generation: uint32(c.Generation)}
	for _, m := range c.Members {
		out.Members = append(out.Members, &pb.Member{Id: uint64(m.ID), Host: m.Host, PgPort: uint32(m.PgPort)})
	}
	for _, m := range c.NewMembers {
		out.NewMembers = append(out.NewMembers, &pb.Member{Id: uint64(m.ID), Host: m.Host, PgPort: uint32(m.PgPort)})
	}
	return out
}
