package acceptor

// A deterministic randomized simulation of the proposer–acceptor protocol
// (SK §10.2), in the spirit of Neon's walproposer_sim random schedules.
//
// Up to three walproposer.State instances (the real proposer logic) run
// against N Acceptors (the real acceptor logic) over a simulated network: each
// (proposer, acceptor) connection is a pair of FIFO queues, and a seeded
// schedule picks one event per step — deliver a message to an acceptor or a
// proposer, stream or generate WAL, flush a dirty connection, persist lagging
// LSNs, apply broker gossip, re-send the last AppendResponse (pageserver
// feedback), or a fault: cut a connection (its in-flight messages are lost,
// or a prefix still reaches the safekeeper, interleaved with the proposer's
// next connection), crash an acceptor (its unflushed WAL is lost; it comes
// back from what is durable, at once or later), fail one control-file write
// or fsync, crash a proposer, start a competing one. A quiet phase without
// faults and with a majority of acceptors up ends every schedule and must
// make progress.
//
// Acceptors are driven the way walservice/push.go drives them: appends
// without fsync, FlushWAL (which replies) when a connection's queue runs dry
// or at random, any acceptor error ends the connection. Proposers behave like
// walproposer/proposer.go: greet on every (re)connection, stream from each
// acceptor's StartStreamingAt once elected, carrying the commit LSN and the
// truncate LSN. A freshly elected proposer copies the WAL below its
// TermStartLSN from the donor (recovery-mode START_REPLICATION, which only
// serves while the donor is still in the proposer's term), then appends WAL
// whose bytes are a function of (proposer instance, term, LSN), so divergent
// histories differ byte by byte.
//
// The oracle checks SK §3.12 after every step (checkAcceptor, onTruncate,
// onElected, onCommit); TestSimulationCatchesMutants shows it is not blind.
//
//	go test -run 'TestSimulation$' ./safekeeper/acceptor/                    # 300 seeds
//	STRATA_SIM_SEEDS=100000 go test -run 'TestSimulation$' -timeout 2h ...   # a campaign
//	STRATA_SIM_SEED=1234 go test -run 'TestSimulation$' -v ...               # replay one seed with its trace
//
// STRATA_SIM_FIRST_SEED and STRATA_SIM_STEPS (chaos steps per seed, default
// 1000; a schedule with fewer steps is a prefix of one with more) tune it.

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/walproposer"
)

// simStartLSN is where the timeline's WAL begins (every proposer's basebackup LSN).
const simStartLSN lsn.LSN = 0x1000

type simConfig struct {
	seed       uint64
	n          int     // acceptors
	maxAlive   int     // proposers running at once
	chaosSteps int     // steps with faults
	quietSteps int     // bound on the quiet phase
	faultRate  float64 // scales the fault weights
	maxChunk   int     // largest WAL chunk a proposer generates
	maxMsg     int     // largest WAL payload of one AppendRequest
	trace      bool
	// mutant breaks the system on purpose, to show the oracle notices
	// (TestSimulationCatchesMutants).
	mutant string
}

func simConfigFor(seed uint64, chaosSteps int) simConfig {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := simConfig{seed: seed, n: 3, chaosSteps: chaosSteps, quietSteps: 10000}
	if seed%4 == 0 {
		cfg.n = 5
	}
	cfg.maxAlive = []int{1, 1, 2, 2, 2, 3}[r.IntN(6)]
	cfg.faultRate = []float64{0.3, 1, 1, 3}[r.IntN(4)]
	cfg.maxChunk = []int{4, 32, 200}[r.IntN(3)]
	cfg.maxMsg = []int{3, 64, 1000}[r.IntN(3)]
	return cfg
}

// simConn is one proposer→acceptor connection.
type simConn struct {
	id     int
	p      *simProposer
	acc    *simAcceptor
	toAcc  []pamsg.ProposerMessage
	toProp []pamsg.AcceptorMessage
	// dirty: the acceptor appended WAL from this connection since its last FlushWAL.
	dirty bool
	// zombie: the proposer gave up on the connection, but the safekeeper
	// still reads what reached it before the end; replies go nowhere.
	zombie bool
	// lastResp is the last AppendResponse sent: the safekeeper sends it
	// again whenever a pageserver reports progress (SK §3.6).
	lastResp *pamsg.AppendResponse
	// Proposer side, once ProposerElected was sent on this connection.
	streaming bool
	term      pamsg.Term
	pos       lsn.LSN
}

// simWAL lets the oracle see every truncation before it happens.
type simWAL struct {
	*memWAL
	onTruncate func(end lsn.LSN)
	lie        bool // mutant: fsync does nothing but claims success
}

func (w *simWAL) Flush() error {
	if w.lie && w.failOn == "" {
		return nil
	}
	return w.memWAL.Flush()
}

func (w *simWAL) FlushRecordLSN() lsn.LSN {
	if w.lie {
		return w.write
	}
	return w.flush
}

func (w *simWAL) Truncate(end lsn.LSN) error {
	w.onTruncate(end)
	return w.memWAL.Truncate(end)
}

type simAcceptor struct {
	idx       int
	a         *Acceptor
	wal       *simWAL
	ctrl      *memControl
	up        bool
	restartAt int

	// What the oracle has seen of this safekeeper.
	lastCommit      lsn.LSN    // in-memory commit_lsn, this incarnation
	maxCommit       lsn.LSN    // highest commit_lsn, all incarnations
	persistedCommit lsn.LSN    // highest persisted commit_lsn, all incarnations
	term            pamsg.Term // highest term
	// acked is the highest flush_lsn this safekeeper reported (AppendResponse
	// or VoteResponse), lowered only by a legitimate truncation; ackedLogTerm
	// is the highest last_log_term its WAL had when it reported one.
	acked        lsn.LSN
	ackedLogTerm pamsg.Term

	// published is what the broker last heard from this safekeeper (SK §7.2).
	published struct {
		lastLogTerm         pamsg.Term
		commit, peerHorizon lsn.LSN
	}
}

type simProposer struct {
	inst      int // instance number, unique within a run
	st        *walproposer.State
	alive     bool
	conns     []*simConn
	connectAt []int // step from which it may (re)connect to each acceptor
	elected   bool
	term      pamsg.Term
	termStart lsn.LSN
	wal       []byte // its WAL from simStartLSN on, once elected
	commit    lsn.LSN
}

func (p *simProposer) walEnd() lsn.LSN { return simStartLSN + lsn.LSN(len(p.wal)) }

type sim struct {
	cfg      simConfig
	rng      *rand.Rand
	step     int
	accs     []*simAcceptor
	props    []*simProposer // every instance ever started
	conns    []*simConn     // open connections
	nextConn int
	// electedBy maps a term to the proposer instance elected in it, and
	// termStart to where that term's WAL begins.
	electedBy map[pamsg.Term]int
	termStart map[pamsg.Term]lsn.LSN
	// termCommit is the highest commit LSN reached in each term.
	termCommit map[pamsg.Term]lsn.LSN
	// committed is the global committed log: WAL from simStartLSN that some
	// proposer saw acknowledged by a majority in its term.
	committed []byte
	trace     []string
	// stats counts what happened, to show what a campaign covered.
	stats map[string]int
}

type simFailure struct{ msg string }

func (s *sim) failf(format string, args ...any) {
	panic(&simFailure{msg: fmt.Sprintf("step %d: %s", s.step, fmt.Sprintf(format, args...))})
}

func (s *sim) logf(format string, args ...any) {
	if s.cfg.trace {
		s.trace = append(s.trace, fmt.Sprintf("%5d %s", s.step, fmt.Sprintf(format, args...)))
	}
}

func newSim(cfg simConfig) *sim {
	s := &sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 1)), electedBy: map[pamsg.Term]int{},
		termStart: map[pamsg.Term]lsn.LSN{}, termCommit: map[pamsg.Term]lsn.LSN{}}
	s.stats = map[string]int{}
	for i := range cfg.n {
		x := &simAcceptor{idx: i, ctrl: &memControl{}, up: true}
		x.wal = &simWAL{memWAL: &memWAL{}, onTruncate: func(end lsn.LSN) { s.onTruncate(x, end) }, lie: cfg.mutant == "lying-fsync"}
		x.a = New(id.NodeID(i+1), newState(), x.wal, x.ctrl)
		s.accs = append(s.accs, x)
	}
	return s
}

// runSim runs one schedule and returns the first broken invariant (or
// panic of the code under test).
func runSim(cfg simConfig) (s *sim, err error) {
	s = newSim(cfg)
	defer func() {
		switch r := recover().(type) {
		case nil:
		case *simFailure:
			err = errors.New(r.msg)
		default:
			err = fmt.Errorf("step %d: panic: %v\n%s", s.step, r, debug.Stack())
		}
	}()
	s.run()
	return s, nil
}

func (s *sim) run() {
	s.stats["seeds"] = 1
	s.startProposer()
	for s.step = 1; s.step <= s.cfg.chaosSteps; s.step++ {
		s.restartDue()
		s.chaosStep()
		s.checkAll()
	}
	s.step--
	s.startQuiet()
	before := len(s.committed)
	for i := 1; ; i++ {
		if i > s.cfg.quietSteps {
			s.failf("no progress after %d quiet steps with %d of %d acceptors up: committed end %v, proposers %s",
				s.cfg.quietSteps, s.upCount(), s.cfg.n, simStartLSN+lsn.LSN(len(s.committed)), s.describeProposers())
		}
		s.step++
		s.restartDue()
		if s.aliveCount() == 0 {
			s.startProposer()
		}
		s.quietStep()
		s.checkAll()
		if len(s.committed) > before && s.progressed() {
			s.stats["steps in quiet phases"] = i
			break
		}
	}
	s.stats["steps"] = s.step
	s.stats["committed bytes"] = len(s.committed)
}

// progressed: a live proposer committed WAL of its own term.
func (s *sim) progressed() bool {
	for _, p := range s.props {
		if p.alive && p.elected && p.commit > p.termStart {
			return true
		}
	}
	return false
}

type simEvent int

const (
	evDeliverAcc simEvent = iota
	evDeliverProp
	evStream
	evGenerate
	evFlush
	evConnect
	evPersist
	evGossip
	evResend
	// Faults from here on.
	evCut
	evRebootAcc
	evCrashAcc
	evDiskFault
	evCrashProp
	evStartProp
	numEvents
)

var simWeights = [numEvents]float64{
	evDeliverAcc: 30, evDeliverProp: 30, evStream: 20, evGenerate: 8, evFlush: 4, evConnect: 8, evPersist: 2, evGossip: 2, evResend: 2,
	evCut: 2, evRebootAcc: 0.7, evCrashAcc: 0.5, evDiskFault: 0.5, evCrashProp: 0.5, evStartProp: 1,
}

func (s *sim) pickEvent(faults bool) simEvent {
	var total float64
	var w [numEvents]float64
	for e := range numEvents {
		w[e] = simWeights[e]
		if e == evStartProp && s.aliveCount() == 0 {
			// A compute that died is restarted soon; a second one is a fault.
			w[e] = 4
		} else if e >= evCut {
			if !faults {
				w[e] = 0
			} else {
				w[e] *= s.cfg.faultRate
			}
		}
		total += w[e]
	}
	x := s.rng.Float64() * total
	for e := range numEvents {
		if x < w[e] {
			return e
		}
		x -= w[e]
	}
	return evDeliverAcc
}

func (s *sim) chaosStep() { s.doEvent(s.pickEvent(true)) }
func (s *sim) quietStep() { s.doEvent(s.pickEvent(false)) }

func (s *sim) doEvent(e simEvent) {
	switch e {
	case evDeliverAcc:
		if c := s.pickConn(func(c *simConn) bool { return len(c.toAcc) > 0 }); c != nil {
			s.deliverToAcceptor(c)
		}
	case evDeliverProp:
		if c := s.pickConn(func(c *simConn) bool { return !c.zombie && len(c.toProp) > 0 }); c != nil {
			s.deliverToProposer(c)
		}
	case evStream:
		if c := s.pickConn(func(c *simConn) bool { return !c.zombie && c.streaming }); c != nil {
			s.stream(c)
		}
	case evGenerate:
		if p := s.pickProposer(func(p *simProposer) bool { return p.elected }); p != nil {
			s.generate(p)
		}
	case evFlush:
		if c := s.pickConn(func(c *simConn) bool { return c.dirty }); c != nil {
			s.flushConn(c)
		}
	case evConnect:
		s.connect()
	case evPersist:
		// The timeline manager persists lagging in-memory LSNs now and then.
		if x := s.pickAcceptor(func(x *simAcceptor) bool { return x.up }); x != nil {
			if err := x.a.Persist(); err != nil {
				s.failf("safekeeper %d: persist: %v", x.idx, err)
			}
			s.checkAcceptor(x)
		}
	case evGossip:
		s.gossip()
	case evResend:
		if c := s.pickConn(func(c *simConn) bool { return !c.zombie && c.lastResp != nil }); c != nil {
			r := *c.lastResp
			s.logf("sk%d -> p%d %s (again, with pageserver feedback)", c.acc.idx, c.p.inst, fmtMsg(&r))
			c.toProp = append(c.toProp, &r)
		}
	case evCut:
		if c := s.pickConn(func(c *simConn) bool { return !c.zombie }); c != nil {
			s.stats["connection cuts"]++
			s.cut(c)
		}
	case evRebootAcc, evCrashAcc:
		if x := s.pickAcceptor(func(x *simAcceptor) bool { return x.up }); x != nil {
			down := 0
			if e == evCrashAcc {
				down = 5 + s.rng.IntN(60)
			}
			s.crashAcceptor(x, down)
		}
	case evDiskFault:
		s.diskFault()
	case evCrashProp:
		if p := s.pickProposer(func(*simProposer) bool { return true }); p != nil {
			s.stats["proposer crashes"]++
			s.stopProposer(p, "crashed")
		}
	case evStartProp:
		if s.aliveCount() < s.cfg.maxAlive {
			s.startProposer()
		}
	}
}

// pick returns a random element of items that satisfies ok, or the zero value.
func pick[T any](s *sim, items []T, ok func(T) bool) (none T) {
	var cands []T
	for _, it := range items {
		if ok(it) {
			cands = append(cands, it)
		}
	}
	if len(cands) == 0 {
		return none
	}
	return cands[s.rng.IntN(len(cands))]
}

func (s *sim) pickConn(ok func(*simConn) bool) *simConn { return pick(s, s.conns, ok) }

func (s *sim) pickProposer(ok func(*simProposer) bool) *simProposer {
	return pick(s, s.props, func(p *simProposer) bool { return p.alive && ok(p) })
}

func (s *sim) pickAcceptor(ok func(*simAcceptor) bool) *simAcceptor { return pick(s, s.accs, ok) }

func (s *sim) aliveCount() int {
	n := 0
	for _, p := range s.props {
		if p.alive {
			n++
		}
	}
	return n
}

func (s *sim) upCount() int {
	n := 0
	for _, x := range s.accs {
		if x.up {
			n++
		}
	}
	return n
}

// startQuiet ends the faults: a majority of acceptors (sometimes all) comes
// up and stays up; the others stay down for good.
func (s *sim) startQuiet() {
	s.logf("quiet phase")
	var down []*simAcceptor
	for _, x := range s.accs {
		if !x.up {
			down = append(down, x)
		}
	}
	s.rng.Shuffle(len(down), func(i, j int) { down[i], down[j] = down[j], down[i] })
	all := s.rng.IntN(2) == 0
	for _, x := range down {
		if all || s.upCount() < s.cfg.n/2+1 {
			s.restartAcceptor(x)
		} else {
			x.restartAt = math.MaxInt
		}
	}
}

// ---- the test ----

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestSimulation runs random schedules of proposers and safekeepers with
// crashes and network cuts and checks the invariants of SK §3.12.
func TestSimulation(t *testing.T) {
	steps := envInt(t, "STRATA_SIM_STEPS", 1000)
	if v := os.Getenv("STRATA_SIM_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_SIM_SEED=%q: %v", v, err)
		}
		cfg := simConfigFor(seed, steps)
		cfg.trace = true
		s, err := runSim(cfg)
		for _, line := range s.trace {
			t.Log(line)
		}
		if err != nil {
			t.Fatalf("seed %d (%+v): %v", seed, cfg, err)
		}
		return
	}
	seeds := envInt(t, "STRATA_SIM_SEEDS", 300)
	if testing.Short() {
		seeds = min(seeds, 50)
	}
	first := uint64(envInt(t, "STRATA_SIM_FIRST_SEED", 1))

	var (
		mu      sync.Mutex
		total   = map[string]int{}
		failed  = map[uint64]error{}
		next    = first
		workers = runtime.GOMAXPROCS(0)
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= first+uint64(seeds) || len(failed) > 0 {
					mu.Unlock()
					return
				}
				seed := next
				next++
				mu.Unlock()
				s, err := runSim(simConfigFor(seed, steps))
				mu.Lock()
				for k, v := range s.stats {
					total[k] += v
				}
				if err != nil {
					failed[seed] = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, k := range slices.Sorted(maps.Keys(total)) {
		t.Logf("%10d %s", total[k], k)
	}
	if len(failed) == 0 {
		return
	}
	seed := slices.Min(slices.Collect(maps.Keys(failed)))
	cfg := simConfigFor(seed, steps)
	cfg.trace = true
	s, err := runSim(cfg)
	if err == nil {
		t.Fatalf("seed %d failed (%v) but passes when replayed: the simulation is not deterministic", seed, failed[seed])
	}
	tail := s.trace[max(0, len(s.trace)-80):]
	steps = min(steps, s.step) // schedules are prefixes of each other: fewer steps, same failure
	t.Fatalf("seed %d (%+v): %v\nreplay: STRATA_SIM_SEED=%d STRATA_SIM_STEPS=%d go test -run 'TestSimulation$' -v ./safekeeper/acceptor/\nlast events:\n%s",
		seed, cfg, err, seed, steps, strings.Join(tail, "\n"))
}

// TestSimulationCatchesMutants breaks the system in ways the invariants must
// notice, so that a quiet oracle means something.
func TestSimulationCatchesMutants(t *testing.T) {
	for _, tc := range []struct{ mutant, want string }{
		{"lying-fsync", "acknowledged"},                        // flush_lsn reported before the WAL is durable
		{"lost-control-write", "went back"},                    // the control file loses its last write in a crash
		{"refused-vote-counts", "election safety"},             // the proposer counts refused votes
		{"eager-commit", "past anything a proposer committed"}, // the proposer sends its WAL end as commit_lsn
	} {
		var err error
		seed := uint64(1)
		for ; seed <= 200 && err == nil; seed++ {
			cfg := simConfigFor(seed, 300)
			cfg.mutant = tc.mutant
			_, err = runSim(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mutant %s: got %v; want a failure mentioning %q", tc.mutant, err, tc.want)
			continue
		}
		t.Logf("mutant %s caught at seed %d: %v", tc.mutant, seed-1, err)
	}
}
