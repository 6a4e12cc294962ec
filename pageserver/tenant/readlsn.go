package tenant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/timeline"
)

// ErrLSNOutOfRange is wrapped when a timeline cannot serve an LSN: it is
// below the GC cutoff or the timeline's start, or ingest did not reach it
// in time.
var ErrLSNOutOfRange = errors.New("LSN out of range")

// ReadLSN checks that the timeline can serve reads at `at` (0: its last
// record), waiting up to wait for ingest to reach it, and returns the LSN
// and, when that is the last record, the start of that record (else
// lsn.Invalid: unknown). A branch serves from its branch point on (older
// keys come from its ancestor), a root timeline from its initial import.
func (t *Timeline) ReadLSN(ctx context.Context, at lsn.LSN, wait time.Duration) (read, prev lsn.LSN, err error) {
	last, prev := t.LastRecordLSN()
	if at == lsn.Invalid {
		return last, prev, nil
	}
	start := t.startLSN()
	switch cutoff := t.GCCutoff(); {
	case at < cutoff:
		return 0, 0, fmt.Errorf("%w: LSN %s is below the GC cutoff %s of timeline %s", ErrLSNOutOfRange, at, cutoff, t.ID())
	case at < start:
		return 0, 0, fmt.Errorf("%w: LSN %s is below the start %s of timeline %s", ErrLSNOutOfRange, at, start, t.ID())
	}
	if at > last {
		if err := t.WaitLSN(ctx, at, wait); err != nil {
			if errors.Is(err, timeline.ErrWaitLSNTimeout) {
				err = fmt.Errorf("%w: %w", ErrLSNOutOfRange, err)
			}
			return 0, 0, err
		}
		last, prev = t.LastRecordLSN()
	}
	if at != last {
		prev = lsn.Invalid
	}
	return at, prev, nil
}

// startLSN is the lowest LSN the timeline has data of: its branch point,
// or for a root timeline its initial import.
func (t *Timeline) startLSN() lsn.LSN {
	if anc, at := t.Ancestor(); anc != nil {
		return at
	}
	return t.InitDBLSN()
}
