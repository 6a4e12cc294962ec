// Package basebackup is `strata basebackup`: the pageserver's Basebackup
// stream (a tar that vanilla PostgreSQL 15 starts from with no recovery)
// unpacked into a data directory, with progress on stderr.
//
// The directory must be empty or absent; it is created 0700 (PostgreSQL
// refuses a data directory others can read) and files get the tar's modes.
// If anything fails, or Ctrl-C cancels the stream, what was written is
// removed: a half-written data directory must never be started.
package basebackup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"strata.dev/cli/client"
	"strata.dev/libs/lsn"
	"strata.dev/libs/untar"
	pspb "strata.dev/proto/pageserver/v1"
)

// Options say what to fetch and where.
type Options struct {
	// Timeline is a name in strata.toml or an id.
	Timeline string
	// LSN is the backup's LSN; lsn.Invalid: the last record.
	LSN lsn.LSN
	// Dir is the data directory to write: empty or absent.
	Dir string
	// NoSync skips fsync of the written files (tests, scratch copies).
	NoSync bool
	// Progress, if set, reports the download.
	Progress *Progress
}

// Result describes a finished basebackup.
type Result struct {
	Timeline string
	Dir      string
	LSN      lsn.LSN
	// Bytes is the size of the tar stream.
	Bytes   int64
	Files   int
	Elapsed time.Duration
}

// String is the summary line the CLI prints.
func (r *Result) String() string {
	return fmt.Sprintf("basebackup of %s at %s into %s: %s, %d files in %v",
		r.Timeline, r.LSN, r.Dir, humanize.IBytes(uint64(r.Bytes)), r.Files, r.Elapsed.Round(time.Millisecond))
}

// Fetch streams a basebackup of opts.Timeline at opts.LSN into opts.Dir.
// The stream has no deadline; ctx ends it.
func Fetch(ctx context.Context, c *client.Cluster, opts Options) (*Result, error) {
	tl, err := c.File.Timeline(opts.Timeline)
	if err != nil {
		return nil, err
	}
	name := c.TimelineName(tl.String())
	if opts.Dir == "" {
		return nil, errors.New("no output directory (-o DIR)")
	}
	created, err := prepareDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	res, err := fetch(ctx, c, opts, tl.String())
	if err != nil {
		if rerr := removePartial(opts.Dir, created); rerr != nil {
			return nil, fmt.Errorf("basebackup of %s: %w (and removing the partial %s failed: %v)", name, err, opts.Dir, rerr)
		}
		what := "removed " + opts.Dir
		if !created {
			what = "emptied " + opts.Dir + " again"
		}
		return nil, fmt.Errorf("basebackup of %s: %w (%s)", name, err, what)
	}
	res.Timeline, res.Dir, res.Elapsed = name, opts.Dir, time.Since(started)
	return res, nil
}

func fetch(ctx context.Context, c *client.Cluster, opts Options, tl string) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if extraction fails
	ps := c.Pageserver.Daemon
	stream, err := c.Pageserver.API.Basebackup(ctx, &pspb.BasebackupRequest{
		TenantId: c.Tenant().String(), TimelineId: tl, Lsn: uint64(opts.LSN),
	})
	if err != nil {
		return nil, c.Explain(ps, err)
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return nil, fmt.Errorf("%s ended the stream before sending anything", ps)
	}
	if err != nil {
		return nil, explainStart(c.Explain(ps, err), opts.LSN)
	}
	if first.Lsn == 0 {
		return nil, fmt.Errorf("%s did not say the backup's LSN in its first message", ps)
	}
	if opts.Progress != nil {
		opts.Progress.Start(int64(first.EstimatedSize))
	}
	r := &streamReader{stream: stream, buf: first.Data, n: int64(len(first.Data)), progress: opts.Progress}
	st, err := untar.Extract(ctx, r, opts.Dir, !opts.NoSync)
	if err == nil {
		err = r.drain()
	}
	if err != nil {
		if opts.Progress != nil {
			opts.Progress.Abort()
		}
		if r.err != nil { // the stream's failure explains the tar's
			err = r.err
		}
		return nil, c.Explain(ps, err)
	}
	if opts.Progress != nil {
		opts.Progress.Finish(r.n)
	}
	return &Result{LSN: lsn.LSN(first.Lsn), Bytes: r.n, Files: st.Files}, nil
}

// explainStart adds the likely cause to a basebackup refused before it
// began.
func explainStart(err error, at lsn.LSN) error {
	if client.Code(err) == codes.OutOfRange && at != lsn.Invalid {
		return fmt.Errorf("%w (`strata timeline list` shows how far each timeline reaches)", err)
	}
	return err
}

// streamReader reads the chunks of a Basebackup stream as one byte stream.
type streamReader struct {
	stream   grpc.ServerStreamingClient[pspb.BasebackupChunk]
	buf      []byte
	n        int64 // bytes received
	err      error // the stream's error, other than io.EOF
	progress *Progress
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		chunk, err := r.stream.Recv()
		if err != nil {
			if err != io.EOF {
				r.err = err
			}
			return 0, err
		}
		r.buf = chunk.Data
		r.n += int64(len(chunk.Data))
		if r.progress != nil {
			r.progress.Update(r.n)
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// drain reads what follows the tar's end (padding) up to the end of the
// stream, so that a failure after the last entry is not missed.
func (r *streamReader) drain() error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// prepareDir makes dir ready: absent (created 0700, with its parents) or
// an empty directory (set to 0700). It reports whether it created dir.
func prepareDir(dir string) (created bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return false, fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return false, fmt.Errorf("create %s: %w", dir, err)
		}
		return true, os.Chmod(dir, 0o700) // whatever the umask
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("%s is not empty (%d entries, e.g. %s): give an empty or new directory", dir, len(entries), entries[0].Name())
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, err
	}
	return false, nil
}

// removePartial removes what a failed basebackup wrote: dir itself if it
// created it, else dir's content.
func removePartial(dir string, created bool) error {
	if created {
		return os.RemoveAll(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
