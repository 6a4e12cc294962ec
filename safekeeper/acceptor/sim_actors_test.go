package acceptor

// The actors of the simulation in sim_test.go: acceptors and proposers and
// the messages between them.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/walproposer"
)

// ---- acceptors ----

func (s *sim) deliverToAcceptor(c *simConn) {
	m := c.toAcc[0]
	c.toAcc = c.toAcc[1:]
	x := c.acc
	a := x.a
	s.logf("sk%d <- p%d %s%s", x.idx, c.p.inst, fmtMsg(m), zombieTag(c))
	var reply pamsg.AcceptorMessage
	var err error
	switch m := m.(type) {
	case *pamsg.ProposerGreeting:
		var r *pamsg.AcceptorGreeting
		if r, err = a.Greeting(m); r != nil {
			reply = r
		}
	case *pamsg.VoteRequest:
		var r *pamsg.VoteResponse
		if r, err = a.Vote(m); r != nil {
			s.acked(x, r.FlushLSN, r.TermHistory.LastTerm())
			reply = r
		}
	case *pamsg.ProposerElected:
		err = a.Elected(m)
	case *pamsg.AppendRequest:
		var r *pamsg.AppendResponse
		r, err = a.Append(m, false)
		if err == nil {
			c.dirty = true
		}
		if r != nil {
			s.acked(x, r.FlushLSN, a.LastLogTerm())
			reply = r
		}
	}
	if err != nil {
		s.acceptorError(c, err)
		return
	}
	s.checkAcceptor(x)
	if reply != nil {
		s.logf("sk%d -> p%d %s%s", x.idx, c.p.inst, fmtMsg(reply), zombieTag(c))
		if !c.zombie {
			c.toProp = append(c.toProp, reply)
		}
		if r, ok := reply.(*pamsg.AppendResponse); ok {
			c.lastResp = r
		}
	}
	// The worker flushes when its queue runs dry; under a steady stream a
	// ticker or the unflushed-bytes bound does it.
	if c.dirty {
		p := 0.1
		if len(c.toAcc) == 0 {
			p = 0.8
		}
		if s.rng.Float64() < p {
			s.flushConn(c)
		}
	}
	if c.zombie && len(c.toAcc) == 0 {
		s.remove(c, true)
	}
}

func zombieTag(c *simConn) string {
	if c.zombie {
		return " (dead conn)"
	}
	return ""
}

func (s *sim) flushConn(c *simConn) {
	x := c.acc
	r, err := x.a.FlushWAL()
	if err != nil {
		s.acceptorError(c, err)
		return
	}
	c.dirty = false
	s.acked(x, r.FlushLSN, x.a.LastLogTerm())
	s.checkAcceptor(x)
	s.logf("sk%d -> p%d %s (FlushWAL)%s", x.idx, c.p.inst, fmtMsg(r), zombieTag(c))
	if !c.zombie {
		c.toProp = append(c.toProp, r)
	}
	c.lastResp = r
}

// acceptorError ends the connection, as any error of the real worker does.
// ErrFatal means an invariant broke inside the acceptor.
func (s *sim) acceptorError(c *simConn, err error) {
	if errors.Is(err, ErrFatal) {
		s.failf("safekeeper %d: %v", c.acc.idx, err)
	}
	s.stats["safekeeper error: "+errorClass(err)]++
	s.logf("sk%d error, closing conn %d: %v", c.acc.idx, c.id, err)
	s.checkAcceptor(c.acc)
	s.detach(c)
	s.remove(c, false)
}

// errorClass strips the numbers from an error so that errors can be counted by kind.
func errorClass(err error) string {
	msg := err.Error()
	if i := strings.IndexAny(msg, "0123456789"); i > 0 {
		msg = msg[:i]
	}
	return strings.TrimSpace(msg)
}

// acked records a flush LSN the safekeeper reported: it must survive reboots
// until a newer term truncates it.
func (s *sim) acked(x *simAcceptor, flush lsn.LSN, logTerm pamsg.Term) {
	if flush == 0 {
		return // a term-only AppendResponse
	}
	x.acked = max(x.acked, flush)
	x.ackedLogTerm = max(x.ackedLogTerm, logTerm)
}

// onTruncate checks a truncation before the WAL store does it. Elected
// truncates at the highest common point. That may cut acknowledged WAL only
// when the electing term is newer than every term the acknowledged WAL was
// written in: the acknowledged tail then is an uncommitted divergent one. A
// proposer of the same term (reconnecting) always finds the common point at
// or past what was acknowledged.
func (s *sim) onTruncate(x *simAcceptor, end lsn.LSN) {
	a := x.a
	if c := max(a.CommitLSN(), x.maxCommit); end < c {
		s.failf("safekeeper %d truncates WAL at %v, below its commit_lsn %v", x.idx, end, c)
	}
	if end < x.wal.write {
		s.stats["truncations of a WAL tail"]++
		s.logf("sk%d truncates [%v, %v) in term %d", x.idx, end, x.wal.write, a.Term())
	}
	if end < x.acked {
		if a.Term() <= x.ackedLogTerm {
			s.failf("safekeeper %d: ProposerElected of term %d truncates at %v, below flush_lsn %v acknowledged with last log term %d",
				x.idx, a.Term(), end, x.acked, x.ackedLogTerm)
		}
		s.stats["truncations below an acknowledged flush_lsn (newer term)"]++
		x.acked = end
	}
}

// crashAcceptor kills a safekeeper: its connections die with it and its
// unflushed WAL is lost. It restarts after down steps (at once if 0).
func (s *sim) crashAcceptor(x *simAcceptor, down int) {
	s.stats["safekeeper crashes"]++
	s.logf("sk%d crashes (down %d steps; write %v flush %v)", x.idx, down, x.wal.write, x.wal.flush)
	for _, c := range slices.Clone(s.conns) {
		if c.acc == x {
			s.detach(c)
			s.remove(c, false)
		}
	}
	x.wal.memWAL = x.wal.memWAL.reboot()
	x.up = false
	x.restartAt = s.step + down
	if down == 0 {
		s.restartAcceptor(x)
	}
}

func (s *sim) restartDue() {
	for _, x := range s.accs {
		if !x.up && s.step >= x.restartAt {
			s.restartAcceptor(x)
		}
	}
}

func (s *sim) restartAcceptor(x *simAcceptor) {
	state := newState()
	if n := len(x.ctrl.persisted); n > 0 {
		state = x.ctrl.last()
		if s.cfg.mutant == "lost-control-write" && n > 1 {
			state = x.ctrl.persisted[n-2]
		}
	}
	x.a = New(id.NodeID(x.idx+1), state, x.wal, x.ctrl)
	x.up = true
	if x.a.CommitLSN() < x.persistedCommit {
		s.failf("safekeeper %d: persisted commit_lsn went back from %v to %v across a restart", x.idx, x.persistedCommit, x.a.CommitLSN())
	}
	x.lastCommit = x.a.CommitLSN()
	s.logf("sk%d restarts: term %d flush %v commit %v", x.idx, x.a.Term(), x.a.FlushLSN(), x.a.CommitLSN())
	s.checkAcceptor(x)
}

// gossip applies what the broker knows of one safekeeper, possibly stale,
// to another (SK §7.3): the commit LSN only if the last log terms match.
func (s *sim) gossip() {
	y := s.pickAcceptor(func(y *simAcceptor) bool { return y.up })
	x := s.pickAcceptor(func(x *simAcceptor) bool { return x.up && x != y })
	if x == nil || y == nil {
		return
	}
	if s.rng.IntN(2) == 0 {
		y.published.lastLogTerm, y.published.commit, y.published.peerHorizon = y.a.LastLogTerm(), y.a.CommitLSN(), y.a.PeerHorizonLSN()
	}
	info := y.published
	x.a.AdvancePeerHorizonLSN(info.peerHorizon)
	if info.commit != 0 && info.lastLogTerm == x.a.LastLogTerm() && info.commit > x.a.CommitLSN() {
		s.logf("sk%d learns commit %v from sk%d (last log term %d)", x.idx, info.commit, y.idx, info.lastLogTerm)
		if err := x.a.UpdateCommitLSN(info.commit); err != nil {
			s.failf("safekeeper %d: commit_lsn from peer: %v", x.idx, err)
		}
	}
	s.checkAcceptor(x)
}

// diskFault makes one control-file write or WAL fsync of a safekeeper fail
// while it handles its next message.
func (s *sim) diskFault() {
	c := s.pickConn(func(c *simConn) bool { return len(c.toAcc) > 0 || c.dirty })
	if c == nil {
		return
	}
	s.stats["disk faults"]++
	x := c.acc
	if s.rng.IntN(2) == 0 {
		x.ctrl.fail = true
		s.logf("sk%d: control file writes fail", x.idx)
	} else {
		x.wal.failOn = "flush"
		s.logf("sk%d: WAL fsync fails", x.idx)
	}
	if len(c.toAcc) > 0 {
		s.deliverToAcceptor(c)
	} else {
		s.flushConn(c)
	}
	x.ctrl.fail = false
	x.wal.failOn = ""
}

// ---- proposers ----

func (s *sim) startProposer() {
	p := &simProposer{
		inst:      len(s.props) + 1,
		st:        walproposer.NewState(s.cfg.n, simStartLSN),
		alive:     true,
		conns:     make([]*simConn, s.cfg.n),
		connectAt: make([]int, s.cfg.n),
	}
	for i := range p.connectAt {
		p.connectAt[i] = s.step + s.rng.IntN(4)
	}
	s.props = append(s.props, p)
	s.stats["proposer instances"]++
	s.logf("p%d starts", p.inst)
}

func (s *sim) stopProposer(p *simProposer, why string) {
	s.logf("p%d stops: %s", p.inst, why)
	p.alive = false
	for _, c := range p.conns {
		if c != nil {
			s.cut(c)
		}
	}
}

func (s *sim) connect() {
	type cand struct {
		p *simProposer
		i int
	}
	var cs []cand
	for _, p := range s.props {
		if !p.alive {
			continue
		}
		for i, c := range p.conns {
			if c == nil && s.accs[i].up && s.step >= p.connectAt[i] {
				cs = append(cs, cand{p, i})
			}
		}
	}
	if len(cs) == 0 {
		return
	}
	k := cs[s.rng.IntN(len(cs))]
	s.nextConn++
	c := &simConn{id: s.nextConn, p: k.p, acc: s.accs[k.i]}
	g := &pamsg.ProposerGreeting{TenantID: tenant, TimelineID: timeline, PgVersion: 150004, SystemID: 42, WalSegSize: 16 << 20, PgTimeline: 1}
	if k.p.inst%3 == 0 {
		g.PgVersion, g.SystemID = 0, 0 // as --sync-safekeepers greets
	}
	c.toAcc = append(c.toAcc, g)
	k.p.conns[k.i] = c
	s.conns = append(s.conns, c)
	s.logf("p%d connects to sk%d (conn %d)", k.p.inst, k.i, c.id)
}

// cut ends a connection on the proposer's side. The messages in flight are
// lost, or (half the time) a prefix of them still reaches the safekeeper,
// which processes them before it sees the end of the connection.
func (s *sim) cut(c *simConn) {
	s.detach(c)
	if n := len(c.toAcc); n > 0 && s.rng.IntN(2) == 0 {
		c.toAcc = c.toAcc[:s.rng.IntN(n+1)]
	} else {
		c.toAcc = nil
	}
	if len(c.toAcc) == 0 {
		s.remove(c, true)
		return
	}
	c.zombie = true
	s.logf("cut conn %d (p%d–sk%d); %d messages still reach sk%d", c.id, c.p.inst, c.acc.idx, len(c.toAcc), c.acc.idx)
}

// detach makes the proposer forget the connection; it reconnects later.
func (s *sim) detach(c *simConn) {
	c.toProp, c.streaming = nil, false
	p, i := c.p, c.acc.idx
	if p.conns[i] != c {
		return
	}
	p.conns[i] = nil
	if p.alive {
		p.st.Disconnected(i)
		p.connectAt[i] = s.step + 1 + s.rng.IntN(8)
	}
}

// remove ends the safekeeper's side of the connection. When it sees the
// end of the stream (not on its own error or crash) the worker flushes what
// the connection wrote.
func (s *sim) remove(c *simConn, finalFlush bool) {
	s.conns = slices.DeleteFunc(s.conns, func(o *simConn) bool { return o == c })
	if finalFlush && c.dirty && c.acc.up {
		if _, err := c.acc.a.FlushWAL(); errors.Is(err, ErrFatal) {
			s.failf("safekeeper %d: %v", c.acc.idx, err)
		}
		s.checkAcceptor(c.acc)
	}
	c.toAcc, c.dirty = nil, false
	if c.zombie || finalFlush {
		s.logf("sk%d: conn %d ended", c.acc.idx, c.id)
	}
}

func (s *sim) deliverToProposer(c *simConn) {
	m := c.toProp[0]
	c.toProp = c.toProp[1:]
	p, i := c.p, c.acc.idx
	s.logf("p%d <- sk%d %s", p.inst, i, fmtMsg(m))
	var acts []walproposer.Action
	switch m := m.(type) {
	case *pamsg.AcceptorGreeting:
		acts = p.st.Greeted(i, *m)
	case *pamsg.VoteResponse:
		v := *m
		if s.cfg.mutant == "refused-vote-counts" && !v.VoteGiven {
			v.VoteGiven, v.Term = true, p.st.Term()
		}
		acts = p.st.Voted(i, v)
	case *pamsg.AppendResponse:
		acts = p.st.Acked(i, *m)
	}
	s.apply(p, acts)
}

func (s *sim) apply(p *simProposer, acts []walproposer.Action) {
	for _, act := range acts {
		if !p.alive {
			return
		}
		switch a := act.(type) {
		case walproposer.SendVoteRequest:
			if c := p.conns[a.Peer]; c != nil {
				m := a.Msg
				c.toAcc = append(c.toAcc, &m)
			}
		case walproposer.SendElected:
			c := p.conns[a.Peer]
			if c == nil {
				continue
			}
			m := a.Msg
			m.TermHistory = m.TermHistory.Clone()
			c.toAcc = append(c.toAcc, &m)
			if m.StartStreamingAt > p.walEnd() {
				s.failf("p%d must stream to sk%d from %v, beyond its WAL end %v", p.inst, a.Peer, m.StartStreamingAt, p.walEnd())
			}
			c.streaming, c.term, c.pos = true, m.Term, m.StartStreamingAt
			s.logf("p%d -> sk%d %s", p.inst, a.Peer, fmtMsg(&m))
		case walproposer.TermElected:
			s.onElected(p, a)
		case walproposer.CommitLSNAdvanced:
			s.onCommit(p, a.LSN)
		case walproposer.Fatal:
			s.stats["proposers stopped by Fatal"]++
			s.stopProposer(p, a.Err.Error())
		}
	}
}

// onElected checks election safety and recovers the WAL below the term
// start from the donor, as the compute does with a recovery-mode
// START_REPLICATION (term='T'): it is served only while the donor is still
// in term T, and the donor must still hold what it voted with.
func (s *sim) onElected(p *simProposer, e walproposer.TermElected) {
	s.stats["elections"]++
	s.logf("p%d elected in term %d: start %v, donor sk%d, history %s", p.inst, e.Term, e.TermStartLSN, e.Donor, fmtHistory(e.History))
	if prev, ok := s.electedBy[e.Term]; ok && prev != p.inst {
		s.failf("election safety: term %d elected both p%d and p%d", e.Term, prev, p.inst)
	}
	s.electedBy[e.Term] = p.inst
	if e.History[0].LSN != simStartLSN {
		s.failf("p%d's history %s does not begin at the timeline start %v", p.inst, fmtHistory(e.History), simStartLSN)
	}
	// Leader completeness: everything an earlier term committed (even if
	// the proposer learns of it only later, see onCommit) lies below the
	// new term's start.
	var lower lsn.LSN
	var lowerTerm pamsg.Term
	for t, c := range s.termCommit {
		if t < e.Term && (c > lower || c == lower && t < lowerTerm) {
			lower, lowerTerm = c, t
		}
	}
	if lower > e.TermStartLSN {
		s.failf("leader completeness: term %d starts at %v, below %v committed in term %d", e.Term, e.TermStartLSN, lower, lowerTerm)
	}
	s.termStart[e.Term] = e.TermStartLSN
	p.elected, p.term, p.termStart = true, e.Term, e.TermStartLSN
	defer func() {
		if n := int(lower - simStartLSN); p.alive && n > 0 && !bytes.Equal(p.wal[:n], s.committed[:n]) {
			s.failf("leader completeness: p%d recovered WAL below %v that differs from the committed WAL", p.inst, lower)
		}
	}()
	if e.TermStartLSN == simStartLSN {
		// A brand-new timeline: the compute's basebackup is all there is.
		p.wal = nil
		return
	}
	d := s.accs[e.Donor]
	if !d.up || d.a.Term() != e.Term {
		s.stats["donor fetches refused"]++
		s.stopProposer(p, fmt.Sprintf("cannot recover WAL from donor sk%d (up %v)", e.Donor, d.up))
		return
	}
	if d.a.FlushLSN() < e.TermStartLSN {
		s.failf("donor sk%d voted with flush_lsn %v in term %d but now has only %v", e.Donor, e.TermStartLSN, e.Term, d.a.FlushLSN())
	}
	w, ok := d.walView(simStartLSN, e.TermStartLSN)
	if !ok {
		s.failf("donor sk%d does not hold WAL [%v, %v) (base %v, write %v)", e.Donor, simStartLSN, e.TermStartLSN, d.wal.base, d.wal.write)
	}
	p.wal = slices.Clone(w)
}

// onCommit is log safety: the WAL a proposer holds up to its new commit LSN
// must agree with everything committed before, which it then extends.
func (s *sim) onCommit(p *simProposer, c lsn.LSN) {
	s.stats["commit advances"]++
	s.logf("p%d commit -> %v", p.inst, c)
	if c < p.commit {
		s.failf("p%d's commit LSN went back from %v to %v", p.inst, p.commit, c)
	}
	p.commit = c
	if !p.elected || c > p.walEnd() {
		s.failf("p%d committed up to %v but holds WAL only up to %v", p.inst, c, p.walEnd())
	}
	s.termCommit[p.term] = max(s.termCommit[p.term], c)
	for t, start := range s.termStart {
		if t > p.term && c > start {
			s.failf("leader completeness: p%d commits %v in term %d, but term %d was elected starting at %v", p.inst, c, p.term, t, start)
		}
	}
	n := int(c - simStartLSN)
	overlap := min(n, len(s.committed))
	if i := firstDiff(p.wal[:overlap], s.committed[:overlap]); i >= 0 {
		s.failf("log safety: p%d (term %d) commits %v, but its WAL at %v differs from what was committed before",
			p.inst, p.term, c, simStartLSN+lsn.LSN(i))
	}
	if n > len(s.committed) {
		s.committed = append(s.committed, p.wal[len(s.committed):n]...)
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// stream sends one to three AppendRequests (heartbeats when nothing is new).
func (s *sim) stream(c *simConn) {
	p := c.p
	for k := range 1 + s.rng.IntN(3) {
		n := 0
		if end := p.walEnd(); end > c.pos {
			n = min(int(end-c.pos), 1+s.rng.IntN(s.cfg.maxMsg))
		}
		if n == 0 && k > 0 {
			return
		}
		off := int(c.pos - simStartLSN)
		m := &pamsg.AppendRequest{
			Term: c.term, BeginLSN: c.pos, EndLSN: c.pos + lsn.LSN(n),
			CommitLSN: p.st.CommitLSN(), TruncateLSN: p.st.TruncateLSN(),
			WAL: slices.Clone(p.wal[off : off+n]),
		}
		if s.cfg.mutant == "eager-commit" {
			m.CommitLSN = p.walEnd()
		}
		s.logf("p%d -> sk%d %s", p.inst, c.acc.idx, fmtMsg(m))
		c.toAcc = append(c.toAcc, m)
		c.pos += lsn.LSN(n)
	}
}

// generate appends a chunk of new WAL whose bytes name the proposer and term.
func (s *sim) generate(p *simProposer) {
	n := 1 + s.rng.IntN(s.cfg.maxChunk)
	start := p.walEnd()
	for k := range n {
		p.wal = append(p.wal, walByte(p.inst, p.term, start+lsn.LSN(k)))
	}
	s.logf("p%d generates [%v, %v)", p.inst, start, p.walEnd())
}

func walByte(inst int, term pamsg.Term, l lsn.LSN) byte {
	x := uint64(inst)*0x9E3779B97F4A7C15 ^ uint64(term)*0xC2B2AE3D27D4EB4F ^ uint64(l)*0x165667B19E3779F9
	x ^= x >> 29
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 32
	return byte(x)
}
