package main

import (
	"context"
	"fmt"
	"strings"

	"strata.dev/cli/client"
	"strata.dev/cli/status"
)

func runStatus(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "status", "", `Every daemon (healthy, or down and why; version, uptime) and every timeline
(pageserver last record and disk-consistent LSNs, each safekeeper's commit and
flush LSNs, the walreceiver's source and lag). Exit code 1 if a daemon is not
healthy; everything that answered is still printed.

`+status.JSONHelp)
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
	r := status.Collect(ctx, c)
	if err := writeOutput(e.Out, *output, r, r.WriteTable); err != nil {
		return err
	}
	if bad := r.Unhealthy(); len(bad) > 0 {
		var names []string
		for _, d := range bad {
			names = append(names, fmt.Sprintf("%s %d", d.Kind, d.ID))
		}
		return fmt.Errorf("%d of %d daemons not healthy: %s", len(bad), len(r.Daemons), strings.Join(names, ", "))
	}
	return nil
}
