package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"strata.dev/cli/client"
	"strata.dev/cli/timeline"
)

const timelineUsage = `Usage:
  strata timeline list [-o table|json]
  strata timeline create <name>
  strata timeline branch <name> [--from <timeline>] [--at <lsn|time>]

Timelines by name: names live in strata.toml ([timelines]), the pageserver
knows ids. A name is 1 to 63 characters of a-z, 0-9, _ and -.

  list     every timeline of the cluster's tenant on the pageserver: name (or id),
           ancestor (name@LSN), last record and disk-consistent LSNs, the
           safekeepers' commit LSN, state
  create   a new root timeline, bootstrapped from initdb on the pageserver
  branch   a new timeline off --from (default main) at --at (default: the last record):
           an LSN (0/16B3D08), a time in RFC 3339 (2026-11-25T10:04:05.123Z,
           2026-11-25T10:04:05+01:00), a local time ("2026-11-25 10:04:05[.fff]") or
           @<unix seconds[.frac]>. A time gives the LSN after the last commit at or
           before it (from commit records).

Run 'strata timeline <command> --help' for its flags.
`

func runTimeline(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.Err, timelineUsage)
		return errUsage
	}
	switch args[0] {
	case "list":
		return runTimelineList(ctx, e, args[1:])
	case "create":
		return runTimelineCreate(ctx, e, args[1:])
	case "branch":
		return runTimelineBranch(ctx, e, args[1:])
	case "help", "-h", "--help", "-help":
		fmt.Fprint(e.Out, timelineUsage)
		return nil
	}
	fmt.Fprintf(e.Err, "strata timeline: unknown command %q\n\n%s", args[0], timelineUsage)
	return errUsage
}

func runTimelineList(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "timeline list", "", "Every timeline of the cluster's tenant.\n\n"+timeline.ListJSONHelp)
	output := outputFlag(fs)
	timeout := fs.Duration("timeout", client.DefaultTimeout, "deadline of each call to a daemon")
	if err := parseOutputArgs(fs, args, output); err != nil {
		return err
	}
	c, err := client.Open(e.Dir, *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := timeline.List(ctx, c)
	if err != nil {
		return err
	}
	// In JSON the warnings are a field of the document.
	return writeOutput(e.Out, *output, l, func(w io.Writer) error {
		for _, warning := range l.Warnings {
			fmt.Fprintln(e.Err, "warning:", warning)
		}
		return l.WriteTable(w)
	})
}

func runTimelineCreate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "timeline create", "<name>", "Bootstraps a new root timeline from initdb on the pageserver and names it.")
	timeout := fs.Duration("timeout", 2*time.Minute, "deadline of each call (initdb runs in the create call)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := client.Open(e.Dir, *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	created, err := timeline.Create(ctx, c, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out, created)
	return nil
}

func runTimelineBranch(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "timeline branch", "<name>", "Branches a new timeline off another at an LSN or a time.\n  --at: "+timeline.AtHelp)
	from := fs.String("from", "main", "the ancestor timeline (name or id)")
	atText := fs.String("at", "", "branch point: an LSN or a time (default: the last record)")
	timeout := fs.Duration("timeout", client.DefaultTimeout, "deadline of each call to the pageserver")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	at, err := timeline.ParseAt(*atText, time.Local)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	c, err := client.Open(e.Dir, *timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	created, err := timeline.Branch(ctx, c, timeline.BranchOptions{Name: pos[0], From: *from, At: at})
	if err != nil {
		return err
	}
	for _, n := range created.Notes {
		fmt.Fprintln(e.Err, "note:", n)
	}
	fmt.Fprintln(e.Out, created)
	return nil
}

// newFlagSet is a subcommand's flag set; its usage names the command, its
// positional arguments and what it does. Asked for with --help, the usage
// goes to standard output; after a bad flag (whose message the flag
// package writes first), to standard error.
func newFlagSet(e env, cmd, positional, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("strata "+cmd, flag.ContinueOnError)
	errs := &wroteWriter{w: e.Err}
	fs.SetOutput(errs)
	fs.Usage = func() {
		w := e.Out
		if errs.wrote {
			w = e.Err
		}
		errs.wrote = false
		fmt.Fprintf(w, "Usage: strata %s [flags] %s\n\n%s\n\nFlags:\n", cmd, positional, about)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(errs)
	}
	return fs
}

// wroteWriter remembers whether anything was written through it.
type wroteWriter struct {
	w     io.Writer
	wrote bool
}

func (w *wroteWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.w.Write(p)
}

// parseArgs parses flags placed before, between or after the positional
// arguments ("branch x --at 0/1" as well as "branch --at 0/1 x") and
// checks that there are exactly want of them.
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err // flag printed the usage; exit 0
			}
			return nil, errUsage // flag printed the error and the usage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != want {
		return nil, usageError(fs, "want %d argument(s), got %d: %q", want, len(pos), pos)
	}
	return pos, nil
}

// usageError prints a usage mistake with the usage, for exit code 2.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}
