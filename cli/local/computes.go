package local

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"strata.dev/cli/cluster"
	"strata.dev/cli/compute"
	"strata.dev/cli/process"
	"strata.dev/libs/lsn"
)

// FirstComputePort is where ports of computes without --port start.
const FirstComputePort = 55433

// ComputeRequest is `strata compute start`'s arguments.
type ComputeRequest struct {
	// Name is the compute's; empty: the timeline's name for a read-write
	// compute, "<timeline>-at-<lsn>" for a read-only one.
	Name     string
	Timeline string
	// LSN makes a static read-only compute at that LSN.
	LSN lsn.LSN
	// Port is 0 for the next free one from FirstComputePort.
	Port    int
	Options map[string]string
}

// StartCompute records and starts a compute. A second read-write compute
// on a timeline is refused: two primaries would fight over its WAL.
func (c *Cluster) StartCompute(ctx context.Context, r ComputeRequest) (compute.Started, string, error) {
	unlock, err := lockOps(ctx, c.Dir, c.out)
	if err != nil {
		return compute.Started{}, "", err
	}
	defer unlock()
	if _, err := c.File.Timeline(r.Timeline); err != nil {
		return compute.Started{}, "", err
	}
	name := r.Name
	if name == "" {
		name = r.Timeline
		if r.LSN != 0 {
			name = fmt.Sprintf("%s-at-%s", r.Timeline, strings.ReplaceAll(r.LSN.String(), "/", "-"))
		}
	}
	if err := cluster.ValidateComputeName(name); err != nil {
		return compute.Started{}, "", err
	}
	want := cluster.Compute{Timeline: r.Timeline, Port: r.Port, Options: r.Options, Datadir: c.Compute.DataDir(name)}
	if r.LSN != 0 {
		want.LSN = r.LSN.String()
	}
	_, existed := c.File.Computes[name]
	err = c.update(ctx, func(f *cluster.File) error {
		cc, err := c.plan(f, name, want)
		if err != nil {
			return err
		}
		f.Computes[name] = cc
		return nil
	})
	if err != nil {
		return compute.Started{}, "", err
	}
	if err := c.startCompute(ctx, name); err != nil {
		if !existed {
			c.forget(ctx, name)
		}
		return compute.Started{}, "", err
	}
	st, err := c.Compute.Status(name)
	if err != nil {
		return compute.Started{}, "", err
	}
	cc := c.File.Computes[name]
	return compute.Started{Pid: st.Postgres.Pid, URI: compute.URI(cc.Port), WalproposerHTTP: cc.WalproposerHTTP}, name, nil
}

// plan checks a compute request against the recorded computes and returns
// the compute to record: a new one, or a stopped one started again (its
// timeline and LSN cannot change; --port and --pg-option may).
func (c *Cluster) plan(f *cluster.File, name string, want cluster.Compute) (cluster.Compute, error) {
	if old, ok := f.Computes[name]; ok {
		st, err := c.Compute.Status(name)
		if err != nil {
			return want, err
		}
		if st.Postgres.Running {
			return want, fmt.Errorf("compute %s is already running (pid %d): %s", name, st.Postgres.Pid, compute.URI(old.Port))
		}
		if old.Timeline != want.Timeline || (want.LSN != "" && old.LSN != want.LSN) {
			return want, fmt.Errorf("compute %s exists on timeline %s (lsn %q): pick another --name, or `strata compute stop %s` first", name, old.Timeline, old.LSN, name)
		}
		if want.Port == 0 {
			want.Port = old.Port
		}
		if want.Options == nil {
			want.Options = old.Options
		}
		want.LSN, want.Datadir, want.WalproposerHTTP = old.LSN, old.Datadir, old.WalproposerHTTP
	}
	if !want.ReadOnly() {
		for other, cc := range f.Computes {
			if other == name || cc.ReadOnly() || cc.Timeline != want.Timeline {
				continue
			}
			state := "stopped; `strata local up` starts it again"
			if st, err := c.Compute.Status(other); err == nil && st.Postgres.Running {
				state = fmt.Sprintf("running, pid %d, %s", st.Postgres.Pid, compute.URI(cc.Port))
			}
			return want, fmt.Errorf("timeline %s already has a read-write compute, %s (%s): stop it first (`strata compute stop %s`), or start a read-only one with --lsn",
				want.Timeline, other, state, other)
		}
	}
	taken := map[int]string{}
	for other, cc := range f.Computes {
		if other != name {
			taken[cc.Port] = other
		}
	}
	if want.Port != 0 {
		if other, ok := taken[want.Port]; ok {
			return want, fmt.Errorf("port %d belongs to compute %s: choose another with --port", want.Port, other)
		}
		if err := process.AddrFree(addr(want.Port)); err != nil {
			return want, fmt.Errorf("port %d is taken: choose another with --port (%v)", want.Port, err)
		}
		return want, nil
	}
	for p := FirstComputePort; p <= 65535; p++ {
		if _, ok := taken[p]; !ok && process.AddrFree(addr(p)) == nil {
			want.Port = p
			return want, nil
		}
	}
	return want, fmt.Errorf("no free port from %d up", FirstComputePort)
}

// forget removes a compute's record and files.
func (c *Cluster) forget(ctx context.Context, name string) {
	cc := c.File.Computes[name]
	_ = c.update(ctx, func(f *cluster.File) error {
		delete(f.Computes, name)
		return nil
	})
	_ = c.Compute.Remove(name, cc)
}

// StopCompute stops a compute and forgets it: its data directory goes
// (everything committed is in storage), and `strata local up` no longer
// starts it.
func (c *Cluster) StopCompute(ctx context.Context, name string) (compute.Status, error) {
	unlock, err := lockOps(ctx, c.Dir, c.out)
	if err != nil {
		return compute.Status{}, err
	}
	defer unlock()
	cc, ok := c.File.Computes[name]
	if !ok {
		return compute.Status{}, fmt.Errorf("no compute named %q (known: %s)", name, strings.Join(sortedComputes(c.File), ", "))
	}
	st, err := c.Compute.Stop(ctx, name, cc)
	if err != nil {
		return st, err
	}
	if err := c.update(ctx, func(f *cluster.File) error {
		delete(f.Computes, name)
		return nil
	}); err != nil {
		return st, err
	}
	return st, c.Compute.Remove(name, cc)
}

// RestartCompute stops a compute and starts it again from storage: sync
// the safekeepers, a basebackup at the committed end of WAL, PostgreSQL on
// it, a walproposer from that LSN. Its old data directory is replaced.
func (c *Cluster) RestartCompute(ctx context.Context, name string) error {
	unlock, err := lockOps(ctx, c.Dir, c.out)
	if err != nil {
		return err
	}
	defer unlock()
	cc, ok := c.File.Computes[name]
	if !ok {
		return fmt.Errorf("no compute named %q (known: %s)", name, strings.Join(sortedComputes(c.File), ", "))
	}
	st, err := c.Compute.Stop(ctx, name, cc)
	if err != nil {
		return err
	}
	if st.Postgres.Running {
		c.say("stopped compute %s (pid %d)", name, st.Postgres.Pid)
	}
	if st.Walproposer.Running {
		c.say("stopped its walproposer (pid %d)", st.Walproposer.Pid)
	}
	return c.startCompute(ctx, name)
}

// ComputeInfo is one row of `strata compute list`.
type ComputeInfo struct {
	Name     string `json:"name"`
	Timeline string `json:"timeline"`
	// Mode is "read-write" or "read-only at <lsn>".
	Mode    string `json:"mode"`
	Pid     int    `json:"pid,omitempty"`
	Running bool   `json:"running"`
	URI     string `json:"uri"`
}

// Computes lists the recorded computes.
func (c *Cluster) Computes() ([]ComputeInfo, error) {
	var out []ComputeInfo
	for _, name := range sortedComputes(c.File) {
		cc := c.File.Computes[name]
		st, err := c.Compute.Status(name)
		if err != nil {
			return nil, err
		}
		mode := "read-write"
		if cc.ReadOnly() {
			mode = "read-only at " + cc.LSN
		}
		out = append(out, ComputeInfo{Name: name, Timeline: cc.Timeline, Mode: mode, Pid: st.Postgres.Pid,
			Running: st.Postgres.Running && (cc.ReadOnly() || st.Walproposer.Running), URI: compute.URI(cc.Port)})
	}
	return out, nil
}

// PrintComputes writes computes as a table.
func PrintComputes(w io.Writer, cs []ComputeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTIMELINE\tMODE\tPID\tSTATE\tURI")
	for _, ci := range cs {
		state, pid := "stopped", "-"
		if ci.Running {
			state, pid = "running", fmt.Sprint(ci.Pid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ci.Name, ci.Timeline, ci.Mode, pid, state, ci.URI)
	}
	return tw.Flush()
}
