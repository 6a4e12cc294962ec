package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/cli/basebackup"
	"strata.dev/cli/client"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pguser"
	pspb "strata.dev/proto/pageserver/v1"
	skpb "strata.dev/proto/safekeeper/v1"
)

// startLSN is where a new read-write compute on timeline tl starts: the
// committed end of WAL on the safekeepers (walproposer --sync-safekeepers
// finishes whatever term a previous primary left), or, when they hold no
// WAL of the timeline yet (a new timeline or branch), the pageserver's
// last record: its start.
func (e *Env) startLSN(ctx context.Context, cl *client.Cluster, tl id.TimelineID) (lsn.LSN, error) {
	withWAL, answered := 0, 0
	var errs []error
	for _, sk := range cl.Safekeepers {
		info, err := safekeeperTimeline(ctx, cl, sk, tl)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		answered++
		if info != nil && info.FlushLsn > 0 {
			withWAL++
		}
	}
	if withWAL > 0 {
		return e.syncSafekeepers(ctx, tl)
	}
	if quorum := len(cl.Safekeepers)/2 + 1; answered < quorum {
		return 0, fmt.Errorf("only %d of %d safekeepers answer: %w", answered, len(cl.Safekeepers), errors.Join(errs...))
	}
	info, err := pageserverTimeline(ctx, cl, tl)
	if err != nil {
		return 0, err
	}
	return lsn.LSN(info.LastRecordLsn), nil
}

// committedEnd is the highest commit LSN any safekeeper reports for tl
// (0 if none answers): WAL the pageserver may not have ingested yet, but
// will.
func committedEnd(ctx context.Context, cl *client.Cluster, tl id.TimelineID) lsn.LSN {
	var end lsn.LSN
	for _, sk := range cl.Safekeepers {
		if info, err := safekeeperTimeline(ctx, cl, sk, tl); err == nil && info != nil {
			end = max(end, lsn.LSN(info.CommitLsn))
		}
	}
	return end
}

// checkStaticLSN checks that the pageserver can serve a static compute's
// basebackup at at (committed is the safekeepers' commit LSN), so that a
// typo fails at once instead of waiting out the pageserver's wait-LSN
// timeout or failing deep in the basebackup.
func checkStaticLSN(name string, info *pspb.TimelineInfo, committed, at lsn.LSN) error {
	last := max(lsn.LSN(info.LastRecordLsn), lsn.LSN(info.SafekeeperCommitLsn), committed)
	switch {
	case at > last:
		return fmt.Errorf("--lsn %s is past the end of timeline %s (%s)", at, name, last)
	case info.AncestorTimelineId != "" && at < lsn.LSN(info.AncestorLsn):
		return fmt.Errorf("--lsn %s is before timeline %s begins: it branches off at %s", at, name, lsn.LSN(info.AncestorLsn))
	case at < lsn.LSN(info.InitdbLsn):
		return fmt.Errorf("--lsn %s is before timeline %s begins (%s)", at, name, lsn.LSN(info.InitdbLsn))
	case at < lsn.LSN(info.GcCutoffLsn):
		return fmt.Errorf("--lsn %s is below timeline %s's GC cutoff (%s): older versions are gone", at, name, lsn.LSN(info.GcCutoffLsn))
	}
	return nil
}

// safekeeperTimeline asks sk for timeline tl: nil (and no error) if sk
// does not have it.
func safekeeperTimeline(ctx context.Context, cl *client.Cluster, sk client.Safekeeper, tl id.TimelineID) (*skpb.TimelineInfo, error) {
	cctx, cancel := cl.Call(ctx)
	defer cancel()
	info, err := sk.API.GetTimeline(cctx, &skpb.GetTimelineRequest{TenantId: cl.Tenant().String(), TimelineId: tl.String()})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, cl.Explain(sk.Daemon, err)
	}
	return info, nil
}

// syncSafekeepers runs walproposer --sync-safekeepers and returns the
// committed end of WAL it prints.
func (e *Env) syncSafekeepers(ctx context.Context, tl id.TimelineID) (lsn.LSN, error) {
	e.Say("syncing safekeepers (walproposer --sync-safekeepers) on timeline %s", tl)
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "walproposer"), "--sync-safekeepers",
		"--safekeepers", strings.Join(e.File.SafekeeperPGAddrs(), ","),
		"--tenant-id", e.File.TenantID, "--timeline-id", tl.String(),
		"--listen-http", "", "--sync-timeout", "60s")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("walproposer --sync-safekeepers: %w: %s", err, trim(errOut.Bytes()))
	}
	l, err := lsn.Parse(strings.TrimSpace(out.String()))
	if err != nil {
		return 0, fmt.Errorf("walproposer --sync-safekeepers printed %q: %w", out.String(), err)
	}
	if l == 0 {
		return 0, errors.New("walproposer --sync-safekeepers found no WAL, though a safekeeper reported some")
	}
	return l, nil
}

// pageserverTimeline asks the pageserver's management API for a timeline.
func pageserverTimeline(ctx context.Context, cl *client.Cluster, tl id.TimelineID) (*pspb.TimelineInfo, error) {
	cctx, cancel := cl.Call(ctx)
	defer cancel()
	info, err := cl.Pageserver.API.GetTimeline(cctx, &pspb.GetTimelineRequest{TenantId: cl.Tenant().String(), TimelineId: tl.String()})
	if err != nil {
		return nil, fmt.Errorf("timeline %s: %w", tl, cl.Explain(cl.Pageserver.Daemon, err))
	}
	return info, nil
}

// fetchDataDir replaces datadir with a basebackup of timeline tl at at
// (the pageserver waits until it has ingested at), owned by e.User. The
// old directory goes only once the new one is complete.
func (e *Env) fetchDataDir(ctx context.Context, cl *client.Cluster, tl id.TimelineID, at lsn.LSN, datadir string) error {
	parent := filepath.Dir(datadir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	if err := e.User.Chown(parent); err != nil {
		return err
	}
	fresh := datadir + ".new"
	if err := os.RemoveAll(fresh); err != nil {
		return fmt.Errorf("remove %s: %w", fresh, err)
	}
	// No fsync: a compute's data directory is disposable (a fresh
	// basebackup at every start).
	if _, err := basebackup.Fetch(ctx, cl, basebackup.Options{Timeline: tl.String(), LSN: at, Dir: fresh, NoSync: true}); err != nil {
		return err
	}
	if err := e.User.ChownTree(fresh); err != nil {
		os.RemoveAll(fresh)
		return err
	}
	if err := os.RemoveAll(datadir); err != nil {
		return fmt.Errorf("remove the old data directory: %w", err)
	}
	if err := os.Rename(fresh, datadir); err != nil {
		return fmt.Errorf("rename %s: %w", fresh, err)
	}
	return nil
}

// execAs is a command run as u.
func execAs(u pguser.User, path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	u.Apply(cmd)
	return cmd
}

func trim(b []byte) string { return strings.TrimSpace(string(b)) }
