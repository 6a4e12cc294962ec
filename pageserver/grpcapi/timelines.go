package grpcapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/tenant"
	pb "strata.dev/proto/pageserver/v1"
)

func (s *Service) CreateTimeline(ctx context.Context, req *pb.CreateTimelineRequest) (*pb.TimelineInfo, error) {
	ttid, err := s.newTimelineID(ctx, req.TenantId, req.TimelineId)
	if err != nil {
		return nil, err
	}
	var t *tenant.Timeline
	switch src := req.Source.(type) {
	case *pb.CreateTimelineRequest_Bootstrap:
		if err := checkPgVersion(src.Bootstrap.GetPgVersion()); err != nil {
			return nil, err
		}
		t, err = s.Manager.Bootstrap(ctx, ttid)
	case *pb.CreateTimelineRequest_Branch:
		var anc id.TimelineID
		if anc, err = parseID("branch.ancestor_timeline_id", src.Branch.AncestorTimelineId); err != nil {
			return nil, err
		}
		t, err = s.Manager.Branch(ctx, ttid, anc, lsn.LSN(src.Branch.AncestorLsn), s.WaitLSNTimeout)
	default:
		return nil, status.Error(codes.InvalidArgument, "source: want bootstrap or branch")
	}
	if err != nil {
		return nil, s.fail(ctx, "CreateTimeline", err)
	}
	return timelineInfo(t.Info()), nil
}

// newTimelineID parses the ids of a timeline to create (a new timeline id
// if empty) in a tenant that must exist.
func (s *Service) newTimelineID(ctx context.Context, tenantID, timelineID string) (id.TenantTimeline, error) {
	ttid := id.TenantTimeline{Timeline: id.Generate()}
	var err error
	if ttid.Tenant, err = parseID("tenant_id", tenantID); err != nil {
		return ttid, err
	}
	if timelineID != "" {
		if ttid.Timeline, err = parseID("timeline_id", timelineID); err != nil {
			return ttid, err
		}
	}
	if err := s.Manager.CheckTenant(ttid.Tenant); err != nil {
		return ttid, s.fail(ctx, "CheckTenant", err)
	}
	return ttid, nil
}

func (s *Service) ListTimelines(ctx context.Context, req *pb.ListTimelinesRequest) (*pb.ListTimelinesResponse, error) {
	var tenantID id.TenantID
	if req.TenantId != "" {
		var err error
		if tenantID, err = parseID("tenant_id", req.TenantId); err != nil {
			return nil, err
		}
		if err := s.Manager.CheckTenant(tenantID); err != nil {
			return nil, s.fail(ctx, "ListTimelines", err)
		}
	}
	out := &pb.ListTimelinesResponse{}
	for _, t := range s.Manager.List(tenantID) {
		out.Timelines = append(out.Timelines, timelineInfo(t.Info()))
	}
	return out, nil
}

// timeline finds the active timeline a request names.
func (s *Service) timeline(ctx context.Context, method, tenantID, timelineID string) (*tenant.Timeline, error) {
	ttid, err := parseTTID(tenantID, timelineID)
	if err != nil {
		return nil, err
	}
	t, err := s.Manager.Get(ttid)
	if err != nil {
		return nil, s.fail(ctx, method, err)
	}
	return t, nil
}

func (s *Service) GetTimeline(ctx context.Context, req *pb.GetTimelineRequest) (*pb.TimelineInfo, error) {
	t, err := s.timeline(ctx, "GetTimeline", req.TenantId, req.TimelineId)
	if err != nil {
		return nil, err
	}
	info := timelineInfo(t.Info())
	if req.IncludeLogicalSize {
		size, err := t.LogicalSize(ctx, lsn.LSN(info.LastRecordLsn))
		if err != nil {
			return nil, s.fail(ctx, "GetTimeline", err)
		}
		info.LogicalSizeBytes = size
	}
	return info, nil
}

func (s *Service) DeleteTimeline(ctx context.Context, req *pb.DeleteTimelineRequest) (*pb.DeleteTimelineResponse, error) {
	ttid, err := parseTTID(req.TenantId, req.TimelineId)
	if err != nil {
		return nil, err
	}
	if err := s.Manager.DeleteTimeline(ctx, ttid); err != nil {
		return nil, s.fail(ctx, "DeleteTimeline", err)
	}
	return &pb.DeleteTimelineResponse{}, nil
}

func (s *Service) Checkpoint(ctx context.Context, req *pb.CheckpointRequest) (*pb.TimelineInfo, error) {
	t, err := s.timeline(ctx, "Checkpoint", req.TenantId, req.TimelineId)
	if err != nil {
		return nil, err
	}
	if err := t.Checkpoint(ctx, !req.SkipCompaction); err != nil {
		return nil, s.fail(ctx, "Checkpoint", err)
	}
	return timelineInfo(t.Info()), nil
}

func timelineInfo(in tenant.Info) *pb.TimelineInfo {
	ti := &pb.TimelineInfo{
		TenantId: in.ID.Tenant.String(), TimelineId: in.ID.Timeline.String(),
		State: in.State, StateError: in.StateError, PgVersion: in.PgVersion,
		LastRecordLsn: uint64(in.LastRecord), PrevRecordLsn: uint64(in.PrevRecord),
		DiskConsistentLsn: uint64(in.DiskConsistent), RemoteConsistentLsn: uint64(in.RemoteConsistent),
		GcCutoffLsn: uint64(in.GCCutoff), InitdbLsn: uint64(in.InitDB),
		DeltaLayers: uint32(in.DeltaLayers), ImageLayers: uint32(in.ImageLayers), LayerBytes: uint64(in.LayerBytes),
		WalSource: in.WALSource, SafekeeperCommitLsn: uint64(in.SafekeeperCommitLSN),
		LastReceivedLsn: uint64(in.LastReceived), WalreceiverLastError: in.ReceiverError,
		RecordsIngested: in.RecordsIngested, WalBytesReceived: in.WALBytesReceived,
	}
	if !in.Ancestor.IsZero() {
		ti.AncestorTimelineId, ti.AncestorLsn = in.Ancestor.String(), uint64(in.AncestorLSN)
	}
	if !in.LastMessage.IsZero() {
		ti.LastReceivedUnixMs = in.LastMessage.UnixMilli()
	}
	return ti
}
