package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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
func (e *Env) startLSN(ctx context.Context, tl id.TimelineID) (lsn.LSN, error) {
	withWAL, answered := 0, 0
	var errs []error
	for i, sk := range e.File.Safekeepers {
		pos, found, err := safekeeperPosition(ctx, sk.ListenGRPC, e.File.TenantID, tl.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("safekeeper %d (%s): %w", i+1, sk.ListenGRPC, err))
			continue
		}
		answered++
		if found && pos.flush > 0 {
			withWAL++
		}
	}
	if withWAL > 0 {
		return e.syncSafekeepers(ctx, tl)
	}
	if quorum := len(e.File.Safekeepers)/2 + 1; answered < quorum {
		return 0, fmt.Errorf("only %d of %d safekeepers answer: %w", answered, len(e.File.Safekeepers), errors.Join(errs...))
	}
	info, err := e.pageserverTimeline(ctx, tl)
	if err != nil {
		return 0, err
	}
	return lsn.LSN(info.LastRecordLsn), nil
}

// committedEnd is the highest commit LSN any safekeeper reports for tl
// (0 if none answers): WAL the pageserver may not have ingested yet, but
// will.
func (e *Env) committedEnd(ctx context.Context, tl id.TimelineID) lsn.LSN {
	var end lsn.LSN
	for _, sk := range e.File.Safekeepers {
		if pos, found, err := safekeeperPosition(ctx, sk.ListenGRPC, e.File.TenantID, tl.String()); err == nil && found {
			end = max(end, pos.commit)
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

// position is a safekeeper's flush and commit LSNs of a timeline.
type position struct{ flush, commit lsn.LSN }

// safekeeperPosition asks a safekeeper over gRPC for a timeline's LSNs;
// found is false if it does not have the timeline.
func safekeeperPosition(ctx context.Context, addr, tenant, timeline string) (pos position, found bool, err error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return position{}, false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := skpb.NewSafekeeperClient(conn).GetTimeline(ctx, &skpb.GetTimelineRequest{TenantId: tenant, TimelineId: timeline})
	if status.Code(err) == codes.NotFound {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, err
	}
	return position{flush: lsn.LSN(info.FlushLsn), commit: lsn.LSN(info.CommitLsn)}, true, nil
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
func (e *Env) pageserverTimeline(ctx context.Context, tl id.TimelineID) (*pspb.TimelineInfo, error) {
	conn, err := grpc.NewClient(e.File.Pageserver.ListenGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("pageserver %s: %w", e.File.Pageserver.ListenGRPC, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := pspb.NewPageserverClient(conn).GetTimeline(ctx, &pspb.GetTimelineRequest{TenantId: e.File.TenantID, TimelineId: tl.String()})
	if err != nil {
		return nil, fmt.Errorf("pageserver %s: timeline %s: %w", e.File.Pageserver.ListenGRPC, tl, err)
	}
	return info, nil
}

// fetchDataDir replaces datadir with a basebackup of timeline tl at at,
// fetched over the pageserver's libpq port (it waits for the pageserver
// to have ingested at). The old directory goes only once the new one is
// complete.
func (e *Env) fetchDataDir(ctx context.Context, tl id.TimelineID, at lsn.LSN, datadir string) error {
	host, port, err := hostPort(e.File.Pageserver.ListenPG)
	if err != nil {
		return fmt.Errorf("pageserver: %w", err)
	}
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
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=strata database=postgres sslmode=disable connect_timeout=10", host, port))
	if err != nil {
		return fmt.Errorf("pageserver %s: %w", e.File.Pageserver.ListenPG, err)
	}
	defer conn.Close(context.Background())
	pr, pw := io.Pipe()
	cmd := fmt.Sprintf("basebackup %s %s %s", e.File.TenantID, tl, at)
	copyErr := make(chan error, 1)
	go func() {
		_, err := conn.CopyTo(ctx, pw, cmd)
		pw.CloseWithError(err)
		copyErr <- err
	}()
	err = extractTar(pr, fresh, e.User)
	pr.CloseWithError(errors.New("extraction stopped"))
	if cerr := <-copyErr; cerr != nil {
		err = fmt.Errorf("pageserver %s: %s: %w", e.File.Pageserver.ListenPG, cmd, cerr)
	}
	if err != nil {
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
