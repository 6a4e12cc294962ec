package walreceiver_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
	"strata.dev/libs/walproposer"
	"strata.dev/pageserver/walreceiver"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/walcheck"
)

const segSize = lsn.DefaultSegmentSize

// startSafekeepers starts n real safekeepers. fsync is off: nothing here
// crashes the machine, and kill -9 keeps what the kernel has.
func startSafekeepers(t *testing.T, n int, extraArgs ...string) []*daemons.Safekeeper {
	t.Helper()
	var sks []*daemons.Safekeeper
	for i := 1; i <= n; i++ {
		sks = append(sks, daemons.StartSafekeeper(t, i, append([]string{"--no-sync", "--wal-prealloc", "none"}, extraArgs...)...))
	}
	return sks
}

// env is one timeline on a set of safekeepers. Each safekeeper gets its WAL
// from its own single-safekeeper proposer, so a test decides how much WAL
// (and so which commit LSN) each one has; the bytes are the same everywhere,
// cut from one generated stream.
type env struct {
	t     *testing.T
	sks   []*daemons.Safekeeper
	ttid  id.TenantTimeline
	start lsn.LSN // where the timeline's WAL begins: a segment start
	gen   *walgen.Generator
	wal   []byte // every byte generated, from start
	feeds []*feed
	token string // JWT the proposers present
}

// feed is the proposer of one safekeeper.
type feed struct {
	buf    *walproposer.WALBuffer
	p      *walproposer.Proposer
	cancel context.CancelFunc
	done   chan error
}

func newEnv(t *testing.T, sks []*daemons.Safekeeper) *env {
	t.Helper()
	return newEnvWithToken(t, sks, id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}, "")
}

// newEnvWithToken is newEnv for safekeepers that require a JWT.
func newEnvWithToken(t *testing.T, sks []*daemons.Safekeeper, ttid id.TenantTimeline, token string) *env {
	t.Helper()
	e := &env{t: t, sks: sks, ttid: ttid, start: segSize, token: token}
	var err error
	if e.gen, err = walgen.New(e.start, walgen.Options{}); err != nil {
		t.Fatal(err)
	}
	e.startFeeds(e.start)
	return e
}

// startFeeds starts a proposer for every running safekeeper, streaming the
// generated WAL from pos (the safekeepers' end of WAL).
func (e *env) startFeeds(pos lsn.LSN) {
	e.feeds = make([]*feed, len(e.sks))
	for i, sk := range e.sks {
		if !sk.Running() {
			continue
		}
		f := &feed{buf: walproposer.NewWALBuffer(pos), done: make(chan error, 1)}
		f.p = walproposer.New(walproposer.Config{
			Safekeepers: []string{sk.PGAddr}, TTID: e.ttid, Version: pamsg.V3, PgVersion: 150010,
			SystemID: walgen.DefaultSystemID, WalSegSize: segSize, StartLSN: e.start, AllowTimelineCreation: true,
			AppName: "test-proposer", Token: e.token, ReconnectDelay: 50 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
			Log: zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.ErrorLevel),
		}, f.buf)
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		go func() { f.done <- f.p.Run(ctx) }()
		e.t.Cleanup(f.stop)
		e.feeds[i] = f
	}
}

func (f *feed) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

// stopFeeds disconnects every proposer: the safekeepers then have no compute.
func (e *env) stopFeeds() {
	for _, f := range e.feeds {
		if f != nil {
			f.stop()
		}
	}
}

// generate appends records until the stream reaches at least to and
// returns its end (a record end).
func (e *env) generate(to lsn.LSN) lsn.LSN {
	for e.gen.LSN() < to {
		e.gen.LogicalMessage(3000)
		e.wal = append(e.wal, e.gen.Bytes()...)
	}
	return e.gen.LSN()
}

// generatePageEnd appends records so that the last one ends exactly at a
// page boundary inside a segment, and returns it.
func (e *env) generatePageEnd() lsn.LSN {
	for {
		l := e.gen.LSN()
		p := l.PageStart() + lsn.PageSize
		if rest := int(p - l); rest >= 32 && !p.IsSegmentStart(segSize) {
			r := e.gen.Noop(rest)
			e.wal = append(e.wal, e.gen.Bytes()...)
			if r.End != p {
				e.t.Fatalf("noop record ends at %v, want %v", r.End, p)
			}
			return p
		}
		e.gen.LogicalMessage(100)
		e.wal = append(e.wal, e.gen.Bytes()...)
	}
}

// generateSwitch appends an XLOG_SWITCH record: the rest of the segment is
// zeros and the stream continues at the next segment.
func (e *env) generateSwitch() lsn.LSN {
	e.gen.Switch()
	e.wal = append(e.wal, e.gen.Bytes()...)
	return e.gen.LSN()
}

// push gives safekeeper i the generated WAL up to to.
func (e *env) push(i int, to lsn.LSN) {
	f := e.feeds[i]
	if from := f.buf.End(); from < to {
		f.buf.Append(e.wal[from-e.start : to-e.start])
	}
}

// pushAll gives every running safekeeper the WAL up to to and waits until
// they have it committed.
func (e *env) pushAll(to lsn.LSN) {
	for i, sk := range e.sks {
		if sk.Running() {
			e.push(i, to)
		}
	}
	for i, sk := range e.sks {
		if sk.Running() {
			e.waitCommit(i, to)
		}
	}
}

// pushEach gives safekeeper i the WAL up to to[i] and waits until each has
// it committed.
func (e *env) pushEach(to ...lsn.LSN) {
	e.t.Helper()
	for i, l := range to {
		e.push(i, l)
	}
	for i, l := range to {
		e.waitCommit(i, l)
	}
}

// waitCommit waits until safekeeper i reports commit_lsn ≥ l (the
// timeline appears when its proposer first connects).
func (e *env) waitCommit(i int, l lsn.LSN) {
	e.t.Helper()
	walcheck.WaitFor(e.t, fmt.Sprintf("safekeeper %d to commit %v", e.sks[i].ID, l), 30*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := e.sks[i].Client().GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: e.ttid.Tenant.String(), TimelineId: e.ttid.Timeline.String()})
		if err != nil {
			return false, err.Error()
		}
		return lsn.LSN(info.CommitLsn) >= l, lsn.LSN(info.CommitLsn).String()
	})
}

func (e *env) timeline(i int) *pb.TimelineInfo { return e.sks[i].Timeline(e.t, e.ttid) }

func (e *env) addrs() []string { return daemons.PGAddrs(e.sks) }

// index returns the position of the safekeeper listening on addr, or -1.
func (e *env) index(addr string) int {
	for i, sk := range e.sks {
		if sk.PGAddr == addr {
			return i
		}
	}
	return -1
}

// config is a receiver configuration for the env with fast polling; the
// receiver logs to t and to log.
func (e *env) config(t *testing.T, log *logBuffer) walreceiver.Config {
	return walreceiver.Config{
		Safekeepers: e.addrs(), TTID: e.ttid, NodeID: 7,
		StatusInterval: 200 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
		Log: testLogger(t, log),
	}
}

// testLogger logs to t and to log.
func testLogger(t *testing.T, log *logBuffer) zerolog.Logger {
	return zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), log)).Level(zerolog.DebugLevel)
}

// watchConfig is config with a gRPC client of every safekeeper: the
// receiver watches them (WatchTimeline) instead of polling, and reports
// its positions to each.
func (e *env) watchConfig(t *testing.T, log *logBuffer) walreceiver.Config {
	cfg := e.config(t, log)
	cfg.SafekeeperClients = dialClients(t, daemons.GRPCAddrs(e.sks))
	return cfg
}

// configFor is watchConfig when watch is set, else config.
func (e *env) configFor(t *testing.T, log *logBuffer, watch bool) walreceiver.Config {
	if watch {
		return e.watchConfig(t, log)
	}
	return e.config(t, log)
}

// observeModes are the two ways a receiver learns what the safekeepers
// have; the policy on top is the same.
var observeModes = []struct {
	name  string
	watch bool
}{{"poll", false}, {"watch", true}}

// dialClients connects to gRPC addresses with walreceiver.Dial (fast
// reconnects) and closes the connections when the test ends.
func dialClients(t *testing.T, addrs []string) []pb.SafekeeperClient {
	t.Helper()
	conns, err := walreceiver.Dial(addrs, 50*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var clients []pb.SafekeeperClient
	for _, c := range conns {
		t.Cleanup(func() { c.Close() })
		clients = append(clients, pb.NewSafekeeperClient(c))
	}
	return clients
}

// checkSink checks that the sink holds exactly the generated WAL in
// [from, to), and that so do the files of safekeepers idx (default: every
// running safekeeper).
func (e *env) checkSink(s *recordingSink, from, to lsn.LSN, idx ...int) {
	e.t.Helper()
	if v := s.violations(); len(v) > 0 {
		e.t.Fatalf("the sink saw %d violations of the stream contract, first: %s", len(v), v[0])
	}
	got := s.bytes(from, to)
	if got == nil {
		e.t.Fatalf("the sink does not hold [%v, %v) (it has [%v, %v))", from, to, s.base, s.end())
	}
	if want := e.wal[from-e.start : to-e.start]; !bytes.Equal(got, want) {
		e.t.Fatalf("the sink's WAL in [%v, %v) differs from the generated WAL at %v", from, to, from+lsn.LSN(firstDiff(got, want)))
	}
	if len(idx) == 0 {
		for i, sk := range e.sks {
			if sk.Running() {
				idx = append(idx, i)
			}
		}
	}
	for _, i := range idx {
		sk := e.sks[i]
		dir := sk.TimelineDir(e.ttid.Tenant.String(), e.ttid.Timeline.String())
		for seg := from.SegmentNumber(segSize); seg <= (to - 1).SegmentNumber(segSize); seg++ {
			b, err := walcheck.ReadSegment(dir, seg, segSize)
			if err != nil {
				e.t.Fatalf("safekeeper %d: %v", sk.ID, err)
			}
			segStart := lsn.SegmentLSN(seg, 0, segSize)
			lo, hi := max(from, segStart), min(to, segStart+segSize)
			if !bytes.Equal(b[lo-segStart:hi-segStart], got[lo-from:hi-from]) {
				e.t.Fatalf("the sink's WAL differs from safekeeper %d's segment %s", sk.ID, wal.SegmentFileName(1, seg, segSize))
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// runner is a receiver's Run in the background.
type runner struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

// run starts r.Run; the test's cleanup cancels it.
func run(t *testing.T, r *walreceiver.Receiver) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &runner{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		rn.err = r.Run(ctx)
		close(rn.done)
	}()
	t.Cleanup(func() { rn.stop() })
	return rn
}

// stop cancels Run and returns its error; the test fails if Run does not
// return within 2 s.
func (rn *runner) stop() error {
	rn.cancel()
	select {
	case <-rn.done:
		return rn.err
	case <-time.After(2 * time.Second):
		rn.t.Fatalf("Run did not return within 2 s of the cancellation:\n%s", goroutines())
		return nil
	}
}

// waitStreaming waits until the receiver streams from safekeeper i.
func (e *env) waitStreaming(r *walreceiver.Receiver, i int) {
	e.t.Helper()
	walcheck.WaitFor(e.t, fmt.Sprintf("the receiver to stream from safekeeper %d", e.sks[i].ID), 30*time.Second, func() (bool, string) {
		st := r.Status()
		return st.Safekeeper == e.sks[i].PGAddr, fmt.Sprintf("%+v", st)
	})
}

// goroutines is every goroutine's stack.
func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// checkNoReceiverGoroutines fails if any goroutine still runs receiver code.
func checkNoReceiverGoroutines(t *testing.T) {
	t.Helper()
	walcheck.WaitFor(t, "the receiver's goroutines to end", 2*time.Second, func() (bool, string) {
		all := goroutines()
		return !strings.Contains(all, "strata.dev/pageserver/walreceiver."), all
	})
}

// sigstop freezes a safekeeper (it keeps its sockets but answers nothing);
// the returned function resumes it.
func sigstop(t *testing.T, sk *daemons.Safekeeper) (resume func()) {
	t.Helper()
	pid := sk.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// logBuffer collects the receiver's log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
