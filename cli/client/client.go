// Package client connects the strata CLI to a cluster's daemons over gRPC
// (the pageserver's management API and every safekeeper's status API, as
// strata.toml lists them) and turns gRPC failures into messages an operator
// can act on: which daemon, at which address, and what to try next.
//
// Connections are lazy (grpc.NewClient): a daemon that is down costs nothing
// until a call to it, which then fails fast with "not answering". Every unary
// call gets the deadline of Cluster.Call; streams get none and end with the
// caller's context (Ctrl-C).
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"strata.dev/cli/cluster"
	"strata.dev/libs/id"
	pspb "strata.dev/proto/pageserver/v1"
	skpb "strata.dev/proto/safekeeper/v1"
)

// DefaultTimeout is the deadline of one call unless --timeout says otherwise.
const DefaultTimeout = 10 * time.Second

// Pageserver is the cluster's pageserver and its clients.
type Pageserver struct {
	Daemon
	API    pspb.PageserverClient
	Health healthpb.HealthClient
}

// Safekeeper is one safekeeper and its clients.
type Safekeeper struct {
	Daemon
	API    skpb.SafekeeperClient
	Health healthpb.HealthClient
}

// Cluster is an open connection to every daemon of a cluster file.
type Cluster struct {
	// Dir is the cluster directory the file came from.
	Dir  string
	File *cluster.File
	// Timeout is the deadline of each unary call.
	Timeout     time.Duration
	Pageserver  Pageserver
	Safekeepers []Safekeeper

	conns []*grpc.ClientConn
}

// Open reads dir's strata.toml and prepares connections to its daemons.
func Open(dir string, timeout time.Duration) (*Cluster, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, not %v", timeout)
	}
	f, err := cluster.Load(dir)
	if err != nil {
		return nil, err
	}
	return New(dir, f, timeout)
}

// New prepares connections to the daemons of f, the strata.toml of dir,
// for a caller that has the file already; timeout must be positive.
func New(dir string, f *cluster.File, timeout time.Duration) (*Cluster, error) {
	c := &Cluster{Dir: dir, File: f, Timeout: timeout}
	ps := f.Pageserver
	conn, err := c.dial(ps.ListenGRPC)
	if err != nil {
		return nil, fmt.Errorf("pageserver listen_grpc %q: %w", ps.ListenGRPC, err)
	}
	c.Pageserver = Pageserver{
		Daemon: Daemon{Kind: KindPageserver, ID: ps.ID, Addr: ps.ListenGRPC, Config: ps},
		API:    pspb.NewPageserverClient(conn), Health: healthpb.NewHealthClient(conn),
	}
	for i, sk := range f.Safekeepers {
		conn, err := c.dial(sk.ListenGRPC)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("safekeepers[%d] listen_grpc %q: %w", i, sk.ListenGRPC, err)
		}
		c.Safekeepers = append(c.Safekeepers, Safekeeper{
			Daemon: Daemon{Kind: KindSafekeeper, ID: sk.ID, Addr: sk.ListenGRPC, Config: sk},
			API:    skpb.NewSafekeeperClient(conn), Health: healthpb.NewHealthClient(conn),
		})
	}
	return c, nil
}

func (c *Cluster) dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c.conns = append(c.conns, conn)
	return conn, nil
}

// Close closes every connection.
func (c *Cluster) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	c.conns = nil
	return errors.Join(errs...)
}

// Call is ctx with the deadline of one unary call.
func (c *Cluster) Call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.Timeout)
}

// Tenant is the cluster's tenant id.
func (c *Cluster) Tenant() id.TenantID { return c.File.Tenant() }

// Explain turns an error of a call to d into an operator's message (see
// Error); other errors pass through.
func (c *Cluster) Explain(d Daemon, err error) error { return explain(d, c.Timeout, err) }

// TimelineName is a timeline's name in strata.toml, or its id if it has none.
func (c *Cluster) TimelineName(tl string) string {
	if n := c.NameOf(tl); n != "" {
		return n
	}
	return tl
}

// NameOf is the name strata.toml gives the timeline with id tl, or "" if
// it has none.
func (c *Cluster) NameOf(tl string) string {
	t, err := id.Parse(tl)
	if err != nil {
		return ""
	}
	return c.File.TimelineName(t)
}

// TimelineLess orders timelines as the CLI lists them: named ones first,
// by name, then the unnamed ones by id.
func TimelineLess(aName, aID, bName, bID string) bool {
	if (aName == "") != (bName == "") {
		return aName != ""
	}
	if aName != bName {
		return aName < bName
	}
	return aID < bID
}

// PageserverTimelines lists the timelines of the cluster's tenant on the
// pageserver; an error says which daemon and why (Explain).
func (c *Cluster) PageserverTimelines(ctx context.Context) ([]*pspb.TimelineInfo, error) {
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := c.Pageserver.API.ListTimelines(cctx, &pspb.ListTimelinesRequest{TenantId: c.Tenant().String()})
	if err != nil {
		return nil, c.Explain(c.Pageserver.Daemon, err)
	}
	return resp.Timelines, nil
}

// SafekeeperTimelines lists the timelines of the cluster's tenant on sk
// (a safekeeper lists every tenant's); an error says which daemon and why
// (Explain).
func (c *Cluster) SafekeeperTimelines(ctx context.Context, sk Safekeeper) ([]*skpb.TimelineInfo, error) {
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := sk.API.ListTimelines(cctx, &skpb.ListTimelinesRequest{})
	if err != nil {
		return nil, c.Explain(sk.Daemon, err)
	}
	tenant := c.Tenant().String()
	var out []*skpb.TimelineInfo
	for _, ti := range resp.Timelines {
		if ti.TenantId == tenant {
			out = append(out, ti)
		}
	}
	return out, nil
}
