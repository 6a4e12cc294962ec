package walproposer

import (
	"errors"
	"reflect"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

func th(pairs ...uint64) pamsg.TermHistory {
	var h pamsg.TermHistory
	for i := 0; i+1 < len(pairs); i += 2 {
		h = append(h, pamsg.TermSwitch{Term: pamsg.Term(pairs[i]), LSN: lsn.LSN(pairs[i+1])})
	}
	return h
}

func find[T Action](actions []Action) []T {
	var out []T
	for _, a := range actions {
		if t, ok := a.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// The scenario of SK §2.8: one safekeeper in term 2 with WAL up to 0x539.
func TestSyncSafekeepersVector(t *testing.T) {
	s := NewState(1, 0)
	acts := s.Greeted(0, pamsg.AcceptorGreeting{NodeID: 1, Term: 2})
	votes := find[SendVoteRequest](acts)
	if len(votes) != 1 || votes[0].Msg.Term != 3 {
		t.Fatalf("vote requests = %+v; want one for term 3", acts)
	}
	acts = s.Voted(0, pamsg.VoteResponse{Term: 3, VoteGiven: true, FlushLSN: 0x539, TruncateLSN: 0x539, TermHistory: th(2, 0x539)})
	el := find[TermElected](acts)
	if len(el) != 1 || el[0].TermStartLSN != 0x539 || el[0].TruncateLSN != 0x539 {
		t.Fatalf("elected = %+v", acts)
	}
	if !reflect.DeepEqual(el[0].History, th(2, 0x539, 3, 0x539)) {
		t.Fatalf("history = %v", el[0].History)
	}
	se := find[SendElected](acts)
	if len(se) != 1 || se[0].Msg.StartStreamingAt != 0x539 {
		t.Fatalf("ProposerElected = %+v", se)
	}
}

func TestElectionPicksDonorAndReconcilesStragglers(t *testing.T) {
	s := NewState(3, 0x100)
	s.Greeted(0, pamsg.AcceptorGreeting{NodeID: 1, Term: 1})
	acts := s.Greeted(1, pamsg.AcceptorGreeting{NodeID: 2, Term: 2})
	if len(find[SendVoteRequest](acts)) != 2 || s.Term() != 3 {
		t.Fatalf("campaign: term %d, actions %+v", s.Term(), acts)
	}
	// Safekeeper 1 has a longer tail of term 1; safekeeper 2 has term 2.
	s.Voted(0, pamsg.VoteResponse{Term: 3, VoteGiven: true, FlushLSN: 0x900, TermHistory: th(1, 0x100)})
	acts = s.Voted(1, pamsg.VoteResponse{Term: 3, VoteGiven: true, FlushLSN: 0x700, TermHistory: th(1, 0x100, 2, 0x500)})
	el := find[TermElected](acts)
	if len(el) != 1 || el[0].Donor != 1 || el[0].TermStartLSN != 0x700 {
		t.Fatalf("elected = %+v; want donor 1 (higher last log term) at 0x700", el)
	}
	se := find[SendElected](acts)
	starts := map[int]lsn.LSN{}
	for _, e := range se {
		starts[e.Peer] = e.Msg.StartStreamingAt
	}
	// Safekeeper 0's term-1 tail beyond 0x500 is not in the new history: truncate there.
	if starts[0] != 0x500 || starts[1] != 0x700 {
		t.Fatalf("start_streaming_at = %v", starts)
	}
	// A late safekeeper refuses its vote (it voted already) but is reconciled.
	acts = s.Greeted(2, pamsg.AcceptorGreeting{NodeID: 3, Term: 3})
	if len(find[SendVoteRequest](acts)) != 1 {
		t.Fatalf("late greeting: %+v", acts)
	}
	acts = s.Voted(2, pamsg.VoteResponse{Term: 3, VoteGiven: false, FlushLSN: 0, TermHistory: nil})
	se = find[SendElected](acts)
	if len(se) != 1 || se[0].Msg.StartStreamingAt != 0x100 {
		t.Fatalf("late safekeeper elected = %+v; want start at the history start 0x100", se)
	}
}

func TestCommitLSNNeedsTermStart(t *testing.T) {
	s := NewState(3, 0)
	for i := 0; i < 3; i++ {
		s.Greeted(i, pamsg.AcceptorGreeting{NodeID: 1, Term: 0})
	}
	for i := 0; i < 3; i++ {
		s.Voted(i, pamsg.VoteResponse{Term: 1, VoteGiven: true, FlushLSN: 0x1000, TermHistory: th(0, 0x800)})
	}
	if s.TermStartLSN() != 0x1000 {
		t.Fatalf("term start = %v", s.TermStartLSN())
	}
	// One safekeeper past the term start is not a majority.
	if acts := s.Acked(0, pamsg.AppendResponse{Term: 1, FlushLSN: 0x1200}); len(acts) != 0 {
		t.Fatalf("commit with one ack: %+v", acts)
	}
	// Acks below the term start do not count.
	if acts := s.Acked(1, pamsg.AppendResponse{Term: 1, FlushLSN: 0xF00}); len(acts) != 0 {
		t.Fatalf("commit with an ack below the term start: %+v", acts)
	}
	acts := s.Acked(1, pamsg.AppendResponse{Term: 1, FlushLSN: 0x1100})
	c := find[CommitLSNAdvanced](acts)
	if len(c) != 1 || c[0].LSN != 0x1100 {
		t.Fatalf("commit = %+v; want 0x1100 (second highest)", acts)
	}
	// A disconnected safekeeper no longer counts.
	s.Disconnected(0)
	if acts := s.Acked(1, pamsg.AppendResponse{Term: 1, FlushLSN: 0x1300}); len(acts) != 0 {
		t.Fatalf("commit after a disconnect: %+v", acts)
	}
}

func TestHigherTermIsFatal(t *testing.T) {
	s := NewState(1, 0)
	s.Greeted(0, pamsg.AcceptorGreeting{Term: 4})
	acts := s.Voted(0, pamsg.VoteResponse{Term: 9, VoteGiven: false})
	f := find[Fatal](acts)
	if len(f) != 1 || !errors.Is(f[0].Err, ErrHigherTerm) {
		t.Fatalf("actions = %+v", acts)
	}
	s = NewState(1, 0x10)
	s.Greeted(0, pamsg.AcceptorGreeting{Term: 0})
	s.Voted(0, pamsg.VoteResponse{Term: 1, VoteGiven: true})
	acts = s.Acked(0, pamsg.AppendResponse{Term: 2})
	if f := find[Fatal](acts); len(f) != 1 {
		t.Fatalf("append response of a higher term: %+v", acts)
	}
}

func TestNewTimelineStartsAtStartLSN(t *testing.T) {
	s := NewState(1, 0x2000028)
	s.Greeted(0, pamsg.AcceptorGreeting{Term: 0})
	acts := s.Voted(0, pamsg.VoteResponse{Term: 1, VoteGiven: true})
	el := find[TermElected](acts)
	if len(el) != 1 || el[0].TermStartLSN != 0x2000028 || !reflect.DeepEqual(el[0].History, th(1, 0x2000028)) {
		t.Fatalf("elected = %+v", acts)
	}
}
