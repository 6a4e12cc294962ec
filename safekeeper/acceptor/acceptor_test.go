package acceptor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/safekeeper/control"
)

// memWAL is an in-memory WAL store in which every write ends on a record
// boundary. Its durable part survives a "reboot" (reopen).
type memWAL struct {
	data    []byte // bytes from base on; index = lsn - base
	base    lsn.LSN
	write   lsn.LSN
	flush   lsn.LSN
	pending bool // truncation required before writes (after a reboot)
	inited  lsn.LSN
	failOn  string
}

func (w *memWAL) WriteLSN() lsn.LSN       { return w.write }
func (w *memWAL) FlushRecordLSN() lsn.LSN { return w.flush }

func (w *memWAL) Write(start lsn.LSN, b []byte) error {
	if w.pending {
		return errors.New("truncation pending")
	}
	if w.write != 0 && start != w.write {
		return errors.New("non-sequential write: creates gap or rewrites WAL written before")
	}
	if w.write == 0 {
		w.base, w.write = start, start
	}
	w.data = append(w.data[:w.write-w.base], b...)
	w.write += lsn.LSN(len(b))
	return nil
}

func (w *memWAL) Flush() error {
	if w.failOn == "flush" {
		return errors.New("fsync: input/output error")
	}
	w.flush = w.write
	return nil
}

func (w *memWAL) Truncate(end lsn.LSN) error {
	if w.write != 0 && end > w.write {
		return errors.New("truncate beyond the written end")
	}
	if w.write == 0 {
		w.base = end
	}
	w.data = w.data[:end-w.base]
	w.write, w.flush, w.pending = end, end, false
	return nil
}

func (w *memWAL) InitializeFirstSegment(start lsn.LSN) error { w.inited = start; return nil }

// reboot drops what was not flushed.
func (w *memWAL) reboot() *memWAL {
	return &memWAL{data: append([]byte(nil), w.data[:w.flush-w.base]...), base: w.base, write: w.flush, flush: w.flush, pending: w.flush != 0}
}

type memControl struct {
	persisted []*control.State
	fail      bool
}

func (c *memControl) Persist(s *control.State) error {
	if c.fail {
		return errors.New("disk full")
	}
	c.persisted = append(c.persisted, s.Clone())
	return nil
}

func (c *memControl) last() *control.State { return c.persisted[len(c.persisted)-1] }

var (
	tenant   = id.MustParse("9e4c8f36063c6c6e93bc20d65a820f3d")
	timeline = id.MustParse("0123456789abcdef0123456789abcdef")
)

func newState() *control.State {
	return &control.State{
		Tenant: tenant, Timeline: timeline,
		Server:     control.ServerInfo{PgVersion: 150004, SystemID: 42, WalSegSize: 16 << 20},
		CreationTS: time.Unix(0, 0).UTC(),
	}
}

type fixture struct {
	t    *testing.T
	a    *Acceptor
	wal  *memWAL
	ctrl *memControl
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, wal: &memWAL{}, ctrl: &memControl{}}
	f.a = New(1, newState(), f.wal, f.ctrl)
	return f
}

// reboot rebuilds the acceptor from what is durable, as a restart would.
func (f *fixture) reboot() {
	state := newState()
	if len(f.ctrl.persisted) > 0 {
		state = f.ctrl.last()
	}
	f.wal = f.wal.reboot()
	f.a = New(1, state, f.wal, f.ctrl)
}

func (f *fixture) must(m pamsg.ProposerMessage) pamsg.AcceptorMessage {
	f.t.Helper()
	r, err := f.a.Process(m)
	if err != nil {
		f.t.Fatalf("%T: %v", m, err)
	}
	f.checkInvariants()
	return r
}

func (f *fixture) checkInvariants() {
	f.t.Helper()
	if f.a.CommitLSN() > f.a.FlushLSN() {
		f.t.Fatalf("commit_lsn %v > flush_lsn %v", f.a.CommitLSN(), f.a.FlushLSN())
	}
	if f.a.PersistedCommitLSN() > f.a.CommitLSN() {
		f.t.Fatalf("persisted commit_lsn %v > in-memory %v", f.a.PersistedCommitLSN(), f.a.CommitLSN())
	}
}

func wal(n int) []byte { return make([]byte, n) }

// th builds a term history from (term, lsn) pairs.
func th(pairs ...uint64) pamsg.TermHistory {
	var h pamsg.TermHistory
	for i := 0; i+1 < len(pairs); i += 2 {
		h = append(h, pamsg.TermSwitch{Term: pamsg.Term(pairs[i]), LSN: lsn.LSN(pairs[i+1])})
	}
	return h
}

// SK §10.1 oracle 1 (test_voting).
func TestVotePersistsAcrossRestart(t *testing.T) {
	f := newFixture(t)
	if _, err := f.a.Process(&pamsg.VoteRequest{Generation: 1, Term: 1}); err == nil {
		t.Fatal("vote with the wrong generation accepted")
	}
	r := f.must(&pamsg.VoteRequest{Term: 1}).(*pamsg.VoteResponse)
	if !r.VoteGiven || r.Term != 1 {
		t.Fatalf("vote = %+v", r)
	}
	if f.ctrl.last().AcceptorState.Term != 1 {
		t.Fatal("term not persisted before the vote reply")
	}
	f.reboot()
	r = f.must(&pamsg.VoteRequest{Term: 1}).(*pamsg.VoteResponse)
	if r.VoteGiven || r.Term != 1 {
		t.Fatalf("second vote for term 1 after reboot = %+v; want refused", r)
	}
	r = f.must(&pamsg.VoteRequest{Term: 2}).(*pamsg.VoteResponse)
	if !r.VoteGiven {
		t.Fatal("vote for a higher term refused")
	}
}

func TestVoteNotGivenWhenPersistFails(t *testing.T) {
	f := newFixture(t)
	f.ctrl.fail = true
	if r, err := f.a.Process(&pamsg.VoteRequest{Term: 1}); err == nil {
		t.Fatalf("vote given without a durable term: %+v", r)
	}
	if f.a.Term() != 0 {
		t.Fatal("in-memory term moved although the persist failed")
	}
}

// SK §10.1 oracle 2 (test_last_log_term_switch).
func TestLastLogTermSwitch(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.VoteRequest{Term: 2})
	if err := f.a.Elected(&pamsg.ProposerElected{Generation: 1, Term: 2, StartStreamingAt: 1, TermHistory: th(1, 1, 2, 3)}); err == nil {
		t.Fatal("Elected with the wrong generation accepted")
	}
	f.must(&pamsg.ProposerElected{Term: 2, StartStreamingAt: 1, TermHistory: th(1, 1, 2, 3)})
	if f.wal.inited != 1 {
		t.Fatalf("first segment not initialized at 1 (got %v)", f.wal.inited)
	}
	f.must(&pamsg.AppendRequest{Term: 2, BeginLSN: 1, EndLSN: 2, WAL: wal(1)})
	if got := f.a.LastLogTerm(); got != 1 {
		t.Fatalf("last_log_term after [1,2) = %d; want 1", got)
	}
	f.must(&pamsg.AppendRequest{Term: 2, BeginLSN: 2, EndLSN: 3, WAL: wal(1)})
	if got := f.a.LastLogTerm(); got != 2 {
		t.Fatalf("last_log_term after [2,3) = %d; want 2", got)
	}
}

// SK §10.1 oracle 3 (test_non_consecutive_write).
func TestNonConsecutiveWrite(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 1, TermHistory: th(1, 1)})
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 1, EndLSN: 2, WAL: wal(1)})
	if _, err := f.a.Process(&pamsg.AppendRequest{Term: 1, BeginLSN: 3, EndLSN: 4, WAL: wal(1)}); err == nil {
		t.Fatal("append with a gap accepted")
	}
	if _, err := f.a.Process(&pamsg.AppendRequest{Term: 1, BeginLSN: 1, EndLSN: 2, WAL: wal(1)}); err == nil {
		t.Fatal("rewrite accepted")
	}
	if _, err := f.a.Process(&pamsg.AppendRequest{Generation: 1, Term: 1, BeginLSN: 2, EndLSN: 3, WAL: wal(1)}); err == nil {
		t.Fatal("append with the wrong generation accepted")
	}
}

func TestAppendTermRules(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 5})
	if _, err := f.a.Process(&pamsg.AppendRequest{Term: 6, BeginLSN: 1, EndLSN: 2, WAL: wal(1)}); err == nil ||
		!strings.Contains(err.Error(), "before ProposerElected") {
		t.Fatalf("append of a higher term: %v", err)
	}
	// Voted for 5 but no Elected yet: appends of term 5 must wait for it.
	if _, err := f.a.Process(&pamsg.AppendRequest{Term: 5, BeginLSN: 1, EndLSN: 2, WAL: wal(1)}); err == nil {
		t.Fatal("append before ProposerElected accepted")
	}
	r := f.must(&pamsg.AppendRequest{Term: 4, BeginLSN: 1, EndLSN: 2, WAL: wal(1)}).(*pamsg.AppendResponse)
	if r.Term != 5 || r.FlushLSN != 0 || r.CommitLSN != 0 {
		t.Fatalf("stale append got %+v; want a term-only response", r)
	}
	if f.wal.write != 0 {
		t.Fatal("stale append wrote WAL")
	}
}

func TestCommitLSNRules(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: th(1, 0x100)})
	// The term starts at 0x100; timeline_start_lsn became 0x100, so commit is 0x100 too.
	if f.a.CommitLSN() != 0x100 || f.ctrl.last().TimelineStartLSN != 0x100 || f.ctrl.last().LocalStartLSN != 0x100 {
		t.Fatalf("after election: commit %v, state %+v", f.a.CommitLSN(), f.ctrl.last())
	}
	// Unflushed append: no reply; commit capped at flush_lsn.
	r, err := f.a.Append(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x180, CommitLSN: 0x180, WAL: wal(0x80)}, false)
	if err != nil || r != nil {
		t.Fatalf("no-flush append = %+v, %v; want no reply", r, err)
	}
	if f.a.CommitLSN() != 0x100 {
		t.Fatalf("commit_lsn %v ran past flush_lsn", f.a.CommitLSN())
	}
	fr, err := f.a.FlushWAL()
	if err != nil || fr.FlushLSN != 0x180 {
		t.Fatalf("FlushWAL = %+v, %v", fr, err)
	}
	// The response reports the persisted commit LSN, never the in-memory one.
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x180, EndLSN: 0x180, CommitLSN: 0x180})
	if f.a.CommitLSN() != 0x180 {
		t.Fatalf("commit_lsn = %v", f.a.CommitLSN())
	}
	resp := f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x180, EndLSN: 0x180}).(*pamsg.AppendResponse)
	if resp.CommitLSN != f.ctrl.last().CommitLSN {
		t.Fatalf("AppendResponse commit %v != persisted %v", resp.CommitLSN, f.ctrl.last().CommitLSN)
	}
	// A lower candidate never moves commit_lsn back.
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x180, EndLSN: 0x180, CommitLSN: 0x110})
	if f.a.CommitLSN() != 0x180 {
		t.Fatalf("commit_lsn went back to %v", f.a.CommitLSN())
	}
	// Crossing a segment ahead of the persisted value persists it.
	if err := f.a.MaybePersist(time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	before := len(f.ctrl.persisted)
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x180, EndLSN: 0x200, CommitLSN: 0x200, WAL: wal(0x80)})
	if err := f.a.MaybePersist(time.Now(), 0); err != nil || len(f.ctrl.persisted) != before+1 || f.ctrl.last().CommitLSN != 0x200 {
		t.Fatalf("MaybePersist with zero interval did not persist commit 0x200 (%v)", err)
	}
}

// --sync-safekeepers waits for the persisted commit_lsn to reach the term
// start, so crossing it must be persisted at once.
func TestCommitCrossingTermStartIsPersisted(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: th(1, 0x100)})
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x200, WAL: wal(0x100)})
	f.must(&pamsg.VoteRequest{Term: 2})
	f.must(&pamsg.ProposerElected{Term: 2, StartStreamingAt: 0x200, TermHistory: th(1, 0x100, 2, 0x200)})
	if f.ctrl.last().CommitLSN >= 0x200 {
		t.Fatal("commit already at the term start")
	}
	r := f.must(&pamsg.AppendRequest{Term: 2, BeginLSN: 0x200, EndLSN: 0x200, CommitLSN: 0x200}).(*pamsg.AppendResponse)
	if r.CommitLSN != 0x200 || f.ctrl.last().CommitLSN != 0x200 {
		t.Fatalf("commit crossing the term start not persisted: reply %v, file %v", r.CommitLSN, f.ctrl.last().CommitLSN)
	}
}

// SK §10.4 check 4: a new proposer truncates an uncommitted divergent tail.
func TestElectedTruncatesDivergentTail(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: th(1, 0x100)})
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x400, CommitLSN: 0x200, WAL: wal(0x300)})
	if f.a.CommitLSN() != 0x200 {
		t.Fatalf("commit = %v", f.a.CommitLSN())
	}
	// Term 2 was elected elsewhere and diverged at 0x300; term 3 tells us.
	f.must(&pamsg.VoteRequest{Term: 3})
	prop := th(1, 0x100, 2, 0x300, 3, 0x500)
	if _, err := f.a.Process(&pamsg.ProposerElected{Term: 3, StartStreamingAt: 0x400, TermHistory: prop}); err == nil {
		t.Fatal("wrong start_streaming_at accepted")
	}
	f.must(&pamsg.ProposerElected{Term: 3, StartStreamingAt: 0x300, TermHistory: prop})
	if f.wal.write != 0x300 || f.a.FlushLSN() != 0x300 {
		t.Fatalf("not truncated at 0x300: write %v flush %v", f.wal.write, f.a.FlushLSN())
	}
	if got := f.ctrl.last().AcceptorState.TermHistory; len(got) != 3 {
		t.Fatalf("term history not adopted: %v", got)
	}
	// The full history is kept, but last_log_term only counts what we hold.
	if f.a.LastLogTerm() != 2 {
		t.Fatalf("last_log_term = %d; want 2 (term 2 starts exactly at our end)", f.a.LastLogTerm())
	}
}

func TestElectedNeverTruncatesCommitted(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: th(1, 0x100)})
	f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x400, CommitLSN: 0x400, WAL: wal(0x300)})
	f.must(&pamsg.VoteRequest{Term: 2})
	_, err := f.a.Process(&pamsg.ProposerElected{Term: 2, StartStreamingAt: 0x300, TermHistory: th(1, 0x100, 2, 0x300)})
	if err == nil {
		t.Fatal("truncation below commit_lsn accepted")
	}
	if f.wal.write != 0x400 {
		t.Fatalf("WAL was truncated to %v anyway", f.wal.write)
	}
}

func TestStaleElectedIgnored(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 5})
	if r := f.must(&pamsg.ProposerElected{Term: 3, StartStreamingAt: 1, TermHistory: th(3, 1)}); r != nil {
		t.Fatalf("reply to Elected: %v", r)
	}
	if f.wal.inited != 0 || len(f.ctrl.last().AcceptorState.TermHistory) != 0 {
		t.Fatal("stale Elected changed state")
	}
}

func TestGreetingChecks(t *testing.T) {
	base := pamsg.ProposerGreeting{TenantID: tenant, TimelineID: timeline, PgVersion: 150010, SystemID: 42, WalSegSize: 16 << 20}
	for _, tc := range []struct {
		name string
		edit func(g *pamsg.ProposerGreeting)
		want string
	}{
		{"wrong tenant", func(g *pamsg.ProposerGreeting) { g.TenantID = timeline }, "reached timeline"},
		{"wrong timeline", func(g *pamsg.ProposerGreeting) { g.TimelineID = tenant }, "reached timeline"},
		{"wrong major", func(g *pamsg.ProposerGreeting) { g.PgVersion = 160002 }, "PostgreSQL 16"},
		{"absurd version", func(g *pamsg.ProposerGreeting) { g.PgVersion = 99 }, "unsupported PostgreSQL"},
		{"segment size", func(g *pamsg.ProposerGreeting) { g.WalSegSize = 1 << 20 }, "segments"},
		{"system id", func(g *pamsg.ProposerGreeting) { g.SystemID = 43 }, "another cluster"},
		{"not a member", func(g *pamsg.ProposerGreeting) {
			g.Mconf = pamsg.Configuration{Generation: 2, Members: []pamsg.SafekeeperID{{ID: 7}}}
		}, "not a member"},
	} {
		f := newFixture(t)
		g := base
		tc.edit(&g)
		_, err := f.a.Process(&g)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", tc.name, err, tc.want)
		}
	}
	f := newFixture(t)
	g := base
	g.Mconf = pamsg.Configuration{Generation: 2, Members: []pamsg.SafekeeperID{{ID: 1, Host: "h", PgPort: 1}}}
	r := f.must(&g).(*pamsg.AcceptorGreeting)
	if r.NodeID != 1 || r.Mconf.Generation != 2 || f.ctrl.last().Mconf.Generation != 2 {
		t.Fatalf("membership switch: reply %+v", r)
	}
	// Sync-safekeepers greets with zeros; that is fine.
	f = newFixture(t)
	f.must(&pamsg.ProposerGreeting{TenantID: tenant, TimelineID: timeline, WalSegSize: 16 << 20})
}

// A reboot loses unflushed WAL but never acknowledged WAL, and the term and
// history survive.
func TestRebootKeepsAcknowledged(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	hist := th(1, 0x100)
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: hist})
	r := f.must(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x200, WAL: wal(0x100)}).(*pamsg.AppendResponse)
	acked := r.FlushLSN
	if _, err := f.a.Append(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x200, EndLSN: 0x300, WAL: wal(0x100)}, false); err != nil {
		t.Fatal(err)
	}
	f.reboot()
	v := f.must(&pamsg.VoteRequest{Term: 2}).(*pamsg.VoteResponse)
	if v.FlushLSN < acked {
		t.Fatalf("flush_lsn %v after reboot < acknowledged %v", v.FlushLSN, acked)
	}
	if len(v.TermHistory) != 1 || v.TermHistory[0] != hist[0] {
		t.Fatalf("term history after reboot = %v", v.TermHistory)
	}
	// Writes wait for the election's truncation after a reboot.
	if _, err := f.a.Process(&pamsg.AppendRequest{Term: 2, BeginLSN: 0x200, EndLSN: 0x201, WAL: wal(1)}); err == nil {
		t.Fatal("append accepted before ProposerElected after reboot")
	}
	f.must(&pamsg.ProposerElected{Term: 2, StartStreamingAt: 0x200, TermHistory: th(1, 0x100, 2, 0x200)})
	f.must(&pamsg.AppendRequest{Term: 2, BeginLSN: 0x200, EndLSN: 0x201, WAL: wal(1)})
}

func TestFlushFailureIsAnError(t *testing.T) {
	f := newFixture(t)
	f.must(&pamsg.VoteRequest{Term: 1})
	f.must(&pamsg.ProposerElected{Term: 1, StartStreamingAt: 0x100, TermHistory: th(1, 0x100)})
	f.wal.failOn = "flush"
	if r, err := f.a.Process(&pamsg.AppendRequest{Term: 1, BeginLSN: 0x100, EndLSN: 0x200, WAL: wal(0x100)}); err == nil {
		t.Fatalf("append acknowledged although fsync failed: %+v", r)
	}
	if _, err := f.a.Process(&pamsg.VoteRequest{Term: 2}); err == nil {
		t.Fatal("vote given although the WAL could not be flushed")
	}
}
