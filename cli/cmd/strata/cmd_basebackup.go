package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"strata.dev/cli/basebackup"
	"strata.dev/cli/client"
	"strata.dev/libs/lsn"
)

func runBasebackup(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "basebackup", "-o DIR", `Writes a data directory at an LSN from the pageserver: vanilla PostgreSQL 15
starts on it with no recovery. DIR must be empty or absent; it is created 0700.
Progress goes to stderr (a bar on a terminal), the summary to stdout. Ctrl-C
stops the download and removes what was written.`)
	tl := fs.String("timeline", "main", "timeline name or id")
	at := fs.String("lsn", "", "the backup's LSN as X/Y (default: the last record)")
	dir := fs.String("o", "", "the data directory to write (empty or absent)")
	noSync := fs.Bool("no-sync", false, "do not fsync the written files")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usageError(fs, "-o DIR is required")
	}
	var l lsn.LSN
	if *at != "" {
		var err error
		if l, err = lsn.Parse(*at); err != nil || l == lsn.Invalid {
			return usageError(fs, "--lsn %q is not an LSN (want X/Y with hexadecimal halves, e.g. 0/16B3D08)", *at)
		}
	}
	c, err := client.Open(e.Dir, client.DefaultTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := basebackup.Fetch(ctx, c, basebackup.Options{
		Timeline: *tl, LSN: l, Dir: *dir, NoSync: *noSync, Progress: progressTo(e),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out, res)
	return nil
}

// progressTo reports to e.Err: a bar if it is a terminal, lines if not.
func progressTo(e env) *basebackup.Progress {
	f, ok := e.Err.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return basebackup.NewProgress(e.Err, false, 0)
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		width = 0
	}
	return basebackup.NewProgress(e.Err, true, width)
}
