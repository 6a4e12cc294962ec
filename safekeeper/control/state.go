// Package control is the safekeeper's persistent per-timeline state (SK §3.1)
// and its on-disk form, the control file safekeeper.control (SK §4.1), kept
// byte-compatible with Neon's so that a data directory can move between the
// two implementations.
//
// The package owns three things, one file each: the State value (this file),
// its binary encoding (codec.go for the current formats, legacy.go for the
// read-only upgrade paths, bincode.go for the primitive rules) and the durable
// file store (store.go). json.go is the human-readable form used by
// --dump-control-file and status output.
//
// Invariants this file maintains:
//   - A State is a plain value: it never refers to the disk. Only Persist makes
//     it durable, and a State is durable only after Persist returned nil.
//   - Clone shares no memory with its source, so a caller may modify the copy
//     (the start_change/finish_change pattern of SK §3.1) while other code
//     still reads the original.
//   - Equal is true exactly when Encode would write the same bytes, except for
//     what the v9 format cannot hold (see Encode): the timeline code uses it to
//     skip writes when nothing changed.
package control

import (
	"fmt"
	"slices"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// State is everything a safekeeper remembers about one timeline across restarts.
type State struct {
	Tenant   id.TenantID
	Timeline id.TimelineID
	// Mconf is the membership configuration; generation 0 means the timeline
	// predates generations, and such a state is written in format 9.
	Mconf         pamsg.Configuration
	AcceptorState AcceptorState
	Server        ServerInfo
	// ProposerUUID is informational only; Neon always writes zeros now.
	ProposerUUID [16]byte
	// TimelineStartLSN is where the timeline's WAL begins globally; 0 until known.
	TimelineStartLSN lsn.LSN
	// LocalStartLSN is where this safekeeper's own WAL begins.
	LocalStartLSN lsn.LSN
	// CommitLSN is the persisted commit position; it lags the in-memory one.
	CommitLSN lsn.LSN
	// BackupLSN is the end of the last segment known to be in remote storage.
	BackupLSN lsn.LSN
	// PeerHorizonLSN ("truncate_lsn" on the wire) is the lowest LSN some
	// safekeeper may still need.
	PeerHorizonLSN lsn.LSN
	// RemoteConsistentLSN is the pageserver's remote-durable LSN.
	RemoteConsistentLSN lsn.LSN
	// PartialBackup lists partial-segment objects in remote storage (SK §8.2).
	PartialBackup []PartialRemoteSegment
	Eviction      Eviction
	// CreationTS is the wall-clock creation time. Formats older than 10 do not
	// store it and read back as the Unix epoch; it cannot precede the epoch.
	CreationTS time.Time
}

// AcceptorState is the consensus part of the state.
type AcceptorState struct {
	// Term is the highest term this safekeeper voted for or learned.
	Term pamsg.Term
	// TermHistory is adopted from the last elected proposer and may describe
	// WAL beyond the local flush position: read it through UpTo(flushLSN).
	TermHistory pamsg.TermHistory
}

// ServerInfo describes the PostgreSQL cluster whose WAL the timeline holds.
type ServerInfo struct {
	// PgVersion is the full version number, e.g. 150004; 0 means unknown.
	PgVersion  uint32
	SystemID   uint64
	WalSegSize uint32
}

// UploadStatus is the life-cycle stage of a partial-segment object.
type UploadStatus uint32

// The numbering is the on-disk enum index and must not change.
const (
	// UploadInProgress objects may be incomplete; they are only garbage.
	UploadInProgress UploadStatus = 0
	// UploadUploaded marks the one object that holds current data.
	UploadUploaded UploadStatus = 1
	// UploadDeleting objects are being removed; they are only garbage.
	UploadDeleting UploadStatus = 2
)

func (u UploadStatus) String() string {
	switch u {
	case UploadInProgress:
		return "InProgress"
	case UploadUploaded:
		return "Uploaded"
	case UploadDeleting:
		return "Deleting"
	}
	return fmt.Sprintf("UploadStatus(%d)", uint32(u))
}

func (u UploadStatus) valid() bool { return u <= UploadDeleting }

// PartialRemoteSegment records one partial-segment object (SK §8.2).
type PartialRemoteSegment struct {
	Status    UploadStatus
	Name      string
	CommitLSN lsn.LSN
	FlushLSN  lsn.LSN
	// Term is the last_log_term at upload time.
	Term pamsg.Term
}

// Eviction says whether the timeline's WAL is on local disk (Present, the
// zero value) or was offloaded to remote storage up to a flush LSN. The fields
// are hidden so that a Present value never carries a stale LSN, which keeps
// Eviction comparable with ==.
type Eviction struct {
	offloaded bool
	flushLSN  lsn.LSN
}

// Present is the eviction state of a timeline whose WAL is local.
func Present() Eviction { return Eviction{} }

// Offloaded is the eviction state of a timeline whose last partial segment,
// ending at flush, lives only in remote storage.
func Offloaded(flush lsn.LSN) Eviction { return Eviction{offloaded: true, flushLSN: flush} }

// Offloaded returns the flush LSN of the offloaded segment and true, or
// (0, false) when the WAL is present.
func (e Eviction) Offloaded() (lsn.LSN, bool) { return e.flushLSN, e.offloaded }

func (e Eviction) String() string {
	if e.offloaded {
		return fmt.Sprintf("Offloaded(%s)", e.flushLSN)
	}
	return "Present"
}

// unixEpoch is the creation time that formats before 10 read back as.
func unixEpoch() time.Time { return time.Unix(0, 0).UTC() }

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.Mconf = cloneConfiguration(s.Mconf)
	c.AcceptorState.TermHistory = s.AcceptorState.TermHistory.Clone()
	c.PartialBackup = slices.Clone(s.PartialBackup)
	return &c
}

// cloneConfiguration copies c keeping the difference between nil and empty
// NewMembers: an empty non-nil set is a (degenerate) joint configuration.
func cloneConfiguration(c pamsg.Configuration) pamsg.Configuration {
	return pamsg.Configuration{
		Generation: c.Generation,
		Members:    slices.Clone(c.Members),
		NewMembers: slices.Clone(c.NewMembers),
	}
}

// Equal reports whether s and o hold the same values. Nil and empty slices are
// equal, except NewMembers, where nil means "not joint". Creation times
// compare as instants, ignoring location and monotonic clock readings.
func (s *State) Equal(o *State) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Tenant == o.Tenant &&
		s.Timeline == o.Timeline &&
		configurationEqual(s.Mconf, o.Mconf) &&
		s.AcceptorState.Term == o.AcceptorState.Term &&
		slices.Equal(s.AcceptorState.TermHistory, o.AcceptorState.TermHistory) &&
		s.Server == o.Server &&
		s.ProposerUUID == o.ProposerUUID &&
		s.TimelineStartLSN == o.TimelineStartLSN &&
		s.LocalStartLSN == o.LocalStartLSN &&
		s.CommitLSN == o.CommitLSN &&
		s.BackupLSN == o.BackupLSN &&
		s.PeerHorizonLSN == o.PeerHorizonLSN &&
		s.RemoteConsistentLSN == o.RemoteConsistentLSN &&
		slices.Equal(s.PartialBackup, o.PartialBackup) &&
		s.Eviction == o.Eviction &&
		s.CreationTS.Equal(o.CreationTS)
}

func configurationEqual(a, b pamsg.Configuration) bool {
	return a.Generation == b.Generation &&
		slices.Equal(a.Members, b.Members) &&
		(a.NewMembers == nil) == (b.NewMembers == nil) &&
		slices.Equal(a.NewMembers, b.NewMembers)
}
