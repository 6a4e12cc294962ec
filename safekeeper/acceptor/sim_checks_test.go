package acceptor

// The invariants the simulation in sim_test.go checks after every step, and
// the trace formatting its failures print.

import (
	"fmt"
	"strings"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// ---- invariants ----

func (s *sim) checkAll() {
	for _, x := range s.accs {
		if x.up {
			s.checkAcceptor(x)
		}
	}
}

// checkAcceptor checks one safekeeper against SK §3.12.
func (s *sim) checkAcceptor(x *simAcceptor) {
	a := x.a
	c, f := a.CommitLSN(), a.FlushLSN()
	if c < x.lastCommit {
		s.failf("safekeeper %d: commit_lsn went back from %v to %v", x.idx, x.lastCommit, c)
	}
	x.lastCommit = c
	x.maxCommit = max(x.maxCommit, c)
	if c > f {
		s.failf("safekeeper %d: commit_lsn %v > flush_lsn %v", x.idx, c, f)
	}
	pc := a.PersistedCommitLSN()
	if pc > c {
		s.failf("safekeeper %d: persisted commit_lsn %v > in-memory %v", x.idx, pc, c)
	}
	if pc < x.persistedCommit {
		s.failf("safekeeper %d: persisted commit_lsn went back from %v to %v", x.idx, x.persistedCommit, pc)
	}
	x.persistedCommit = pc
	if t := a.Term(); t < x.term {
		s.failf("safekeeper %d: term went back from %d to %d", x.idx, x.term, t)
	} else {
		x.term = t
	}
	if f < x.acked {
		s.failf("safekeeper %d: flush_lsn %v is below the acknowledged %v (no newer term truncated it)", x.idx, f, x.acked)
	}
	// truncate_lsn (the peer horizon) never runs ahead of the commit LSN.
	if h, end := a.PeerHorizonLSN(), simStartLSN+lsn.LSN(len(s.committed)); h > end {
		s.failf("safekeeper %d: peer horizon (truncate_lsn) %v is past the committed end %v", x.idx, h, end)
	}
	// WAL below the highest commit_lsn this safekeeper ever had is durable
	// (commit_lsn ≤ flush_lsn) and committed: it must stay, even after a
	// restart brought the in-memory commit_lsn back to the persisted one.
	mc := x.maxCommit
	if mc <= simStartLSN {
		return
	}
	n := int(mc - simStartLSN)
	if n > len(s.committed) {
		s.failf("safekeeper %d: commit_lsn %v is past anything a proposer committed (%v)", x.idx, mc, simStartLSN+lsn.LSN(len(s.committed)))
	}
	w, ok := x.walView(simStartLSN, mc)
	if !ok {
		s.failf("safekeeper %d: lost WAL below its commit_lsn %v (base %v, write %v)", x.idx, mc, x.wal.base, x.wal.write)
	}
	if i := firstDiff(w, s.committed[:n]); i >= 0 {
		s.failf("log safety: safekeeper %d's WAL at %v (below its commit_lsn %v) differs from the committed WAL", x.idx, simStartLSN+lsn.LSN(i), mc)
	}
}

// walView returns the safekeeper's WAL in [from, to), not copied.
func (x *simAcceptor) walView(from, to lsn.LSN) ([]byte, bool) {
	w := x.wal.memWAL
	if from == to {
		return []byte{}, true
	}
	if w.write == 0 || from < w.base || to > w.write {
		return nil, false
	}
	return w.data[from-w.base : to-w.base], true
}

// ---- trace formatting ----

func fmtHistory(h pamsg.TermHistory) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range h {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d@%v", e.Term, e.LSN)
	}
	b.WriteByte(']')
	return b.String()
}

func fmtMsg(m any) string {
	switch m := m.(type) {
	case *pamsg.ProposerGreeting:
		return "Greeting"
	case *pamsg.AcceptorGreeting:
		return fmt.Sprintf("AcceptorGreeting{term %d}", m.Term)
	case *pamsg.VoteRequest:
		return fmt.Sprintf("VoteRequest{term %d}", m.Term)
	case *pamsg.VoteResponse:
		return fmt.Sprintf("VoteResponse{term %d given %v flush %v truncate %v history %s}", m.Term, m.VoteGiven, m.FlushLSN, m.TruncateLSN, fmtHistory(m.TermHistory))
	case *pamsg.ProposerElected:
		return fmt.Sprintf("Elected{term %d start %v history %s}", m.Term, m.StartStreamingAt, fmtHistory(m.TermHistory))
	case *pamsg.AppendRequest:
		return fmt.Sprintf("Append{term %d [%v, %v) commit %v truncate %v}", m.Term, m.BeginLSN, m.EndLSN, m.CommitLSN, m.TruncateLSN)
	case *pamsg.AppendResponse:
		return fmt.Sprintf("AppendResponse{term %d flush %v commit %v}", m.Term, m.FlushLSN, m.CommitLSN)
	}
	return fmt.Sprintf("%T", m)
}

func (s *sim) describeProposers() string {
	var b strings.Builder
	for _, p := range s.props {
		if p.alive {
			fmt.Fprintf(&b, "p%d{%s term %d commit %v wal end %v} ", p.inst, p.st.Phase(), p.st.Term(), p.st.CommitLSN(), p.walEnd())
		}
	}
	return b.String()
}
