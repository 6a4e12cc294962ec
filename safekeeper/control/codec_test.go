package control

import (
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// fullState has every field set to a distinct value.
func fullState() *State {
	return &State{
		Tenant:   id.MustParse("9e4c8f36063c6c6e93bc20d65a820f3d"),
		Timeline: id.MustParse("0123456789abcdef0123456789abcdef"),
		Mconf: pamsg.Configuration{
			Generation: 3,
			Members: []pamsg.SafekeeperID{
				{ID: 1, Host: "sk-1", PgPort: 5454},
				{ID: 2, Host: "sk-2", PgPort: 5455},
			},
		},
		AcceptorState: AcceptorState{Term: 9, TermHistory: pamsg.TermHistory{
			{Term: 1, LSN: 0x1000000}, {Term: 4, LSN: 0x1800000}, {Term: 9, LSN: 0x2000028},
		}},
		Server:              ServerInfo{PgVersion: 150007, SystemID: 7405830474617063434, WalSegSize: 16 << 20},
		ProposerUUID:        [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		TimelineStartLSN:    0x1000000,
		LocalStartLSN:       0x1000028,
		CommitLSN:           0x2000100,
		BackupLSN:           0x2000000,
		PeerHorizonLSN:      0x1FFFF00,
		RemoteConsistentLSN: 0x1F00000,
		PartialBackup: []PartialRemoteSegment{
			{Status: UploadDeleting, Name: "a", CommitLSN: 1, FlushLSN: 2, Term: 3},
			{Status: UploadInProgress, Name: "b", CommitLSN: 4, FlushLSN: 5, Term: 6},
			{Status: UploadUploaded, Name: "c", CommitLSN: 7, FlushLSN: 8, Term: 9},
		},
		Eviction:   Offloaded(0x2000100),
		CreationTS: time.Date(2026, 3, 25, 9, 27, 3, 999999999, time.UTC),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint32
		state   func() *State
	}{
		{"zero state", 9, func() *State { return &State{} }},
		{"generation 0", 9, func() *State {
			s := fullState()
			s.Mconf = pamsg.Configuration{}
			s.CreationTS = time.Unix(0, 0)
			return s
		}},
		{"generation 3", 10, fullState},
		{"joint", 10, func() *State {
			s := fullState()
			s.Mconf.NewMembers = []pamsg.SafekeeperID{{ID: 3, Host: "sk-3.例え", PgPort: 1}}
			return s
		}},
		{"joint with empty new set", 10, func() *State {
			s := fullState()
			s.Mconf.NewMembers = []pamsg.SafekeeperID{}
			return s
		}},
		{"present, empty slices", 10, func() *State {
			s := fullState()
			s.Eviction = Present()
			s.PartialBackup = nil
			s.AcceptorState.TermHistory = pamsg.TermHistory{}
			return s
		}},
		{"extremes", 10, func() *State {
			s := fullState()
			s.Mconf.Generation = math.MaxUint32
			s.AcceptorState.Term = math.MaxUint64
			s.Server = ServerInfo{PgVersion: math.MaxUint32, SystemID: math.MaxUint64, WalSegSize: math.MaxUint32}
			s.CommitLSN = lsn.Max
			s.Eviction = Offloaded(lsn.Max)
			s.CreationTS = time.Unix(0, 0)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.state()
			b, err := Encode(s)
			if err != nil {
				t.Fatal(err)
			}
			if v := binary.LittleEndian.Uint32(b[4:]); v != tc.version {
				t.Errorf("format version %d, want %d", v, tc.version)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := s
			if tc.version == 9 {
				want = s.Clone()
				want.CreationTS = time.Unix(0, 0)
			}
			if !got.Equal(want) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
			}
			if (got.Mconf.NewMembers == nil) != (s.Mconf.NewMembers == nil) {
				t.Errorf("joint-ness lost: NewMembers %v, want %v", got.Mconf.NewMembers, s.Mconf.NewMembers)
			}
		})
	}
}

// Format 9 has no room for members or a creation time; Neon drops them too.
func TestEncodeGenerationZeroDropsWhatV9CannotHold(t *testing.T) {
	s := fullState()
	s.Mconf.Generation = 0
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Mconf.Members) != 0 || got.Mconf.NewMembers != nil || !got.CreationTS.Equal(time.Unix(0, 0)) {
		t.Errorf("decoded mconf %+v, creation %v; want empty and the epoch", got.Mconf, got.CreationTS)
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*State)
		want   string
	}{
		{"host not UTF-8", func(s *State) { s.Mconf.Members[0].Host = "\xff" }, "not valid UTF-8"},
		{"segment name not UTF-8", func(s *State) { s.PartialBackup[0].Name = "a\xc0" }, "not valid UTF-8"},
		{"creation before epoch", func(s *State) { s.CreationTS = time.Unix(-1, 0) }, "precedes the Unix epoch"},
		{"zero creation time", func(s *State) { s.CreationTS = time.Time{} }, "precedes the Unix epoch"},
	} {
		s := fullState()
		tc.mutate(s)
		if _, err := Encode(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Encode error = %v, want %q", tc.name, err, tc.want)
		}
	}
	// Format 9 does not store the creation time, so any value is fine there.
	s := fullState()
	s.Mconf = pamsg.Configuration{}
	s.CreationTS = time.Time{}
	if _, err := Encode(s); err != nil {
		t.Errorf("v9 with zero creation time: %v", err)
	}
}

// reframe replaces the checksum so that a test reaches the check after it.
func reframe(b []byte) []byte {
	b = b[:len(b)-4]
	return binary.LittleEndian.AppendUint32(b, checksum(b))
}

func TestDecodeCorruption(t *testing.T) {
	valid, err := Encode(fullState())
	if err != nil {
		t.Fatal(err)
	}
	body := func(version uint32, parts ...[]byte) []byte { return frame(version, cat(parts...)) }
	// Offset of the first member count in a v10 file: header, two hex ids, generation.
	const membersOff = 8 + 40 + 40 + 4
	for _, tc := range []struct {
		name string
		file func() []byte
		is   error
		text string
	}{
		{"empty file", func() []byte { return nil }, ErrCorrupt, "shorter than the checksum"},
		{"three bytes", func() []byte { return []byte{1, 2, 3} }, ErrCorrupt, "shorter than the checksum"},
		{"checksum only", func() []byte { return reframe(make([]byte, 4)) }, ErrCorrupt, "magic"},
		{"flipped body byte", func() []byte {
			b := clone(valid)
			b[100] ^= 0x01
			return b
		}, ErrChecksum, "checksum mismatch"},
		{"flipped checksum byte", func() []byte {
			b := clone(valid)
			b[len(b)-1] ^= 0x80
			return b
		}, ErrChecksum, "checksum mismatch"},
		{"flipped first byte", func() []byte {
			b := clone(valid)
			b[0]++
			return b
		}, ErrChecksum, "checksum mismatch"},
		{"wrong magic", func() []byte {
			b := clone(valid)
			b[0] = 0xEE
			return reframe(b)
		}, ErrBadMagic, "0xcafeceee"},
		{"version 0", func() []byte { return setVersion(valid, 0) }, ErrUnsupportedVersion, "version 0"},
		{"version 11", func() []byte { return setVersion(valid, 11) }, ErrUnsupportedVersion, "version 11"},
		{"version 5", func() []byte { return setVersion(valid, 5) }, ErrUnsupportedVersion, "Neon itself"},
		{"version 6", func() []byte { return setVersion(valid, 6) }, ErrUnsupportedVersion, "Neon itself"},
		{"truncated body", func() []byte { return reframe(clone(valid[:len(valid)-10])) }, ErrCorrupt, "creation_ts"},
		{"header only", func() []byte { return reframe(clone(valid[:12])) }, ErrCorrupt, "tenant_id"},
		{"trailing bytes", func() []byte {
			b := append(clone(valid[:len(valid)-4]), 0, 0, 0, 0)
			return reframe(append(b, 0, 0, 0, 0))
		}, ErrCorrupt, "4 trailing bytes"},
		{"absurd member count", func() []byte {
			b := clone(valid)
			binary.LittleEndian.PutUint64(b[membersOff:], 1<<60)
			return reframe(b)
		}, ErrCorrupt, "mconf.members: length 1152921504606846976"},
		{"member count one too many", func() []byte {
			b := clone(valid)
			binary.LittleEndian.PutUint64(b[membersOff:], 100)
			return reframe(b)
		}, ErrCorrupt, ""},
		{"absurd term history", func() []byte {
			return body(9, goldenIDs, h("0300000000000000 ffffffffffffffff"))
		}, ErrCorrupt, "term_history: length"},
		{"absurd string length", func() []byte {
			return body(9, h("ffffffffffffff7f"))
		}, ErrCorrupt, "tenant_id: hex id length"},
		{"absurd peers", func() []byte {
			return body(7, goldenIDs, goldenAcceptorServerUUID, goldenLSNs, h("ffffffffffffffff"))
		}, ErrCorrupt, "peers: length"},
		{"id not hex", func() []byte {
			return body(9, str("zz0480929707ee75372337efaa5ecf96"))
		}, ErrCorrupt, "is not hex"},
		{"id too short", func() []byte { return body(9, str("cf04")) }, ErrCorrupt, "hex id length 4"},
		{"bad option tag", func() []byte {
			return body(10, goldenIDs, h("01000000 0000000000000000 02"))
		}, ErrCorrupt, "option tag 2"},
		{"host not UTF-8", func() []byte {
			return body(10, goldenIDs, h("01000000 0100000000000000 0100000000000000"), str("\xff"), h("4e15"))
		}, ErrCorrupt, "not valid UTF-8"},
		{"bad upload status", func() []byte {
			return body(9, goldenIDs, goldenAcceptorServerUUID, goldenLSNs, goldenNoPeers,
				h("0100000000000000 03000000"), str(""), make([]byte, 24))
		}, ErrCorrupt, "partial segment status: variant 3"},
		{"bad eviction variant", func() []byte {
			return body(9, goldenIDs, goldenAcceptorServerUUID, goldenLSNs, goldenNoPeers,
				h("0000000000000000 02000000"))
		}, ErrCorrupt, "eviction_state: variant 2"},
		{"creation time out of range", func() []byte {
			b := clone(valid)
			binary.LittleEndian.PutUint64(b[len(b)-16:], math.MaxUint64)
			return reframe(b)
		}, ErrCorrupt, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Decode(tc.file())
			if !errors.Is(err, tc.is) {
				t.Fatalf("Decode = %+v, %v; want %v", s, err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not mention %q", err, tc.text)
			}
		})
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func setVersion(b []byte, v uint32) []byte {
	b = clone(b)
	binary.LittleEndian.PutUint32(b[4:], v)
	return reframe(b)
}

// A corrupt length must fail before allocating what it claims.
func TestDecodeAbsurdLengthDoesNotAllocate(t *testing.T) {
	files := [][]byte{
		frame(9, cat(goldenIDs, h("0300000000000000 ffffffffffff0000"))),
		frame(10, cat(goldenIDs, h("01000000 00000000ffff0000"))),
		frame(9, cat(goldenIDs, goldenAcceptorServerUUID, goldenLSNs, goldenNoPeers, h("00000000ffff0000"))),
		frame(10, cat(goldenIDs, h("01000000 0100000000000000 0100000000000000 ffffffff00000000"))),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, f := range files {
		if _, err := Decode(f); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Decode = %v, want ErrCorrupt", err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("decoding %d small corrupt files allocated %d bytes", len(files), n)
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := fullState()
	s.Mconf.NewMembers = []pamsg.SafekeeperID{}
	c := s.Clone()
	if !c.Equal(s) {
		t.Fatal("clone differs")
	}
	if c.Mconf.NewMembers == nil {
		t.Fatal("clone turned a joint configuration into a plain one")
	}
	c.Mconf.Members[0].Host = "changed"
	c.AcceptorState.TermHistory[0].Term = 100
	c.PartialBackup[0].Name = "changed"
	if s.Mconf.Members[0].Host == "changed" || s.AcceptorState.TermHistory[0].Term == 100 || s.PartialBackup[0].Name == "changed" {
		t.Fatal("clone shares memory with the original")
	}
}

func TestEqual(t *testing.T) {
	base := fullState()
	if !base.Equal(fullState()) {
		t.Fatal("equal states differ")
	}
	var nilState *State
	if base.Equal(nil) || !nilState.Equal(nil) {
		t.Error("nil handling")
	}
	same := fullState()
	same.CreationTS = base.CreationTS.In(time.FixedZone("x", 3600))
	if !base.Equal(same) {
		t.Error("the same instant in another zone differs")
	}
	for name, mutate := range map[string]func(*State){
		"tenant":           func(s *State) { s.Tenant[0]++ },
		"timeline":         func(s *State) { s.Timeline[0]++ },
		"generation":       func(s *State) { s.Mconf.Generation++ },
		"member":           func(s *State) { s.Mconf.Members[1].PgPort++ },
		"joint":            func(s *State) { s.Mconf.NewMembers = []pamsg.SafekeeperID{} },
		"term":             func(s *State) { s.AcceptorState.Term++ },
		"history":          func(s *State) { s.AcceptorState.TermHistory = s.AcceptorState.TermHistory[:2] },
		"server":           func(s *State) { s.Server.WalSegSize++ },
		"uuid":             func(s *State) { s.ProposerUUID[15]++ },
		"timeline start":   func(s *State) { s.TimelineStartLSN++ },
		"local start":      func(s *State) { s.LocalStartLSN++ },
		"commit":           func(s *State) { s.CommitLSN++ },
		"backup":           func(s *State) { s.BackupLSN++ },
		"peer horizon":     func(s *State) { s.PeerHorizonLSN++ },
		"remote":           func(s *State) { s.RemoteConsistentLSN++ },
		"partial":          func(s *State) { s.PartialBackup[2].Status = UploadDeleting },
		"eviction":         func(s *State) { s.Eviction = Present() },
		"eviction lsn":     func(s *State) { s.Eviction = Offloaded(1) },
		"creation":         func(s *State) { s.CreationTS = s.CreationTS.Add(time.Nanosecond) },
		"no partial":       func(s *State) { s.PartialBackup = nil },
		"no members":       func(s *State) { s.Mconf.Members = nil },
		"empty vs members": func(s *State) { s.Mconf.Members = []pamsg.SafekeeperID{} },
	} {
		s := fullState()
		mutate(s)
		if base.Equal(s) || s.Equal(base) {
			t.Errorf("%s: change not detected", name)
		}
	}
	empty, nilSlices := &State{AcceptorState: AcceptorState{TermHistory: pamsg.TermHistory{}}, PartialBackup: []PartialRemoteSegment{}}, &State{}
	if !empty.Equal(nilSlices) {
		t.Error("empty and nil slices differ")
	}
}
