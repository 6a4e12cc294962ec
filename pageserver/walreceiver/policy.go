// The receiver's decisions, as pure functions of what it has observed:
// where a stream starts, which safekeeper to stream from, when to leave it
// for another (SK §7.4), and how long to wait after failures. Nothing here
// touches the network or the clock.

package walreceiver

import (
	"fmt"
	"math"
	"strings"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// startPoint is where streaming starts for a sink whose last record ended
// at last (PS §2.1): aligned up to 8, where records start, and past the
// page header if that is on a page boundary. Skipping the header matters: a
// timeline branched at a page boundary never had those header bytes
// streamed, so a safekeeper may not have them.
func startPoint(last lsn.LSN, segSize uint64) lsn.LSN {
	return wal.SkipPageHeader(last.Align8(), segSize)
}

// backoff is the delay schedule after consecutive failures: min, then ×1.5
// each time, at most max (SK §7.4).
type backoff struct{ min, max time.Duration }

// delay is the wait after the n-th consecutive failure (n ≥ 1).
func (b backoff) delay(n int) time.Duration {
	d := float64(b.min) * math.Pow(1.5, float64(max(n, 1)-1))
	if d >= float64(b.max) {
		return b.max
	}
	return time.Duration(d)
}

// backoffState counts consecutive failures of one thing (a safekeeper, the
// sink) and when it may be tried again.
type backoffState struct {
	failures int
	retryAt  time.Time
}

// fail records a failure at now and returns the delay before the next try.
func (s *backoffState) fail(now time.Time, b backoff) time.Duration {
	s.failures++
	d := b.delay(s.failures)
	s.retryAt = now.Add(d)
	return d
}

func (s *backoffState) reset() { *s = backoffState{} }

func (s *backoffState) ready(now time.Time) bool { return !now.Before(s.retryAt) }

// candidate is what is known of one safekeeper: its answer to
// TIMELINE_STATUS, or the last TimelineInfo of its WatchTimeline stream.
type candidate struct {
	idx    int     // index in Config.Safekeepers
	commit lsn.LSN // its commit LSN, when err is nil
	flush  lsn.LSN // its flush LSN (end of the WAL it has), when err is nil
	err    error   // unreachable, failed, has no such timeline, or not heard from yet
}

// usable reports whether c can be streamed from: it answered and has
// committed WAL (SK §7.4: commit_lsn ≠ 0).
func (c candidate) usable() bool { return c.err == nil && c.commit != lsn.Invalid }

// pick returns the position in cands of the usable candidate to stream
// from: the highest commit LSN above beyond, then the lowest lag (the
// highest flush LSN: it is furthest along in what it will commit next);
// remaining ties go to prefer (the safekeeper streamed from last, so equal
// safekeepers do not make it move), then to the order of cands.
func pick(cands []candidate, beyond lsn.LSN, prefer int) (int, bool) {
	best := -1
	for i, c := range cands {
		if !c.usable() || c.commit <= beyond {
			continue
		}
		if best < 0 || better(c, cands[best], prefer) {
			best = i
		}
	}
	return best, best >= 0
}

// better reports whether a ranks above b (see pick).
func better(a, b candidate, prefer int) bool {
	switch {
	case a.commit != b.commit:
		return a.commit > b.commit
	case a.flush != b.flush:
		return a.flush > b.flush
	}
	return a.idx == prefer
}

// progress is what the monitor knows about the connection it watches.
type progress struct {
	commit  lsn.LSN   // the connected safekeeper's commit LSN (wal_end)
	pos     lsn.LSN   // the next byte expected from it
	lastWAL time.Time // when it last delivered WAL; the connection's start before that
}

// switchDecision is a switching rule's verdict: stream from another
// safekeeper. It is also the cause the connection is cancelled with.
type switchDecision struct {
	target int // index of the safekeeper to move to
	commit lsn.LSN
	reason string
}

func (d *switchDecision) Error() string { return d.reason }

// switchRules applies the rules of SK §7.4 that compare the connected
// safekeeper with the others; the silence rule is the connection's read
// deadline. It keeps when it first saw WAL elsewhere that the connection
// had not delivered.
type switchRules struct {
	maxLag         uint64
	laggingTimeout time.Duration
	addrs          []string

	newWALSince time.Time // zero while no other safekeeper is ahead of pos
}

// check evaluates the rules at now against the other safekeepers' answers.
func (s *switchRules) check(now time.Time, p progress, others []candidate) (*switchDecision, bool) {
	i, ok := pick(others, 0, -1)
	if !ok {
		s.newWALSince = time.Time{}
		return nil, false
	}
	best := others[i]
	if best.commit > p.commit && best.commit.Sub(p.commit) >= s.maxLag {
		return &switchDecision{target: best.idx, commit: best.commit, reason: fmt.Sprintf(
			"safekeeper %s is %d bytes ahead (commit %v, connected one %v), max_lsn_wal_lag is %d",
			s.addrs[best.idx], best.commit.Sub(p.commit), best.commit, p.commit, s.maxLag)}, true
	}
	if best.commit <= p.pos {
		s.newWALSince = time.Time{}
		return nil, false
	}
	if s.newWALSince.IsZero() {
		s.newWALSince = now
	}
	since := s.newWALSince
	if p.lastWAL.After(since) {
		since = p.lastWAL
	}
	if now.Sub(since) >= s.laggingTimeout {
		return &switchDecision{target: best.idx, commit: best.commit, reason: fmt.Sprintf(
			"no WAL for %v while safekeeper %s has it up to %v (received up to %v), lagging_wal_timeout is %v",
			now.Sub(since).Round(time.Millisecond), s.addrs[best.idx], best.commit, p.pos, s.laggingTimeout)}, true
	}
	return nil, false
}

// describe says why no safekeeper could be picked, for the log.
func describe(sks []skState, cands []candidate, now time.Time) string {
	polled := make(map[int]candidate, len(cands))
	for _, c := range cands {
		polled[c.idx] = c
	}
	var b strings.Builder
	for i, s := range sks {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s.addr)
		b.WriteString(": ")
		c, ok := polled[i]
		switch {
		case !ok:
			fmt.Fprintf(&b, "retrying in %v", s.backoff.retryAt.Sub(now).Round(time.Millisecond))
		case c.err != nil:
			b.WriteString(c.err.Error())
		default:
			fmt.Fprintf(&b, "commit LSN %v", c.commit)
		}
	}
	return b.String()
}
