package walreceiver

import (
	"errors"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

func TestStartPoint(t *testing.T) {
	const seg = lsn.DefaultSegmentSize
	for _, tc := range []struct {
		last, want lsn.LSN
	}{
		{lsn.MustParse("0/1000028"), lsn.MustParse("0/1000028")}, // a record end
		{lsn.MustParse("0/1000029"), lsn.MustParse("0/1000030")}, // aligned up to 8
		{lsn.MustParse("0/1000000"), lsn.MustParse("0/1000028")}, // segment start: long header
		{lsn.MustParse("0/1002000"), lsn.MustParse("0/1002018")}, // page start: short header
		{lsn.MustParse("0/1001FFC"), lsn.MustParse("0/1002018")}, // aligns onto a page start
		{lsn.MustParse("0/1FFFFF9"), lsn.MustParse("0/2000028")}, // aligns onto a segment start
	} {
		if got := startPoint(tc.last, seg); got != tc.want {
			t.Errorf("startPoint(%v) = %v, want %v", tc.last, got, tc.want)
		}
	}
	// Another segment size moves the long headers.
	if got := startPoint(lsn.MustParse("0/1000000"), 64<<20); got != lsn.MustParse("0/1000018") {
		t.Errorf("startPoint with 64 MiB segments = %v", got)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 15 * time.Second}
	want := []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 225 * time.Millisecond, 337500 * time.Microsecond}
	for i, w := range want {
		if got := b.delay(i + 1); got != w {
			t.Errorf("delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := b.delay(100); got != 15*time.Second {
		t.Errorf("delay(100) = %v, want the maximum", got)
	}

	now := time.Unix(1000, 0)
	var s backoffState
	if !s.ready(now) {
		t.Fatal("a fresh state is not ready")
	}
	if d := s.fail(now, b); d != 100*time.Millisecond || s.ready(now.Add(99*time.Millisecond)) || !s.ready(now.Add(d)) {
		t.Fatalf("after one failure: delay %v, retry at %v", d, s.retryAt)
	}
	if d := s.fail(now, b); d != 150*time.Millisecond {
		t.Fatalf("second failure: delay %v", d)
	}
	s.reset()
	if !s.ready(now) || s.failures != 0 {
		t.Fatal("reset did not clear the state")
	}
}

func TestPick(t *testing.T) {
	down := errors.New("connection refused")
	c := func(idx int, commit string) candidate { return candidate{idx: idx, commit: lsn.MustParse(commit)} }
	cf := func(idx int, commit, flush string) candidate {
		return candidate{idx: idx, commit: lsn.MustParse(commit), flush: lsn.MustParse(flush)}
	}
	for _, tc := range []struct {
		name   string
		cands  []candidate
		beyond lsn.LSN
		prefer int
		want   int // index into cands, -1 for none
	}{
		{"highest commit", []candidate{c(0, "0/100"), c(1, "0/300"), c(2, "0/200")}, 0, -1, 1},
		{"unreachable skipped", []candidate{c(0, "0/100"), {idx: 1, err: down}, c(2, "0/200")}, 0, -1, 2},
		{"commit 0 skipped", []candidate{c(0, "0/0"), c(1, "0/0")}, 0, -1, -1},
		{"none", nil, 0, -1, -1},
		{"tie goes to the configuration order", []candidate{c(0, "0/200"), c(1, "0/200")}, 0, -1, 0},
		{"tie goes to the previous safekeeper", []candidate{c(0, "0/200"), c(1, "0/200"), c(2, "0/100")}, 0, 1, 1},
		{"prefer does not beat more WAL", []candidate{c(0, "0/300"), c(1, "0/200")}, 0, 1, 0},
		{"beyond: nothing new", []candidate{c(0, "0/200"), c(1, "0/200")}, lsn.MustParse("0/200"), -1, -1},
		{"beyond: new WAL", []candidate{c(0, "0/200"), c(1, "0/208")}, lsn.MustParse("0/200"), -1, 1},
		{"indexes of a subset", []candidate{c(2, "0/100"), c(0, "0/180")}, 0, 2, 1},
		// Equal commit LSNs: the lowest lag (highest flush LSN) wins, even
		// over the previous safekeeper; the flush LSN never beats commit.
		{"tie on commit: lowest lag", []candidate{cf(0, "0/200", "0/200"), cf(1, "0/200", "0/280"), cf(2, "0/200", "0/240")}, 0, -1, 1},
		{"lowest lag beats the previous safekeeper", []candidate{cf(0, "0/200", "0/200"), cf(1, "0/200", "0/280")}, 0, 0, 1},
		{"tie on commit and flush: the previous one", []candidate{cf(0, "0/200", "0/280"), cf(1, "0/200", "0/280")}, 0, 1, 1},
		{"flush does not beat commit", []candidate{cf(0, "0/300", "0/300"), cf(1, "0/200", "0/900")}, 0, -1, 0},
		{"a failed candidate's flush is ignored", []candidate{cf(0, "0/200", "0/200"), {idx: 1, commit: lsn.MustParse("0/200"), flush: lsn.MustParse("0/900"), err: down}}, 0, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pick(tc.cands, tc.beyond, tc.prefer)
			if !ok {
				got = -1
			}
			if got != tc.want {
				t.Fatalf("pick = %d, want %d", got, tc.want)
			}
		})
	}
}

// The switching rules of SK §7.4 as a sequence of observations: each step
// is a check at a time with the connection's progress and the others'
// commit LSNs, and says whether (and why) the receiver must move.
func TestSwitchRules(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	other := func(idx int, commit lsn.LSN) candidate { return candidate{idx: idx, commit: commit} }
	type step struct {
		now    float64 // seconds after t0
		p      progress
		others []candidate
		want   string // "" = stay; else a substring of the reason
		target int
	}
	base := lsn.LSN(16 * mib)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"equal safekeepers: stay", []step{
			{1, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base), other(2, base)}, "", 0},
			{30, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base), other(2, base)}, "", 0},
		}},
		{"another ahead by max_lsn_wal_lag", []step{
			{1, progress{commit: base, pos: base - 10, lastWAL: at(1)}, []candidate{other(1, base+2*mib-1), other(2, base)}, "", 0},
			{2, progress{commit: base, pos: base - 10, lastWAL: at(2)}, []candidate{other(1, base+2*mib), other(2, base)}, "2097152 bytes ahead", 1},
		}},
		{"no WAL while another advanced", []step{
			// Safekeeper 2 has WAL we lack; the clock starts when that is seen.
			{5, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base), other(2, base+100)}, "", 0},
			{9.9, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base), other(2, base+100)}, "", 0},
			{15, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base), other(2, base+200)}, "no WAL for 10s", 2},
		}},
		{"WAL still arriving: stay", []step{
			{1, progress{commit: base + mib, pos: base, lastWAL: at(1)}, []candidate{other(1, base+100)}, "", 0},
			{8, progress{commit: base + mib, pos: base + 50, lastWAL: at(8)}, []candidate{other(1, base+100)}, "", 0},
			{15, progress{commit: base + mib, pos: base + 90, lastWAL: at(14)}, []candidate{other(1, base+100)}, "", 0},
			// Stalled from 14 on: 10 s later it moves.
			{24.5, progress{commit: base + mib, pos: base + 90, lastWAL: at(14)}, []candidate{other(1, base+100)}, "no WAL", 1},
		}},
		{"caught up with the others resets the clock", []step{
			{1, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{other(1, base+8)}, "", 0},
			{2, progress{commit: base + 8, pos: base + 8, lastWAL: at(0)}, []candidate{other(1, base+8)}, "", 0},
			// New WAL elsewhere again at 20: counted from 20, not 1.
			{20, progress{commit: base + 8, pos: base + 8, lastWAL: at(0)}, []candidate{other(1, base+16)}, "", 0},
			{29, progress{commit: base + 8, pos: base + 8, lastWAL: at(0)}, []candidate{other(1, base+16)}, "", 0},
			{30, progress{commit: base + 8, pos: base + 8, lastWAL: at(0)}, []candidate{other(1, base+16)}, "no WAL", 1},
		}},
		{"unreachable others never win", []step{
			{1, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{{idx: 1, err: errors.New("timeout")}}, "", 0},
			{60, progress{commit: base, pos: base, lastWAL: at(0)}, []candidate{{idx: 1, err: errors.New("timeout")}}, "", 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := switchRules{maxLag: 2 * mib, laggingTimeout: 10 * time.Second, addrs: []string{"sk0", "sk1", "sk2"}}
			for i, s := range tc.steps {
				d, ok := rules.check(at(s.now), s.p, s.others)
				switch {
				case s.want == "" && ok:
					t.Fatalf("step %d: switched to %d: %v", i, d.target, d)
				case s.want != "" && !ok:
					t.Fatalf("step %d: stayed, want a switch (%s)", i, s.want)
				case ok && (d.target != s.target || !strings.Contains(d.reason, s.want)):
					t.Fatalf("step %d: switch to %d (%s), want %d (%s)", i, d.target, d.reason, s.target, s.want)
				}
			}
		})
	}
}
