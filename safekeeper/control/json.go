package control

// This file is the JSON form of a State (SK §4.1, "JSON form"), printed by
// `safekeeper --dump-control-file` and in status output, and read back by
// tools that edit a control file. It follows what Neon's serde derives
// produce, so dumps of the two implementations can be compared:
//
//   - field names are the Rust ones (tenant_id, acceptor_state, ...);
//   - ids and proposer_uuid are 32 lowercase hex characters, LSNs "X/Y";
//   - eviction_state is "Present" or {"Offloaded":"X/Y"};
//   - creation_ts is {"secs_since_epoch":N,"nanos_since_epoch":N};
//   - mconf.new_members is null unless the configuration is joint.
//
// Like serde, decoding ignores unknown fields but rejects missing ones (only
// new_members, an Option, may be absent), and rejects null where Rust has no
// Option.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

type stateJSON struct {
	TenantID            id.ID             `json:"tenant_id"`
	TimelineID          id.ID             `json:"timeline_id"`
	Mconf               mconfJSON         `json:"mconf"`
	AcceptorState       acceptorJSON      `json:"acceptor_state"`
	Server              serverJSON        `json:"server"`
	ProposerUUID        id.ID             `json:"proposer_uuid"`
	TimelineStartLSN    lsn.LSN           `json:"timeline_start_lsn"`
	LocalStartLSN       lsn.LSN           `json:"local_start_lsn"`
	CommitLSN           lsn.LSN           `json:"commit_lsn"`
	BackupLSN           lsn.LSN           `json:"backup_lsn"`
	PeerHorizonLSN      lsn.LSN           `json:"peer_horizon_lsn"`
	RemoteConsistentLSN lsn.LSN           `json:"remote_consistent_lsn"`
	PartialBackup       partialBackupJSON `json:"partial_backup"`
	EvictionState       Eviction          `json:"eviction_state"`
	CreationTS          systemTimeJSON    `json:"creation_ts"`
}

type mconfJSON struct {
	Generation pamsg.Generation `json:"generation"`
	Members    []memberJSON     `json:"members"`
	// NewMembers is a pointer so that nil marshals as null and an empty
	// joint set as [], and so that the field may be absent (strictUnmarshal).
	NewMembers *[]memberJSON `json:"new_members"`
}

type memberJSON struct {
	ID     id.NodeID `json:"id"`
	Host   string    `json:"host"`
	PgPort uint16    `json:"pg_port"`
}

type acceptorJSON struct {
	Term        pamsg.Term       `json:"term"`
	TermHistory []termSwitchJSON `json:"term_history"`
}

type termSwitchJSON struct {
	Term pamsg.Term `json:"term"`
	LSN  lsn.LSN    `json:"lsn"`
}

type serverJSON struct {
	PgVersion  uint32 `json:"pg_version"`
	SystemID   uint64 `json:"system_id"`
	WalSegSize uint32 `json:"wal_seg_size"`
}

type partialBackupJSON struct {
	Segments []segmentJSON `json:"segments"`
}

type segmentJSON struct {
	Status    UploadStatus `json:"status"`
	Name      string       `json:"name"`
	CommitLSN lsn.LSN      `json:"commit_lsn"`
	FlushLSN  lsn.LSN      `json:"flush_lsn"`
	Term      pamsg.Term   `json:"term"`
}

type systemTimeJSON struct {
	Secs  uint64 `json:"secs_since_epoch"`
	Nanos uint32 `json:"nanos_since_epoch"`
}

// MarshalJSON writes the JSON form. It fails for a creation time before the
// Unix epoch, which Rust's SystemTime cannot express either.
func (s State) MarshalJSON() ([]byte, error) {
	if s.CreationTS.Before(unixEpoch()) {
		return nil, fmt.Errorf("control state JSON: creation_ts %v precedes the Unix epoch", s.CreationTS)
	}
	j := stateJSON{
		TenantID:   s.Tenant,
		TimelineID: s.Timeline,
		Mconf: mconfJSON{
			Generation: s.Mconf.Generation,
			Members:    membersToJSON(s.Mconf.Members),
		},
		AcceptorState: acceptorJSON{
			Term:        s.AcceptorState.Term,
			TermHistory: make([]termSwitchJSON, 0, len(s.AcceptorState.TermHistory)),
		},
		Server:              serverJSON(s.Server),
		ProposerUUID:        id.ID(s.ProposerUUID),
		TimelineStartLSN:    s.TimelineStartLSN,
		LocalStartLSN:       s.LocalStartLSN,
		CommitLSN:           s.CommitLSN,
		BackupLSN:           s.BackupLSN,
		PeerHorizonLSN:      s.PeerHorizonLSN,
		RemoteConsistentLSN: s.RemoteConsistentLSN,
		PartialBackup:       partialBackupJSON{Segments: make([]segmentJSON, 0, len(s.PartialBackup))},
		EvictionState:       s.Eviction,
		CreationTS: systemTimeJSON{
			Secs:  uint64(s.CreationTS.Unix()),
			Nanos: uint32(s.CreationTS.Nanosecond()),
		},
	}
	if s.Mconf.NewMembers != nil {
		nm := membersToJSON(s.Mconf.NewMembers)
		j.Mconf.NewMembers = &nm
	}
	for _, ts := range s.AcceptorState.TermHistory {
		j.AcceptorState.TermHistory = append(j.AcceptorState.TermHistory, termSwitchJSON(ts))
	}
	for _, p := range s.PartialBackup {
		j.PartialBackup.Segments = append(j.PartialBackup.Segments, segmentJSON(p))
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the JSON form.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("control state JSON: %w", err)
	}
	if j.CreationTS.Secs > maxUnixSeconds {
		return fmt.Errorf("control state JSON: creation_ts: %d seconds since the epoch is out of range", j.CreationTS.Secs)
	}
	*s = State{
		Tenant:   j.TenantID,
		Timeline: j.TimelineID,
		Mconf: pamsg.Configuration{
			Generation: j.Mconf.Generation,
			Members:    membersFromJSON(j.Mconf.Members),
		},
		AcceptorState: AcceptorState{
			Term:        j.AcceptorState.Term,
			TermHistory: make(pamsg.TermHistory, 0, len(j.AcceptorState.TermHistory)),
		},
		Server:              ServerInfo(j.Server),
		ProposerUUID:        j.ProposerUUID,
		TimelineStartLSN:    j.TimelineStartLSN,
		LocalStartLSN:       j.LocalStartLSN,
		CommitLSN:           j.CommitLSN,
		BackupLSN:           j.BackupLSN,
		PeerHorizonLSN:      j.PeerHorizonLSN,
		RemoteConsistentLSN: j.RemoteConsistentLSN,
		PartialBackup:       make([]PartialRemoteSegment, 0, len(j.PartialBackup.Segments)),
		Eviction:            j.EvictionState,
		CreationTS:          time.Unix(int64(j.CreationTS.Secs), int64(j.CreationTS.Nanos)).UTC(),
	}
	if j.Mconf.NewMembers != nil {
		s.Mconf.NewMembers = membersFromJSON(*j.Mconf.NewMembers)
	}
	for _, ts := range j.AcceptorState.TermHistory {
		s.AcceptorState.TermHistory = append(s.AcceptorState.TermHistory, pamsg.TermSwitch(ts))
	}
	for _, p := range j.PartialBackup.Segments {
		s.PartialBackup = append(s.PartialBackup, PartialRemoteSegment(p))
	}
	return nil
}

// membersToJSON never returns nil, so an empty set prints as [] like Neon's.
func membersToJSON(ms []pamsg.SafekeeperID) []memberJSON {
	out := make([]memberJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberJSON{ID: m.ID, Host: m.Host, PgPort: m.PgPort})
	}
	return out
}

// membersFromJSON never returns nil, so that an empty joint set stays joint.
func membersFromJSON(ms []memberJSON) []pamsg.SafekeeperID {
	out := make([]pamsg.SafekeeperID, 0, len(ms))
	for _, m := range ms {
		out = append(out, pamsg.SafekeeperID{ID: m.ID, Host: m.Host, PgPort: m.PgPort})
	}
	return out
}

// The UnmarshalJSON methods below make every nested object as strict as the
// top-level one; plain is the same type without the method, to avoid recursion.

func (j *stateJSON) UnmarshalJSON(b []byte) error {
	type plain stateJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *mconfJSON) UnmarshalJSON(b []byte) error {
	type plain mconfJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *memberJSON) UnmarshalJSON(b []byte) error {
	type plain memberJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *acceptorJSON) UnmarshalJSON(b []byte) error {
	type plain acceptorJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *termSwitchJSON) UnmarshalJSON(b []byte) error {
	type plain termSwitchJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *serverJSON) UnmarshalJSON(b []byte) error {
	type plain serverJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *partialBackupJSON) UnmarshalJSON(b []byte) error {
	type plain partialBackupJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *segmentJSON) UnmarshalJSON(b []byte) error {
	type plain segmentJSON
	return strictUnmarshal(b, (*plain)(j))
}

func (j *systemTimeJSON) UnmarshalJSON(b []byte) error {
	type plain systemTimeJSON
	return strictUnmarshal(b, (*plain)(j))
}

// strictUnmarshal decodes a JSON object into the struct v points to after
// checking that every field named by a json tag is present and not null.
// Pointer fields are Rust Options: they may be absent or null.
func strictUnmarshal(b []byte, v any) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	if fields == nil {
		return fmt.Errorf("got null, want an object")
	}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || f.Type.Kind() == reflect.Pointer {
			continue
		}
		raw, ok := fields[name]
		if !ok {
			return fmt.Errorf("missing field %q", name)
		}
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return fmt.Errorf("field %q is null", name)
		}
	}
	return json.Unmarshal(b, v)
}

// MarshalJSON writes "Present" or {"Offloaded":"X/Y"}, serde's form of the
// Rust enum.
func (e Eviction) MarshalJSON() ([]byte, error) {
	if flush, ok := e.Offloaded(); ok {
		return json.Marshal(map[string]lsn.LSN{"Offloaded": flush})
	}
	return []byte(`"Present"`), nil
}

// UnmarshalJSON reads the forms MarshalJSON writes.
func (e *Eviction) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		if name != "Present" {
			return fmt.Errorf("eviction_state %q: want \"Present\" or {\"Offloaded\":\"X/Y\"}", name)
		}
		*e = Present()
		return nil
	}
	var obj map[string]lsn.LSN
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("eviction_state: %w", err)
	}
	flush, ok := obj["Offloaded"]
	if !ok || len(obj) != 1 {
		return fmt.Errorf("eviction_state %s: want \"Present\" or {\"Offloaded\":\"X/Y\"}", b)
	}
	*e = Offloaded(flush)
	return nil
}

// MarshalText writes the Rust variant name.
func (u UploadStatus) MarshalText() ([]byte, error) {
	if !u.valid() {
		return nil, fmt.Errorf("invalid upload status %d", uint32(u))
	}
	return []byte(u.String()), nil
}

// UnmarshalText reads a Rust variant name.
func (u *UploadStatus) UnmarshalText(b []byte) error {
	for v := UploadInProgress; v.valid(); v++ {
		if string(b) == v.String() {
			*u = v
			return nil
		}
	}
	return fmt.Errorf("unknown upload status %q: want InProgress, Uploaded or Deleting", b)
}
