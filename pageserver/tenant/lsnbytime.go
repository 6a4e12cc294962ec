// Finding the LSN of a point in time, for branches "as of" a timestamp.
//
// Every CLOG page carries the commit timestamp of the last transaction
// committed on it (value.ClogSetCommitted records hold it, and a page image
// keeps it in 8 bytes after the page, as Neon does: PS §3). Commit
// timestamps grow with the LSN (to within the few microseconds between
// taking a transaction's timestamp and inserting its record), so "some CLOG
// page at L has a commit after T" is false below the first commit after T
// and true from its end on: a binary search over 8-aligned LSNs finds that
// edge, as Neon's find_lsn_for_timestamp does. The pages' records are read,
// not replayed: no WAL redo is needed.

package tenant

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pgtime"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/value"
)

// TimestampKind says how a timestamp relates to the commits a timeline holds.
type TimestampKind int

const (
	// TimestampPresent: the LSN lies after the last commit at or before the
	// timestamp and before the end of the first commit after it.
	TimestampPresent TimestampKind = iota + 1
	// TimestampPast: every commit the timeline holds is after the
	// timestamp; the LSN is the lowest the timeline can serve.
	TimestampPast
	// TimestampFuture: no commit is after the timestamp; the LSN is the
	// last record.
	TimestampFuture
	// TimestampNoData: no commit with a timestamp; the LSN is the last record.
	TimestampNoData
)

func (k TimestampKind) String() string {
	switch k {
	case TimestampPresent:
		return "present"
	case TimestampPast:
		return "past"
	case TimestampFuture:
		return "future"
	case TimestampNoData:
		return "no data"
	}
	return fmt.Sprintf("TimestampKind(%d)", int(k))
}

// TimestampLSN is the answer of LSNForTimestamp.
type TimestampLSN struct {
	Kind TimestampKind
	LSN  lsn.LSN
}

// LSNForTimestamp finds the LSN at which the timeline has every transaction
// committed at or before ts and none committed after it. A branch or a
// basebackup there shows the database as of ts. The search covers the LSNs
// the timeline can serve: from its start (for a branch, its branch point;
// never below the GC cutoff) to its last record.
func (t *Timeline) LSNForTimestamp(ctx context.Context, ts time.Time) (TimestampLSN, error) {
	last, _ := t.LastRecordLSN()
	lo := max(t.startLSN(), t.GCCutoff())
	return lsnForTimestamp(ctx, t.Timeline, lo, last, pgtime.FromTime(ts))
}

// lsnForTimestamp searches [lo, hi] of r for the PostgreSQL timestamp ts.
func lsnForTimestamp(ctx context.Context, r datadir.Reader, lo, hi lsn.LSN, ts int64) (TimestampLSN, error) {
	var sawBefore, sawAfter bool
	// The search is over multiples of 8 in [low*8, high*8): find the first
	// at which some page has a commit after ts.
	low, high := (uint64(lo)+7)/8, uint64(hi)/8+1
	for low < high {
		if err := ctx.Err(); err != nil {
			return TimestampLSN{}, err
		}
		mid := low + (high-low)/2
		before, after, err := clogTimestamps(ctx, r, lsn.LSN(mid*8), ts)
		if err != nil {
			return TimestampLSN{}, err
		}
		sawBefore = sawBefore || before
		sawAfter = sawAfter || after
		if after {
			high = mid
		} else {
			low = mid + 1
		}
	}
	switch {
	case !sawBefore && !sawAfter:
		return TimestampLSN{Kind: TimestampNoData, LSN: hi}, nil
	case !sawBefore:
		return TimestampLSN{Kind: TimestampPast, LSN: lo}, nil
	case !sawAfter:
		return TimestampLSN{Kind: TimestampFuture, LSN: hi}, nil
	}
	// low*8 is the first multiple of 8 at or past the end E of the first
	// commit after ts; 8 bytes less it is not visible yet, and everything
	// that ended there is. It is a place a record may begin: E is at least
	// one byte past a page header, so low*8 - 8 is at or past its end.
	at := lsn.LSN(low*8 - 8)
	return TimestampLSN{Kind: TimestampPresent, LSN: max(at, lo)}, nil
}

// clogTimestamps reads the last commit timestamp of every CLOG page at at
// and reports whether any is at or before ts and whether any is after it.
func clogTimestamps(ctx context.Context, r datadir.Reader, at lsn.LSN, ts int64) (before, after bool, err error) {
	segs, err := datadir.SlruSegments(ctx, r, key.Clog, at)
	if err != nil {
		return false, false, fmt.Errorf("CLOG segments at %s: %w", at, err)
	}
	// Newest pages first: a commit after ts is usually on the last page.
	for i := len(segs) - 1; i >= 0; i-- {
		n, err := datadir.SlruSegmentSize(ctx, r, key.Clog, segs[i], at)
		if err != nil {
			return false, false, fmt.Errorf("CLOG segment %04X at %s: %w", segs[i], at, err)
		}
		for blk := int64(n) - 1; blk >= 0; blk-- {
			rec, err := r.Get(ctx, key.SlruBlock(key.Clog, segs[i], uint32(blk)), at)
			if err != nil {
				return false, false, fmt.Errorf("CLOG segment %04X page %d at %s: %w", segs[i], blk, at, err)
			}
			pageTS, ok := lastCommitTimestamp(rec)
			if !ok {
				continue
			}
			if pageTS > ts {
				return before, true, nil
			}
			before = true
		}
	}
	return before, false, nil
}

// lastCommitTimestamp is the timestamp of the last commit recorded on a
// CLOG page: from its newest ClogSetCommitted record, else from its image.
func lastCommitTimestamp(r value.Reconstruction) (int64, bool) {
	for i := len(r.Records) - 1; i >= 0; i-- {
		if rec := r.Records[i].Record; rec.Kind == value.ClogSetCommitted {
			return rec.Timestamp, true
		}
	}
	if r.HasImage && len(r.Image) == neonredo.ClogPageWithTimestamp {
		return int64(binary.BigEndian.Uint64(r.Image[neonredo.BlockSize:])), true
	}
	return 0, false
}
