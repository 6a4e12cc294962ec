package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"strata.dev/cli/cluster"
	"strata.dev/cli/compute"
	"strata.dev/cli/process"
)

// Down stops every process of the local cluster in dir: computes (a fast
// shutdown), their walproposers, the pageserver, the safekeepers; each
// gets SIGTERM (computes pg_ctl -m fast), then SIGKILL if it is still
// there after a timeout, and Down returns only once each is gone. Running
// it again finds nothing to stop.
func Down(ctx context.Context, dir string, cfg Config) error {
	c, err := Open(dir, cfg)
	if errors.Is(err, cluster.ErrNoCluster) {
		fmt.Fprintf(cfg.Out, "no cluster in %s: nothing to stop\n", dir)
		return nil
	}
	if err != nil {
		return err
	}
	unlock, err := lockOps(ctx, c.Dir, c.out)
	if err != nil {
		return err
	}
	defer unlock()
	stopped := 0
	for _, name := range sortedComputes(c.File) {
		st, err := c.Compute.Stop(ctx, name, c.File.Computes[name])
		if err != nil {
			return err
		}
		if st.Postgres.Running {
			c.say("stopped compute %s (PostgreSQL, pid %d)", name, st.Postgres.Pid)
			stopped++
		}
		if st.Walproposer.Running {
			c.say("stopped compute %s's walproposer (pid %d)", name, st.Walproposer.Pid)
			stopped++
		}
	}
	ds := c.daemons()
	// The pageserver first, then the safekeepers it streams from.
	for i := len(ds) - 1; i >= 0; i-- {
		st, err := c.stopDaemon(ctx, ds[i])
		if err != nil {
			return err
		}
		if st.Running {
			c.say("stopped %s (pid %d)", ds[i].title, st.Pid)
			stopped++
		}
	}
	if stopped == 0 {
		c.say("nothing was running")
	} else {
		c.say("stopped %d processes; state kept in %s (`strata local up` resumes)", stopped, c.Dir)
	}
	return nil
}

// ProcessStatus is one process of a local cluster.
type ProcessStatus struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid,omitempty"`
	Running bool   `json:"running"`
	Address string `json:"address"`
}

// Processes reports every process of the local cluster.
func (c *Cluster) Processes() ([]ProcessStatus, error) {
	var out []ProcessStatus
	for _, d := range c.daemons() {
		st, err := process.Check(c.pidPath(d.name))
		if err != nil {
			return nil, err
		}
		out = append(out, ProcessStatus{Name: d.title, Pid: st.Pid, Running: st.Running,
			Address: fmt.Sprintf("libpq %s  gRPC %s  HTTP %s", d.cfg.ListenPG, d.cfg.ListenGRPC, d.cfg.ListenHTTP)})
	}
	for _, name := range sortedComputes(c.File) {
		cc := c.File.Computes[name]
		st, err := c.Compute.Status(name)
		if err != nil {
			return nil, err
		}
		out = append(out, ProcessStatus{Name: "compute " + name, Pid: st.Postgres.Pid, Running: st.Postgres.Running, Address: compute.URI(cc.Port)})
		if !cc.ReadOnly() {
			a := ""
			if cc.WalproposerHTTP != "" {
				a = "http://" + cc.WalproposerHTTP + "/metrics"
			}
			out = append(out, ProcessStatus{Name: "walproposer " + name, Pid: st.Walproposer.Pid, Running: st.Walproposer.Running, Address: a})
		}
	}
	return out, nil
}

// PrintStatus writes the processes as a table.
func PrintStatus(w io.Writer, ps []ProcessStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE\tADDRESS")
	for _, p := range ps {
		state, pid := "stopped", "-"
		if p.Running {
			state = "running"
		}
		if p.Pid != 0 {
			pid = fmt.Sprint(p.Pid)
		}
		if !p.Running && p.Pid != 0 {
			state = "dead (stale pid file)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, pid, state, p.Address)
	}
	return tw.Flush()
}
