package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"strata.dev/cli/cluster"
	"strata.dev/cli/process"
)

// daemon is one safekeeper or the pageserver of a local cluster.
type daemon struct {
	// name is for messages and file names: sk1, sk2, sk3, pageserver.
	name, title string
	cfg         cluster.Daemon
}

func (c *Cluster) daemons() []daemon {
	var ds []daemon
	for i, sk := range c.File.Safekeepers {
		ds = append(ds, daemon{name: fmt.Sprintf("sk%d", i+1), title: fmt.Sprintf("safekeeper %d", i+1), cfg: sk})
	}
	return append(ds, daemon{name: "pageserver", title: "pageserver", cfg: c.File.Pageserver})
}

func (c *Cluster) pidPath(name string) string { return filepath.Join(c.Dir, name+".pid") }
func (c *Cluster) logPath(name string) string { return filepath.Join(c.Dir, name+".log") }

// spec is how daemon d runs.
func (c *Cluster) spec(d daemon) (process.Spec, error) {
	s := process.Spec{Name: d.title, LogPath: c.logPath(d.name), PidPath: c.pidPath(d.name)}
	listen := []string{"--listen-pg", d.cfg.ListenPG, "--listen-grpc", d.cfg.ListenGRPC, "--listen-http", d.cfg.ListenHTTP}
	if d.name != "pageserver" {
		s.Path = filepath.Join(c.Bin, "safekeeper")
		s.Dir = filepath.Join(c.Dir, d.name)
		s.Args = append([]string{"--id", strconv.FormatUint(d.cfg.ID, 10), "--datadir", s.Dir}, listen...)
		return s, os.MkdirAll(s.Dir, 0o755)
	}
	s.Dir = filepath.Join(c.Compute.ServerDir, "pageserver")
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return s, fmt.Errorf("create %s: %w", s.Dir, err)
	}
	if err := c.User.Chown(s.Dir); err != nil {
		return s, err
	}
	bin, lib, err := c.pageserverBinaries()
	if err != nil {
		return s, err
	}
	var skGRPC []string
	for _, sk := range c.File.Safekeepers {
		skGRPC = append(skGRPC, sk.ListenGRPC)
	}
	s.Path, s.User = bin, c.User
	s.Args = append([]string{"--id", strconv.FormatUint(d.cfg.ID, 10), "--datadir", s.Dir,
		"--safekeepers", strings.Join(c.File.SafekeeperPGAddrs(), ","),
		"--safekeepers-grpc", strings.Join(skGRPC, ","),
		"--pg-bin-dir", c.Compute.PgBinDir, "--walredo-library", lib}, listen...)
	return s, nil
}

// pageserverBinaries are the pageserver binary and walredo.so as the
// server user can reach them: where they were built, or copies in the
// server directory when the build is private to root.
func (c *Cluster) pageserverBinaries() (bin, lib string, err error) {
	bin, lib = filepath.Join(c.Bin, "pageserver"), filepath.Join(c.Bin, "walredo.so")
	if c.User.CanExec(bin) && c.User.CanRead(lib) {
		return bin, lib, nil
	}
	dir := filepath.Join(c.Compute.ServerDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	for _, f := range []struct {
		src  string
		mode os.FileMode
	}{{bin, 0o755}, {lib, 0o644}} {
		if err := copyFile(f.src, filepath.Join(dir, filepath.Base(f.src)), f.mode); err != nil {
			return "", "", err
		}
	}
	return filepath.Join(dir, "pageserver"), filepath.Join(dir, "walredo.so"), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		// Renamed into place: a running pageserver keeps its old inode.
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// startDaemon starts d unless it runs, and waits until its gRPC health
// service says SERVING.
func (c *Cluster) startDaemon(ctx context.Context, d daemon) (started bool, err error) {
	st, err := process.Check(c.pidPath(d.name))
	if err != nil {
		return false, err
	}
	if st.Running {
		c.say("%s is running (pid %d)", d.title, st.Pid)
		return false, nil
	}
	for _, a := range []string{d.cfg.ListenPG, d.cfg.ListenGRPC, d.cfg.ListenHTTP} {
		if a == "" {
			continue
		}
		if err := process.AddrFree(a); err != nil {
			return false, fmt.Errorf("cannot start %s: %w (something else listens there; stop it, or change the address in %s)", d.title, err, filepath.Join(c.Dir, cluster.FileName))
		}
	}
	spec, err := c.spec(d)
	if err != nil {
		return false, fmt.Errorf("start %s: %w", d.title, err)
	}
	c.say("starting %s (libpq %s, gRPC %s, HTTP %s; log %s)", d.title, d.cfg.ListenPG, d.cfg.ListenGRPC, d.cfg.ListenHTTP, spec.LogPath)
	p, err := process.Start(spec)
	if err != nil {
		return false, err
	}
	return true, p.WaitReady(ctx, time.Minute, func(ctx context.Context) error { return healthy(ctx, d.cfg.ListenGRPC) })
}

// healthy asks a daemon's standard gRPC health service.
func healthy(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %s", resp.Status)
	}
	return nil
}

// stopDaemon stops d: SIGTERM, SIGKILL after 30 s.
func (c *Cluster) stopDaemon(ctx context.Context, d daemon) (process.Status, error) {
	st, err := process.Stop(ctx, c.pidPath(d.name), syscall.SIGTERM, 30*time.Second)
	if err != nil {
		return st, fmt.Errorf("stop %s: %w", d.title, err)
	}
	return st, nil
}
