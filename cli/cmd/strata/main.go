// Command strata is the operator's CLI for a Strata cluster: a local cluster
// in one command, timelines and branches by name, computes (read-write, or
// read-only at a past LSN), basebackups and the status of every daemon.
// See `strata --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env is what every subcommand gets: the cluster directory and where to
// write.
type env struct {
	// Dir is the cluster directory (holds strata.toml).
	Dir      string
	Out, Err io.Writer
}

// command is one top-level subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"local", "a whole cluster on this machine: up, down, status, compute restart", runLocal},
		{"timeline", "timelines by name: list, create, branch --at <lsn|time>", runTimeline},
		{"compute", "PostgreSQL on a timeline: start (read-write, or read-only at --lsn), stop, list", runCompute},
		{"basebackup", "a data directory at an LSN, from the pageserver", runBasebackup},
		{"status", "every daemon and timeline, as a table or JSON", runStatus},
	}
}

const usageHead = `strata: the operator's CLI for Strata (separated storage for PostgreSQL 15).

Usage:
  strata [--dir DIR] <command> [arguments]

Commands:
`

const usageTail = `
Global flags:
  --dir DIR   the cluster directory, holding strata.toml (default $STRATA_DIR, else ./.strata)

Run 'strata <command> --help' for a command's flags. Quick start:
  strata local up          # 3 safekeepers, a pageserver and a primary; prints how to connect
  strata status
  strata local down
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func usage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-11s %s\n", "version", "print the version")
	fmt.Fprint(w, usageTail)
}

// run parses the global flags, runs the command and returns the exit code:
// 0 on success, 2 for usage errors, 1 for every other failure.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("strata", flag.ContinueOnError)
	fs.SetOutput(errOut)
	// --help is asked for: usage on standard output, exit 0; a bad flag
	// gets it on standard error.
	fs.Usage = func() {}
	dir := os.Getenv("STRATA_DIR")
	if dir == "" {
		dir = ".strata"
	}
	fs.StringVar(&dir, "dir", dir, "cluster directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out)
			return 0
		}
		usage(errOut)
		return 2
	}
	if fs.NArg() == 0 {
		usage(errOut)
		return 2
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	// --dir is global but may come anywhere, as in `strata local up --dir D`.
	rest, err := takeDir(rest, &dir)
	if err != nil {
		fmt.Fprintf(errOut, "strata %s: %v\n", name, err)
		return 2
	}
	if name == "version" {
		fmt.Fprintln(out, "strata", version)
		return 0
	}
	if name == "help" {
		usage(out)
		return 0
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, env{Dir: dir, Out: out, Err: errOut}, rest)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(errOut, "strata %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(errOut, "strata: unknown command %q\n\n", name)
	usage(errOut)
	return 2
}

// takeDir removes every --dir D, --dir=D (one dash or two) before a "--"
// from args, setting *dir to the last one's value.
func takeDir(args []string, dir *string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "dir" {
			out = append(out, a)
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag needs an argument: %s", a)
			}
			i++
			value = args[i]
		}
		*dir = value
	}
	return out, nil
}

// errUsage marks an error whose message (with usage) was already printed.
var errUsage = errors.New("usage")
