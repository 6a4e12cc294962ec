package pamsg

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The byte vectors of SK §2.8 (Neon's test_simple_sync_safekeepers, protocol v3).
func TestSyncSafekeepersVectors(t *testing.T) {
	ttid := id.MustParse("9e4c8f36063c6c6e93bc20d65a820f3d")
	greet := &ProposerGreeting{TenantID: ttid, TimelineID: ttid, PgVersion: 150004, WalSegSize: 16 << 20}
	got, err := AppendProposerMessage(nil, V3, greet)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{'g'}, []byte("9e4c8f36063c6c6e93bc20d65a820f3d\x009e4c8f36063c6c6e93bc20d65a820f3d\x00")...)
	want = append(want, unhex(t, "00000000 00000000 00000000 000249F4 0000000000000000 01000000")...)
	if !bytes.Equal(got, want) {
		t.Fatalf("greeting:\n got %x\nwant %x", got, want)
	}

	got, _ = AppendProposerMessage(nil, V3, &VoteRequest{Term: 3})
	if want := unhex(t, "76 00000000 0000000000000003"); !bytes.Equal(got, want) {
		t.Fatalf("vote request: got %x want %x", got, want)
	}

	ag := unhex(t, "67 0000000000000001 00000000 00000000 00000000 0000000000000002")
	m, err := DecodeAcceptorMessage(V3, ag)
	if err != nil {
		t.Fatal(err)
	}
	if g := m.(*AcceptorGreeting); g.NodeID != 1 || g.Term != 2 || g.Mconf.Generation != 0 || g.Mconf.Members != nil {
		t.Fatalf("acceptor greeting = %+v", g)
	}
	if re, _ := AppendAcceptorMessage(nil, V3, m); !bytes.Equal(re, ag) {
		t.Fatalf("acceptor greeting re-encoded %x want %x", re, ag)
	}

	vr := unhex(t, "76 00000000 0000000000000003 01 0000000000000539 0000000000000539 00000001 0000000000000002 0000000000000539")
	m, err = DecodeAcceptorMessage(V3, vr)
	if err != nil {
		t.Fatal(err)
	}
	wantVote := &VoteResponse{Term: 3, VoteGiven: true, FlushLSN: 0x539, TruncateLSN: 0x539, TermHistory: TermHistory{{2, 0x539}}}
	if !reflect.DeepEqual(m, wantVote) {
		t.Fatalf("vote response = %+v", m)
	}
	if re, _ := AppendAcceptorMessage(nil, V3, wantVote); !bytes.Equal(re, vr) {
		t.Fatalf("vote response re-encoded %x want %x", re, vr)
	}
	// The C walproposer consumes replies exactly: one extra byte is an error.
	if _, err := DecodeAcceptorMessage(V3, append(vr, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func TestProposerRoundTrip(t *testing.T) {
	tenant, timeline := id.Generate(), id.Generate()
	mconf := Configuration{Generation: 4, Members: []SafekeeperID{{1, "sk1", 5454}, {2, "sk2", 5455}}, NewMembers: []SafekeeperID{{3, "sk3", 5456}}}
	wal := bytes.Repeat([]byte{0xAB}, 100)
	for _, v := range []Version{V2, V3} {
		msgs := []ProposerMessage{
			&ProposerGreeting{TenantID: tenant, TimelineID: timeline, PgVersion: 150004, SystemID: 7, WalSegSize: 16 << 20},
			&VoteRequest{Term: 9},
			&ProposerElected{Term: 9, StartStreamingAt: 0x1000, TermHistory: TermHistory{{1, 0x100}, {9, 0x1000}}},
			&AppendRequest{Term: 9, BeginLSN: 0x1000, EndLSN: 0x1064, CommitLSN: 0x1000, TruncateLSN: 0x900, WAL: wal},
			&AppendRequest{Term: 9, BeginLSN: 0x1064, EndLSN: 0x1064, CommitLSN: 0x1064},
		}
		if v == V3 {
			msgs = append(msgs, &ProposerGreeting{TenantID: tenant, TimelineID: timeline, Mconf: mconf, PgVersion: 150004, WalSegSize: 16 << 20},
				&VoteRequest{Generation: 4, Term: 10})
		} else {
			msgs[2].(*ProposerElected).TimelineStartLSN = 0x100
		}
		for _, m := range msgs {
			b, err := AppendProposerMessage(nil, v, m)
			if err != nil {
				t.Fatalf("v%d encode %T: %v", v, m, err)
			}
			back, err := DecodeProposerMessage(v, b)
			if err != nil {
				t.Fatalf("v%d decode %T: %v", v, m, err)
			}
			if a, ok := back.(*AppendRequest); ok && len(a.WAL) == 0 {
				a.WAL = nil
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("v%d round trip:\n got %+v\nwant %+v", v, back, m)
			}
		}
	}
}

func TestV2Sizes(t *testing.T) {
	for _, tc := range []struct {
		m    ProposerMessage
		size int
	}{
		{&ProposerGreeting{}, 80},
		{&VoteRequest{}, 32},
		{&AppendRequest{}, 72},
	} {
		b, _ := AppendProposerMessage(nil, V2, tc.m)
		if len(b) != tc.size {
			t.Errorf("v2 %T is %d bytes, want %d", tc.m, len(b), tc.size)
		}
	}
	for _, tc := range []struct {
		m    AcceptorMessage
		size int
	}{
		{&AcceptorGreeting{NodeID: 1, Term: 2}, 24},
		{&AppendResponse{}, 56},
		{&VoteResponse{TermHistory: TermHistory{{1, 2}}}, 8*5 + 4 + 16 + 8},
	} {
		b, _ := AppendAcceptorMessage(nil, V2, tc.m)
		if len(b) != tc.size {
			t.Errorf("v2 %T is %d bytes, want %d", tc.m, len(b), tc.size)
		}
		back, err := DecodeAcceptorMessage(V2, b)
		if err != nil || !reflect.DeepEqual(back, tc.m) {
			t.Errorf("v2 %T round trip = %+v, %v", tc.m, back, err)
		}
	}
	// v2 greeting puts the term first.
	b, _ := AppendAcceptorMessage(nil, V2, &AcceptorGreeting{NodeID: 1, Term: 2})
	if want := unhex(t, "6700000000000000 0200000000000000 0100000000000000"); !bytes.Equal(b, want) {
		t.Fatalf("v2 greeting %x want %x", b, want)
	}
}

func TestAppendResponseV3(t *testing.T) {
	m := &AppendResponse{Generation: 1, Term: 2, FlushLSN: 3, CommitLSN: 4, HSFeedback: HotStandbyFeedback{TS: 5, Xmin: 6, CatalogXmin: 7}}
	b, _ := AppendAcceptorMessage(nil, V3, m)
	if len(b) != 53 {
		t.Fatalf("AppendResponse fixed part is %d bytes, want 53", len(b))
	}
	m.PageserverFeedback = &PageserverFeedback{LastReceivedLSN: 10, DiskConsistentLSN: 9, RemoteConsistentLSN: 8,
		ReplyTime: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), ShardNumber: 2, CorruptionDetected: true}
	b, _ = AppendAcceptorMessage(nil, V3, m)
	back, err := DecodeAcceptorMessage(V3, b)
	if err != nil || !reflect.DeepEqual(back, m) {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}

func TestPageserverFeedbackUnknownKey(t *testing.T) {
	f := PageserverFeedback{LastReceivedLSN: 0x10, RemoteConsistentLSN: 0x20, ReplyTime: time.Unix(1700000000, 0).UTC()}
	b := f.Append(nil)
	// Insert an unknown key with a 3-byte value after the count; bump the count.
	var withUnknown []byte
	withUnknown = append(withUnknown, b[0]+1)
	withUnknown = append(withUnknown, "future_key\x00"...)
	withUnknown = append(withUnknown, 0, 0, 0, 3, 'x', 'y', 'z')
	withUnknown = append(withUnknown, b[1:]...)
	got, err := DecodePageserverFeedback(withUnknown)
	if err != nil || !reflect.DeepEqual(got, f) {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, f)
	}
	// New key names decode too.
	nb := []byte{1}
	nb = append(nb, "remote_consistent_lsn\x00"...)
	nb = append(nb, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x42)
	got, err = DecodePageserverFeedback(nb)
	if err != nil || got.RemoteConsistentLSN != 0x42 {
		t.Fatalf("new key name: %+v, %v", got, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Version
		b    []byte
		want string
	}{
		{"empty", V3, nil, "missing tag"},
		{"unknown tag", V3, []byte{'x'}, "unknown"},
		{"short vote", V3, []byte{'v', 0, 0}, "truncated"},
		{"append end before begin", V3, unhex(t, "61 00000000 0000000000000001 0000000000000010 0000000000000008 0000000000000000 0000000000000000"), "before begin_lsn"},
		{"append too big", V3, unhex(t, "61 00000000 0000000000000001 0000000000000000 0000000000100000 0000000000000000 0000000000000000"), "more than the maximum"},
		{"append short WAL", V3, append(unhex(t, "61 00000000 0000000000000001 0000000000000000 0000000000000010 0000000000000000 0000000000000000"), 1, 2, 3), "truncated"},
		{"greeting bad tenant", V3, []byte("gzz\x00"), "truncated"},
		{"huge term history", V3, unhex(t, "65 00000000 0000000000000001 0000000000000000 7fffffff"), "entries"},
		{"generation without members", V3, append(append([]byte{'g'}, "9e4c8f36063c6c6e93bc20d65a820f3d\x009e4c8f36063c6c6e93bc20d65a820f3d\x00"...), unhex(t, "00000005 00000000 00000000 00000000 0000000000000000 01000000")...), "empty member set"},
		{"bad version", 4, []byte{'g'}, "unsupported"},
		{"v2 short", V2, []byte{'g', 0, 0}, "truncated"},
	} {
		_, err := DecodeProposerMessage(tc.v, tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want it to mention %q", tc.name, err, tc.want)
		}
	}
}

// SK §10.1 oracle 4: find_highest_common_point.
func TestHighestCommonPoint(t *testing.T) {
	for _, tc := range []struct {
		prop, sk TermHistory
		end      lsn.LSN
		want     TermSwitch
		ok       bool
	}{
		{TermHistory{{0, 1}}, TermHistory{{1, 1}, {2, 2}}, 3, TermSwitch{}, false},
		{TermHistory{{1, 10}, {2, 20}, {4, 40}}, TermHistory{{1, 10}, {2, 20}, {3, 30}}, 40, TermSwitch{2, 30}, true},
		{TermHistory{{1, 10}, {2, 20}, {4, 40}}, TermHistory{{1, 10}, {2, 20}}, 32, TermSwitch{2, 32}, true},
		{TermHistory{{1, 10}, {2, 20}}, TermHistory{{1, 10}, {2, 20}}, 32, TermSwitch{2, 32}, true},
	} {
		got, ok, err := HighestCommonPoint(tc.prop, tc.sk, tc.end)
		if err != nil || ok != tc.ok || got != tc.want {
			t.Errorf("HCP(%v, %v, %v) = %v, %v, %v; want %v, %v", tc.prop, tc.sk, tc.end, got, ok, err, tc.want, tc.ok)
		}
	}
	if _, _, err := HighestCommonPoint(TermHistory{{1, 10}}, TermHistory{{1, 11}}, 20); err == nil {
		t.Error("same term at different LSNs accepted")
	}
	if _, _, err := HighestCommonPoint(TermHistory{{1, 10}}, TermHistory{{1, 10}, {2, 30}}, 20); err == nil {
		t.Error("acceptor history beyond its WAL accepted")
	}
	if l, err := StartStreamingAt(TermHistory{{3, 0x500}}, TermHistory{{1, 0x100}}, 0x600); err != nil || l != 0x500 {
		t.Errorf("StartStreamingAt without common point = %v, %v", l, err)
	}
}

func TestTermHistory(t *testing.T) {
	h := TermHistory{{1, 10}, {2, 20}, {3, 30}}
	if got := h.UpTo(20); !reflect.DeepEqual(got, TermHistory{{1, 10}, {2, 20}}) {
		t.Errorf("UpTo(20) = %v", got)
	}
	if got := h.UpTo(5); len(got) != 0 || got.LastTerm() != 0 {
		t.Errorf("UpTo(5) = %v", got)
	}
	if err := (TermHistory{{2, 10}, {1, 20}}).Validate(); err == nil {
		t.Error("decreasing terms accepted")
	}
	if err := (TermHistory{{1, 20}, {2, 10}}).Validate(); err == nil {
		t.Error("decreasing LSNs accepted")
	}
	// UpTo must not let appends alias the original.
	up := h.UpTo(20)
	_ = append(up, TermSwitch{9, 99})
	if h[2].Term != 3 {
		t.Error("UpTo result aliases the original")
	}
}

func FuzzDecodeProposerMessage(f *testing.F) {
	tenant := id.MustParse("9e4c8f36063c6c6e93bc20d65a820f3d")
	for _, v := range []Version{V2, V3} {
		for _, m := range []ProposerMessage{
			&ProposerGreeting{TenantID: tenant, TimelineID: tenant, PgVersion: 150004, WalSegSize: 16 << 20,
				Mconf: Configuration{Generation: 1, Members: []SafekeeperID{{1, "h", 1}}}},
			&VoteRequest{Term: 1},
			&ProposerElected{Term: 1, StartStreamingAt: 8, TermHistory: TermHistory{{1, 8}}},
			&AppendRequest{Term: 1, BeginLSN: 8, EndLSN: 12, WAL: []byte{1, 2, 3, 4}},
		} {
			if v == V2 {
				if g, ok := m.(*ProposerGreeting); ok {
					g.Mconf = Configuration{}
				}
			}
			b, _ := AppendProposerMessage(nil, v, m)
			f.Add(uint8(v), b)
		}
	}
	f.Fuzz(func(t *testing.T, v uint8, b []byte) {
		m, err := DecodeProposerMessage(Version(v), b)
		if err != nil {
			return
		}
		// Whatever decodes must encode again and decode to the same value.
		enc, err := AppendProposerMessage(nil, Version(v), m)
		if err != nil {
			return // e.g. a v3 greeting whose mconf the v2 encoding cannot carry
		}
		back, err := DecodeProposerMessage(Version(v), enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if a, ok := back.(*AppendRequest); ok && len(a.WAL) == 0 {
			a.WAL = nil
			m.(*AppendRequest).WAL = nil
		}
		if !reflect.DeepEqual(m, back) {
			t.Fatalf("round trip differs:\n%+v\n%+v", m, back)
		}
	})
}

func FuzzDecodeAcceptorMessage(f *testing.F) {
	for _, v := range []Version{V2, V3} {
		for _, m := range []AcceptorMessage{
			&AcceptorGreeting{NodeID: 1, Term: 2},
			&VoteResponse{Term: 3, VoteGiven: true, FlushLSN: 5, TermHistory: TermHistory{{2, 5}}},
			&AppendResponse{Term: 3, FlushLSN: 8, PageserverFeedback: &PageserverFeedback{LastReceivedLSN: 1}},
		} {
			b, _ := AppendAcceptorMessage(nil, v, m)
			f.Add(uint8(v), b)
		}
	}
	f.Fuzz(func(t *testing.T, v uint8, b []byte) {
		_, _ = DecodeAcceptorMessage(Version(v), b)
		_, _ = DecodePageserverFeedback(b)
	})
}
