package main

import (
	"context"
	"fmt"

	"strata.dev/cli/local"
	"strata.dev/libs/lsn"
)

const computeUsage = `Usage:
  strata compute start --timeline <name> [--name N] [--lsn L] [--port P] [--pg-option name=value ...]
  strata compute stop <name>
  strata compute list [-o table|json]

PostgreSQL on a timeline, started from storage (a pageserver basebackup):

  start   without --lsn: a read-write compute at the end of the timeline, with
          its walproposer (one per timeline: a second is refused); with --lsn: a
          static, read-only compute at that LSN (default_transaction_read_only,
          no walproposer: its own WAL never reaches the safekeepers)
  stop    stop a compute and forget it (its data directory goes; everything
          committed is in storage)
  list    the computes: timeline, mode, pid, state, URI

Run 'strata compute <command> --help' for its flags.
`

func runCompute(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.Err, computeUsage)
		return errUsage
	}
	switch args[0] {
	case "start":
		return runComputeStart(ctx, e, args[1:])
	case "stop":
		return runComputeStop(ctx, e, args[1:])
	case "list":
		return runComputeList(ctx, e, args[1:])
	case "help", "-h", "--help", "-help":
		fmt.Fprint(e.Out, computeUsage)
		return nil
	}
	fmt.Fprintf(e.Err, "strata compute: unknown command %q\n\n%s", args[0], computeUsage)
	return errUsage
}

func runComputeStart(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "compute start", "", "Starts PostgreSQL on a timeline from a pageserver basebackup and prints its URI.")
	cfg := localConfigFlags(fs, e)
	tl := fs.String("timeline", "", "the timeline (name or id; required)")
	name := fs.String("name", "", "the compute's name (default: the timeline's, or <timeline>-at-<lsn> with --lsn)")
	at := fs.String("lsn", "", "a static read-only compute at this LSN (X/Y)")
	port := fs.Int("port", 0, fmt.Sprintf("PostgreSQL's port (default: the next free one from %d)", local.FirstComputePort))
	opts := pgOptionFlag(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *tl == "" {
		return usageError(fs, "--timeline is required")
	}
	if *port < 0 || *port > 65535 {
		return usageError(fs, "--port %d is not a port", *port)
	}
	req := local.ComputeRequest{Name: *name, Timeline: *tl, Port: *port, Options: opts}
	if len(opts) == 0 {
		req.Options = nil
	}
	if *at != "" {
		l, err := lsn.Parse(*at)
		if err != nil || l == 0 {
			return usageError(fs, "--lsn %q: want an LSN such as 0/16B5A50", *at)
		}
		req.LSN = l
	}
	c, err := local.Open(e.Dir, *cfg)
	if err != nil {
		return err
	}
	s, n, err := c.StartCompute(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "\ncompute %s is running:\n  psql %s\n", n, s.URI)
	return nil
}

func runComputeStop(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "compute stop", "<name>", "Stops a compute (PostgreSQL with a fast shutdown, then its walproposer) and forgets it.")
	cfg := localConfigFlags(fs, e)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := local.Open(e.Dir, *cfg)
	if err != nil {
		return err
	}
	st, err := c.StopCompute(ctx, pos[0])
	if err != nil {
		return err
	}
	switch {
	case st.Postgres.Running:
		fmt.Fprintf(e.Out, "stopped compute %s (pid %d)\n", pos[0], st.Postgres.Pid)
	default:
		fmt.Fprintf(e.Out, "compute %s was not running; forgotten\n", pos[0])
	}
	return nil
}

func runComputeList(ctx context.Context, e env, args []string) error {
	return runLocalListing(e, args, "compute list", "The computes of the cluster in --dir.", (*local.Cluster).Computes, local.PrintComputes)
}
