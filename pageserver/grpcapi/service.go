// Package grpcapi is the pageserver's gRPC management service
// (proto/pageserver/v1, DESIGN.md decision 7): tenants, timelines
// (bootstrap, import, branch, delete, checkpoint), basebackups, pages and
// the timestamp-to-LSN lookup. It offers what the HTTP API (package
// httpapi) and the page service (package pageservice) offer, through the
// same code in package tenant and pageservice; this package only parses
// requests, maps errors to status codes (errors.go) and shapes replies.
//
// Files: service.go (the service, status, tenants), timelines.go
// (timeline management), import.go (ImportBasebackup's stream), reads.go
// (basebackup, pages, LSN for a timestamp).
package grpcapi

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/pageserver/pageservice"
	"strata.dev/pageserver/tenant"
	pb "strata.dev/proto/pageserver/v1"
)

// Node is what Status reports about the daemon.
type Node struct {
	ID uint64
	// The addresses actually listened on.
	ListenPG, ListenGRPC, ListenHTTP string
	Datadir                          string
	Version                          string
	Started                          time.Time
	// Safekeepers are the libpq addresses WAL is streamed from.
	Safekeepers []string
}

// Service implements pb.PageserverServer.
type Service struct {
	pb.UnimplementedPageserverServer
	Manager *tenant.Manager
	// Pages reads pages as the page service does; its Reconstructor (the
	// WAL-redo pool) also rebuilds basebackups' pages.
	Pages *pageservice.Service
	// WaitLSNTimeout bounds waiting for ingest to reach a requested LSN.
	WaitLSNTimeout time.Duration
	Node           Node
	Log            zerolog.Logger
}

func (s *Service) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	tenants, err := s.Manager.Tenants()
	if err != nil {
		return nil, s.fail(ctx, "Status", err)
	}
	n := s.Node
	return &pb.StatusResponse{
		NodeId: n.ID, ListenPg: n.ListenPG, ListenGrpc: n.ListenGRPC, ListenHttp: n.ListenHTTP,
		Tenants: uint32(len(tenants)), Timelines: uint32(len(s.Manager.List(id.TenantID{}))),
		Version: n.Version, StartedUnixMs: n.Started.UnixMilli(), Datadir: n.Datadir, Safekeepers: n.Safekeepers,
	}, nil
}

func (s *Service) CreateTenant(ctx context.Context, req *pb.CreateTenantRequest) (*pb.CreateTenantResponse, error) {
	tenantID := id.Generate()
	if req.TenantId != "" {
		var err error
		if tenantID, err = parseID("tenant_id", req.TenantId); err != nil {
			return nil, err
		}
	}
	if err := s.Manager.CreateTenant(tenantID); err != nil {
		return nil, s.fail(ctx, "CreateTenant", err)
	}
	return &pb.CreateTenantResponse{TenantId: tenantID.String()}, nil
}

func (s *Service) ListTenants(ctx context.Context, _ *pb.ListTenantsRequest) (*pb.ListTenantsResponse, error) {
	tenants, err := s.Manager.Tenants()
	if err != nil {
		return nil, s.fail(ctx, "ListTenants", err)
	}
	out := &pb.ListTenantsResponse{TenantIds: make([]string, 0, len(tenants))}
	for _, t := range tenants {
		out.TenantIds = append(out.TenantIds, t.String())
	}
	return out, nil
}
