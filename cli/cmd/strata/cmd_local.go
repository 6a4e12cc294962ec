package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"strata.dev/cli/compute"
	"strata.dev/cli/local"
)

const localUsage = `Usage:
  strata local up [--pg-option name=value ...] [--pg-port P] [port flags]
  strata local status [-o table|json]
  strata local down
  strata local compute restart [--name main]

A whole cluster on this machine, in --dir: three safekeepers and a pageserver
as background processes (logs and pid files in --dir; they keep running after
strata exits), timeline "main" bootstrapped by initdb on the pageserver, and
the primary: a compute started from a pageserver basebackup, with the
walproposer in front of it, so every commit waits for 2 of 3 safekeepers.

  up       start what is not running (a new cluster on a fresh --dir) and
           print the primary's postgresql:// URI; a compute that is down
           starts again from storage
  status   every process: pid, running or not, address
  down     stop every process it started (computes first, pg_ctl -m fast;
           then walproposers, the pageserver, the safekeepers); state stays
  compute restart
           stop a compute and start it again from storage (sync the
           safekeepers, basebackup at the committed end of WAL, walproposer
           from there); nothing committed is lost

Run 'strata local <command> --help' for its flags.
`

func runLocal(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.Err, localUsage)
		return errUsage
	}
	switch args[0] {
	case "up":
		return runLocalUp(ctx, e, args[1:])
	case "down":
		return runLocalDown(ctx, e, args[1:])
	case "status":
		return runLocalStatus(ctx, e, args[1:])
	case "compute":
		if len(args) > 1 && args[1] == "restart" {
			return runLocalComputeRestart(ctx, e, args[2:])
		}
		fmt.Fprintf(e.Err, "strata local compute: want `restart`\n\n%s", localUsage)
		return errUsage
	case "help", "-h", "--help", "-help":
		fmt.Fprint(e.Out, localUsage)
		return nil
	}
	fmt.Fprintf(e.Err, "strata local: unknown command %q\n\n%s", args[0], localUsage)
	return errUsage
}

// localConfigFlags are the flags every local command takes.
func localConfigFlags(fs *flag.FlagSet, e env) *local.Config {
	cfg := &local.Config{Out: e.Out}
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "Strata's binaries (default $STRATA_BIN_DIR, else the directory of this strata binary)")
	fs.StringVar(&cfg.PgBinDir, "pg-bin-dir", "", "PostgreSQL 15's binaries (default $STRATA_PG_BINDIR, else "+local.DefaultPgBinDir+")")
	return cfg
}

// pgOptionFlag collects repeated --pg-option name=value.
func pgOptionFlag(fs *flag.FlagSet) map[string]string {
	opts := map[string]string{}
	fs.Func("pg-option", "a postgresql.conf setting for the compute, name=value (repeatable)", func(s string) error {
		name, value, err := compute.ParseOption(s)
		if err != nil {
			return err
		}
		opts[name] = value
		return nil
	})
	return opts
}

func runLocalUp(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "local up", "", "Starts the local cluster in --dir (a new one if it has none) and prints how to connect.")
	cfg := localConfigFlags(fs, e)
	opts := pgOptionFlag(fs)
	p := local.DefaultPorts()
	given := false
	portFlag := func(name string, dst *int, what string) {
		fs.Func(name[2:], fmt.Sprintf("%s port of a new cluster (default %d)", what, *dst), func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || n > 65535 {
				return fmt.Errorf("%q is not a port", s)
			}
			*dst, given = n, true
			return nil
		})
	}
	listFlag := func(name string, dst *[3]int, what string) {
		fs.Func(name[2:], fmt.Sprintf("%s ports of the three safekeepers of a new cluster (default %s)", what, local.FormatPortList(*dst)), func(s string) error {
			l, err := local.ParsePortList(name, s)
			if err != nil {
				return err
			}
			*dst, given = l, true
			return nil
		})
	}
	portFlag(local.FlagComputePort, &p.Compute, "the primary's PostgreSQL")
	portFlag(local.FlagPageserverPG, &p.PageserverPG, "the pageserver's libpq")
	portFlag(local.FlagPageserverGRPC, &p.PageserverGRPC, "the pageserver's gRPC")
	portFlag(local.FlagPageserverHTTP, &p.PageserverHTTP, "the pageserver's HTTP")
	listFlag(local.FlagSafekeeperPG, &p.SafekeeperPG, "libpq")
	listFlag(local.FlagSafekeeperGRPC, &p.SafekeeperGRPC, "gRPC")
	listFlag(local.FlagSafekeeperHTTP, &p.SafekeeperHTTP, "HTTP")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	uri, err := local.Up(ctx, e.Dir, local.UpOptions{Config: *cfg, Ports: p, PortsGiven: given, PgOptions: opts})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out)
	if c, err := local.Open(e.Dir, *cfg); err == nil {
		if ps, err := c.Processes(); err == nil {
			_ = local.PrintStatus(e.Out, ps)
		}
	}
	fmt.Fprintf(e.Out, `
Strata is running (state and logs in %s).
Every commit on the primary returns once 2 of 3 safekeepers have it on disk:

  psql %s

  strata --dir %s status         # daemons and timelines, LSNs
  strata --dir %s local down     # stop it all
`, e.Dir, uri, e.Dir, e.Dir)
	return nil
}

func runLocalDown(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "local down", "", "Stops every process of the local cluster in --dir (computes, walproposers, pageserver, safekeepers).")
	cfg := localConfigFlags(fs, e)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	return local.Down(ctx, e.Dir, *cfg)
}

func runLocalStatus(ctx context.Context, e env, args []string) error {
	return runLocalListing(e, args, "local status", "Every process of the local cluster in --dir: pid, running or not, address.",
		(*local.Cluster).Processes, local.PrintStatus)
}

// runLocalListing is a listing command of the local cluster in --dir: list
// reads it, table prints it (-o table).
func runLocalListing[T any](e env, args []string, cmd, about string, list func(*local.Cluster) (T, error), table func(io.Writer, T) error) error {
	fs := newFlagSet(e, cmd, "", about)
	cfg := localConfigFlags(fs, e)
	output := outputFlag(fs)
	if err := parseOutputArgs(fs, args, output); err != nil {
		return err
	}
	c, err := local.Open(e.Dir, *cfg)
	if err != nil {
		return err
	}
	v, err := list(c)
	if err != nil {
		return err
	}
	return writeOutput(e.Out, *output, v, func(w io.Writer) error { return table(w, v) })
}

func runLocalComputeRestart(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "local compute restart", "", "Stops a compute and starts it again from storage (nothing committed is lost).")
	cfg := localConfigFlags(fs, e)
	name := fs.String("name", local.MainCompute, "the compute")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := local.Open(e.Dir, *cfg)
	if err != nil {
		return err
	}
	return c.RestartCompute(ctx, *name)
}
