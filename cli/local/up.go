package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"strata.dev/cli/cluster"
	"strata.dev/cli/compute"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pguser"
	pspb "strata.dev/proto/pageserver/v1"
)

// UpOptions are `strata local up`'s.
type UpOptions struct {
	Config
	// Ports are for a new cluster; PortsGiven says a flag set one (an
	// error for an existing cluster, whose ports are in strata.toml).
	Ports      Ports
	PortsGiven bool
	// PgOptions go into the primary's postgresql.conf (and are recorded).
	PgOptions map[string]string
}

// Up starts the local cluster in dir, creating it if dir has none, and
// returns the primary's connection URI. Whatever runs already is left
// alone; a compute that is down starts again from storage.
func Up(ctx context.Context, dir string, o UpOptions) (uri string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lockOps(ctx, dir, o.Out)
	if err != nil {
		return "", err
	}
	defer unlock()
	f, err := cluster.Load(dir)
	fresh := errors.Is(err, cluster.ErrNoCluster)
	switch {
	case fresh:
		if f, err = newCluster(dir, o); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	case f.Local == nil:
		return "", fmt.Errorf("the cluster in %s is not a local one (%s has no [local] section): its daemons run elsewhere", dir, filepath.Join(dir, cluster.FileName))
	case o.PortsGiven:
		return "", fmt.Errorf("%s already has a cluster: its ports are in %s (port flags only choose a new cluster's)", dir, filepath.Join(dir, cluster.FileName))
	}
	c, err := open(dir, f, o.Config)
	if err != nil {
		return "", err
	}
	if err := c.checkBinaries("safekeeper", "pageserver", "walproposer", "walredo.so"); err != nil {
		return "", err
	}
	if fresh {
		if _, err := os.Stat(filepath.Join(dir, "ids")); err == nil {
			c.say("note: %s holds state of the old deploy/local/run.sh; it is left alone (remove the directory to reclaim it)", c.Dir)
		}
		c.say("new cluster in %s (tenant %s)", c.Dir, f.TenantID)
		if c.Compute.ServerDir != c.Dir {
			c.say("note: the %s user cannot reach %s; the pageserver's and PostgreSQL's data go to %s", c.User.Name, c.Dir, c.Compute.ServerDir)
		}
		if err := f.Save(dir); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(c.Compute.ServerDir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", c.Compute.ServerDir, err)
	}

	started := 0
	for _, d := range c.daemons() {
		s, err := c.startDaemon(ctx, d)
		if err != nil {
			return "", err
		}
		if s {
			started++
		}
	}
	if err := c.ensureMainTimeline(ctx); err != nil {
		return "", err
	}
	n, err := c.ensurePrimary(ctx, o.PgOptions)
	if err != nil {
		return "", err
	}
	started += n
	n, err = c.startComputes(ctx)
	if err != nil {
		return "", err
	}
	if started+n == 0 {
		c.say("everything was already running")
	}
	return compute.URI(c.File.Computes[c.primaryName()].Port), nil
}

// newCluster is the cluster file of a new cluster in dir.
func newCluster(dir string, o UpOptions) (*cluster.File, error) {
	if err := o.Ports.Check(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	tenant := id.Generate()
	f := &cluster.File{
		TenantID: tenant.String(),
		PgBinDir: o.Config.pgBinDir(),
		Pageserver: cluster.Daemon{ID: 1, ListenPG: addr(o.Ports.PageserverPG),
			ListenGRPC: addr(o.Ports.PageserverGRPC), ListenHTTP: addr(o.Ports.PageserverHTTP)},
		Timelines: map[string]string{},
		Computes:  map[string]cluster.Compute{},
		Local:     &cluster.Local{ServerDir: abs},
	}
	for i := range 3 {
		f.Safekeepers = append(f.Safekeepers, cluster.Daemon{ID: uint64(i + 1), ListenPG: addr(o.Ports.SafekeeperPG[i]),
			ListenGRPC: addr(o.Ports.SafekeeperGRPC[i]), ListenHTTP: addr(o.Ports.SafekeeperHTTP[i])})
	}
	// A placeholder until ensurePrimary: it carries the port and options.
	f.Computes[MainCompute] = cluster.Compute{Timeline: MainTimeline, Port: o.Ports.Compute}
	// The pageserver and PostgreSQL run as the server user: their data
	// goes where that user can reach.
	u, err := pguser.Server(serverAccount)
	if err != nil {
		return nil, err
	}
	if !u.CanTraverse(abs) {
		f.Local.ServerDir = filepath.Join("/var/tmp", "strata-"+tenant.String())
	}
	return f, nil
}

// primaryName is the read-write compute on the main timeline.
func (c *Cluster) primaryName() string {
	for _, name := range sortedComputes(c.File) {
		if cc := c.File.Computes[name]; cc.Timeline == MainTimeline && !cc.ReadOnly() {
			return name
		}
	}
	return MainCompute
}

// ensureMainTimeline creates the tenant and bootstraps timeline main on
// the pageserver (initdb runs there) unless strata.toml names it already.
func (c *Cluster) ensureMainTimeline(ctx context.Context) error {
	conn, err := grpc.NewClient(c.File.Pageserver.ListenGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("pageserver %s: %w", c.File.Pageserver.ListenGRPC, err)
	}
	defer conn.Close()
	ps := pspb.NewPageserverClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if tl, ok := c.File.Timelines[MainTimeline]; ok {
		_, err := ps.GetTimeline(ctx, &pspb.GetTimelineRequest{TenantId: c.File.TenantID, TimelineId: tl})
		if err != nil {
			return fmt.Errorf("pageserver %s: timeline %s (%s): %w", c.File.Pageserver.ListenGRPC, MainTimeline, tl, err)
		}
		return nil
	}
	_, err = ps.CreateTenant(ctx, &pspb.CreateTenantRequest{TenantId: c.File.TenantID})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("pageserver %s: create tenant %s: %w", c.File.Pageserver.ListenGRPC, c.File.TenantID, err)
	}
	tl := id.Generate()
	c.say("bootstrapping timeline %s (%s) on the pageserver (initdb)", MainTimeline, tl)
	info, err := ps.CreateTimeline(ctx, &pspb.CreateTimelineRequest{TenantId: c.File.TenantID, TimelineId: tl.String(),
		Source: &pspb.CreateTimelineRequest_Bootstrap{Bootstrap: &pspb.Bootstrap{PgVersion: 15}}})
	if err != nil {
		return fmt.Errorf("pageserver %s: bootstrap timeline %s: %w", c.File.Pageserver.ListenGRPC, MainTimeline, err)
	}
	c.say("timeline %s starts at %s", MainTimeline, lsn.LSN(info.LastRecordLsn))
	return c.update(ctx, func(f *cluster.File) error { return f.AddTimeline(MainTimeline, tl) })
}

// ensurePrimary records the read-write compute on timeline main (with
// the --pg-option settings) and starts it from storage unless it runs.
func (c *Cluster) ensurePrimary(ctx context.Context, opts map[string]string) (started int, err error) {
	name := c.primaryName()
	changed := false
	err = c.update(ctx, func(f *cluster.File) error {
		cc, ok := f.Computes[name]
		if ok && (cc.Timeline != MainTimeline || cc.ReadOnly()) {
			return fmt.Errorf("compute %s is not the primary (timeline %s, lsn %q): remove it with `strata compute stop %s`", name, cc.Timeline, cc.LSN, name)
		}
		if !ok {
			cc = cluster.Compute{Timeline: MainTimeline, Port: DefaultPorts().Compute}
		}
		if cc.Datadir == "" {
			cc.Datadir = c.Compute.DataDir(name)
		}
		if len(opts) > 0 && cc.Options == nil {
			cc.Options = map[string]string{}
		}
		for k, v := range opts {
			if old, ok := cc.Options[k]; !ok || old != v {
				changed = true
			}
			cc.Options[k] = v
		}
		f.Computes[name] = cc
		return nil
	})
	if err != nil {
		return 0, err
	}
	// New settings take a restart (from storage, as any start).
	return c.ensureCompute(ctx, name, changed)
}

// startComputes starts every other recorded compute that is down.
func (c *Cluster) startComputes(ctx context.Context) (started int, err error) {
	primary := c.primaryName()
	for _, name := range sortedComputes(c.File) {
		if name == primary {
			continue
		}
		n, err := c.ensureCompute(ctx, name, false)
		if err != nil {
			return started, err
		}
		started += n
	}
	return started, nil
}

// ensureCompute starts compute name from storage unless it runs whole
// (PostgreSQL, and the walproposer of a read-write one). A half-running
// compute, or one whose settings changed (restart), is stopped first.
func (c *Cluster) ensureCompute(ctx context.Context, name string, restart bool) (started int, err error) {
	cc := c.File.Computes[name]
	st, err := c.Compute.Status(name)
	if err != nil {
		return 0, err
	}
	whole := st.Postgres.Running && (cc.ReadOnly() || st.Walproposer.Running)
	if whole && !restart {
		c.say("compute %s is running (pid %d): %s", name, st.Postgres.Pid, compute.URI(cc.Port))
		return 0, nil
	}
	if st.Postgres.Running || st.Walproposer.Running {
		c.say("stopping compute %s to start it again from storage", name)
		if _, err := c.Compute.Stop(ctx, name, cc); err != nil {
			return 0, err
		}
	}
	return 1, c.startCompute(ctx, name)
}

// startCompute starts a recorded compute and records its walproposer's
// address.
func (c *Cluster) startCompute(ctx context.Context, name string) error {
	cc := c.File.Computes[name]
	s, err := c.Compute.Start(ctx, name, cc)
	if err != nil {
		return err
	}
	how := fmt.Sprintf("read-write at %s", s.LSN)
	if cc.ReadOnly() {
		how = fmt.Sprintf("read-only at %s", s.LSN)
	}
	c.say("compute %s is up (pid %d, %s): %s", name, s.Pid, how, s.URI)
	if s.WalproposerHTTP == cc.WalproposerHTTP {
		return nil
	}
	return c.update(ctx, func(f *cluster.File) error {
		if r, ok := f.Computes[name]; ok {
			r.WalproposerHTTP = s.WalproposerHTTP
			f.Computes[name] = r
		}
		return nil
	})
}

func sortedComputes(f *cluster.File) []string {
	names := make([]string, 0, len(f.Computes))
	for n := range f.Computes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
