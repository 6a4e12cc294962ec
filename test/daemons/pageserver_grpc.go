package daemons

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "strata.dev/proto/pageserver/v1"
)

// GRPCConn dials the pageserver's gRPC port. Each call makes a new
// connection, closed when the test ends: keep what it returns.
func (p *Pageserver) GRPCConn() *grpc.ClientConn {
	p.t.Helper()
	c, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.t.Fatalf("pageserver gRPC: %v", err)
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

// GRPC is a client of the pageserver's management service on a new
// connection (see GRPCConn).
func (p *Pageserver) GRPC() pb.PageserverClient { return pb.NewPageserverClient(p.GRPCConn()) }
