package timeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"strata.dev/cli/client"
	"strata.dev/cli/cluster"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pspb "strata.dev/proto/pageserver/v1"
)

// Created is a new timeline, as create and branch print it.
type Created struct {
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Ancestor *Ancestor `json:"ancestor"`
	// StartLSN is where the timeline starts: the branch point, or initdb's
	// checkpoint record for a root timeline (where a compute on it starts).
	StartLSN lsn.LSN `json:"start_lsn"`
	// Notes are remarks on how --at was resolved.
	Notes []string `json:"notes,omitempty"`
}

// String is the line the CLI prints.
func (c *Created) String() string {
	if c.Ancestor == nil {
		return fmt.Sprintf("created timeline %s (id %s), starting at %s", c.Name, c.ID, c.StartLSN)
	}
	from := c.Ancestor.Name
	if from == "" {
		from = c.Ancestor.ID
	}
	return fmt.Sprintf("created timeline %s (id %s), branched from %s at %s", c.Name, c.ID, from, c.StartLSN)
}

// checkNewName fails unless name is valid and free in strata.toml.
func checkNewName(c *client.Cluster, name string) error {
	if err := cluster.ValidateTimelineName(name); err != nil {
		return err
	}
	if tl, ok := c.File.Timelines[name]; ok {
		return fmt.Errorf("%w: %q is timeline %s (names in use: %s)", cluster.ErrNameTaken, name, tl, strings.Join(c.File.TimelineNames(), ", "))
	}
	return nil
}

// Create bootstraps a new root timeline from initdb on the pageserver
// (creating the cluster's tenant there if needed) and records its name.
func Create(ctx context.Context, c *client.Cluster, name string) (*Created, error) {
	if err := checkNewName(c, name); err != nil {
		return nil, err
	}
	if err := ensureTenant(ctx, c); err != nil {
		return nil, err
	}
	cctx, cancel := c.Call(ctx)
	defer cancel()
	ti, err := c.Pageserver.API.CreateTimeline(cctx, &pspb.CreateTimelineRequest{
		TenantId: c.Tenant().String(),
		Source:   &pspb.CreateTimelineRequest_Bootstrap{Bootstrap: &pspb.Bootstrap{PgVersion: 15}},
	})
	if err != nil {
		err = c.Explain(c.Pageserver.Daemon, err)
		if client.Code(err) == codes.DeadlineExceeded {
			err = fmt.Errorf("%w; initdb may still finish: see `strata timeline list` (a timeline without a name)", err)
		}
		return nil, fmt.Errorf("create timeline %s: %w", name, err)
	}
	if err := record(ctx, c, name, ti.TimelineId); err != nil {
		return nil, err
	}
	// Where a compute on it starts: the end of initdb's checkpoint record.
	return &Created{Name: name, ID: ti.TimelineId, StartLSN: lsn.LSN(ti.LastRecordLsn)}, nil
}

// ensureTenant creates the cluster's tenant on the pageserver unless it is
// there already.
func ensureTenant(ctx context.Context, c *client.Cluster) error {
	cctx, cancel := c.Call(ctx)
	defer cancel()
	_, err := c.Pageserver.API.CreateTenant(cctx, &pspb.CreateTenantRequest{TenantId: c.Tenant().String()})
	if err = c.Explain(c.Pageserver.Daemon, err); err != nil && client.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create tenant %s: %w", c.Tenant(), err)
	}
	return nil
}

// record adds name for timeline tl to strata.toml (cluster.Update: names
// recorded meanwhile by another strata are kept).
func record(ctx context.Context, c *client.Cluster, name, tl string) error {
	t, err := id.Parse(tl)
	if err != nil {
		return fmt.Errorf("the pageserver answered with timeline id %q: %w", tl, err)
	}
	err = cluster.Update(ctx, c.Dir, func(f *cluster.File) error {
		if err := f.AddTimeline(name, t); err != nil {
			return err
		}
		c.File = f
		return nil
	})
	if err != nil {
		return fmt.Errorf("timeline %s was created but its name %q was not recorded: %w (add %s = %q under [timelines] in %s by hand)",
			tl, name, err, name, tl, cluster.FileName)
	}
	return nil
}

// BranchOptions says what to branch.
type BranchOptions struct {
	Name string
	// From is the ancestor's name or id.
	From string
	At   At
}

// Branch creates a timeline off opts.From at opts.At and records its
// name. A time is resolved with LsnForTimestamp: the branch then holds every
// transaction committed at or before it and none after.
func Branch(ctx context.Context, c *client.Cluster, opts BranchOptions) (*Created, error) {
	if err := checkNewName(c, opts.Name); err != nil {
		return nil, err
	}
	from, err := c.File.Timeline(opts.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	fromName := c.TimelineName(from.String())
	var notes []string
	at := lsn.Invalid
	switch opts.At.Kind {
	case AtLSN:
		at = opts.At.LSN
		if at == lsn.Invalid {
			return nil, errors.New("--at 0/0 is not an LSN a timeline holds (omit --at for the last record)")
		}
	case AtTime:
		var note string
		if at, note, err = lsnForTime(ctx, c, from, fromName, opts.At.Time); err != nil {
			return nil, err
		}
		if note != "" {
			notes = append(notes, note)
		}
	}

	cctx, cancel := c.Call(ctx)
	defer cancel()
	ti, err := c.Pageserver.API.CreateTimeline(cctx, &pspb.CreateTimelineRequest{
		TenantId: c.Tenant().String(),
		Source: &pspb.CreateTimelineRequest_Branch{Branch: &pspb.Branch{
			AncestorTimelineId: from.String(), AncestorLsn: uint64(at),
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("branch %s off %s at %s: %w", opts.Name, fromName, atText(at), explainBranch(ctx, c, from, fromName, at, c.Explain(c.Pageserver.Daemon, err)))
	}
	if err := record(ctx, c, opts.Name, ti.TimelineId); err != nil {
		return nil, err
	}
	return &Created{
		Name: opts.Name, ID: ti.TimelineId,
		Ancestor: &Ancestor{Name: c.NameOf(from.String()), ID: from.String(), LSN: lsn.LSN(ti.AncestorLsn)},
		StartLSN: lsn.LSN(ti.AncestorLsn), Notes: notes,
	}, nil
}

func atText(at lsn.LSN) string {
	if at == lsn.Invalid {
		return "its last record"
	}
	return at.String()
}

// lsnForTime resolves a time on timeline tl to an LSN (see
// LsnForTimestampResponse), with a note when the time is past the last
// commit.
func lsnForTime(ctx context.Context, c *client.Cluster, tl id.TimelineID, name string, t time.Time) (lsn.LSN, string, error) {
	cctx, cancel := c.Call(ctx)
	defer cancel()
	resp, err := c.Pageserver.API.LsnForTimestamp(cctx, &pspb.LsnForTimestampRequest{
		TenantId: c.Tenant().String(), TimelineId: tl.String(), TimestampUnixUs: t.UnixMicro(),
	})
	ts := t.Format(time.RFC3339Nano)
	if err != nil {
		return 0, "", fmt.Errorf("find the LSN of %s on %s: %w", ts, name, c.Explain(c.Pageserver.Daemon, err))
	}
	switch resp.Kind {
	case pspb.LsnForTimestampResponse_PRESENT:
		return lsn.LSN(resp.Lsn), "", nil
	case pspb.LsnForTimestampResponse_FUTURE:
		return lsn.LSN(resp.Lsn), fmt.Sprintf("no commit on %s is after %s: branching at its last record %s", name, ts, lsn.LSN(resp.Lsn)), nil
	case pspb.LsnForTimestampResponse_PAST:
		return 0, "", fmt.Errorf("%s is before the first commit timeline %s holds (it starts at %s): pick a later time", ts, name, lsn.LSN(resp.Lsn))
	case pspb.LsnForTimestampResponse_NO_DATA:
		return 0, "", fmt.Errorf("timeline %s holds no commit with a timestamp, so %s cannot be placed: branch at an LSN instead", name, ts)
	}
	return 0, "", fmt.Errorf("find the LSN of %s on %s: the pageserver answered with kind %v", ts, name, resp.Kind)
}

// explainBranch adds what the operator needs to a failed branch: the
// ancestor's range for an LSN it cannot serve, the likely cause of a
// timeout, the known names for an unknown timeline.
func explainBranch(ctx context.Context, c *client.Cluster, from id.TimelineID, name string, at lsn.LSN, err error) error {
	switch client.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%w (is %s in strata.toml the right id? timelines: `strata timeline list`)", err, name)
	case codes.OutOfRange, codes.DeadlineExceeded:
		ctx, cancel := c.Call(ctx)
		defer cancel()
		ti, gerr := c.Pageserver.API.GetTimeline(ctx, &pspb.GetTimelineRequest{TenantId: c.Tenant().String(), TimelineId: from.String()})
		if gerr != nil {
			return err
		}
		last, low := lsn.LSN(ti.LastRecordLsn), lsn.LSN(max(ti.GcCutoffLsn, ti.AncestorLsn, ti.InitdbLsn))
		switch {
		case at != lsn.Invalid && at > last:
			return fmt.Errorf("%w: %s is beyond the last record of %s (%s)", err, at, name, last)
		case at != lsn.Invalid && at < low:
			return fmt.Errorf("%w: %s is below what %s can serve (from %s to %s; GC cutoff %s)", err, at, name, low, last, lsn.LSN(ti.GcCutoffLsn))
		}
		return fmt.Errorf("%w (%s serves %s to %s)", err, name, low, last)
	}
	return err
}
