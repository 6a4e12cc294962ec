package control

// This file frames the control file and encodes the two formats Neon's
// current safekeeper writes (SK §4.1):
//
//	magic 0xCAFECEEF (u32 LE) | format version (u32 LE) | body | CRC32C (u32 LE)
//
// with the CRC taken over everything before it. A state whose membership
// generation is 0 is written as format 9, any other as format 10; Neon does
// the same so that an older safekeeper can still read legacy timelines.
//
// Invariants:
//   - Decode checks the checksum before looking at anything else, then the
//     magic, then dispatches on the version; the body must be consumed
//     exactly, as bincode in Neon rejects trailing bytes.
//   - Decode never panics and never allocates more than a small multiple of
//     its input, whatever the input (see bincode.go).
//   - Encode(s) decodes to a state Equal to s, except that format 9 keeps
//     neither the members of a generation-0 configuration nor CreationTS.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

const (
	// Magic opens every control file (bytes EF CE FE CA on disk).
	Magic uint32 = 0xCAFECEEF
	// FormatVersion is the newest format, written when generations are in use.
	FormatVersion uint32 = 10
	// FormatVersionNoGeneration is written for generation-0 states.
	FormatVersionNoGeneration uint32 = 9

	checksumSize = 4
)

// Errors that Decode and Load wrap; callers may test them with errors.Is.
var (
	// ErrChecksum means the stored CRC32C does not match the contents.
	ErrChecksum = errors.New("control file checksum mismatch")
	// ErrBadMagic means the file does not start with Magic.
	ErrBadMagic = errors.New("bad control file magic")
	// ErrUnsupportedVersion means the format version cannot be read.
	ErrUnsupportedVersion = errors.New("unsupported control file version")
	// ErrCorrupt means the body does not follow its format: it is truncated,
	// has trailing bytes, impossible lengths or invalid values.
	ErrCorrupt = errors.New("corrupt control file")
)

// Sizes of the smallest element encodings (for decoder.count) and enum
// variant numbers, all fixed by the on-disk format.
const (
	termSwitchSize    = 8 + 8       // term, lsn
	memberMinSize     = 8 + 8 + 2   // id, empty host, pg_port
	partialSegMinSize = 4 + 8 + 3*8 // status, empty name, commit, flush, term
	persistedPeerSize = 8 + 4*8     // node id, backup, term, flush, commit

	uploadStatusCount = 3 // InProgress, Uploaded, Deleting
	evictionVariants  = 2
	evictionPresent   = 0
	evictionOffloaded = 1
)

func checksum(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// Encode serializes s as a complete control file: format 9 if
// s.Mconf.Generation is 0, format 10 otherwise. It fails only for values Neon
// could not read back: strings that are not UTF-8, or (format 10) a creation
// time before the Unix epoch.
func Encode(s *State) ([]byte, error) {
	e := &encoder{buf: make([]byte, 0, 512)}
	e.u32(Magic)
	if s.Mconf.Generation == 0 {
		e.u32(FormatVersionNoGeneration)
		encodeV9(e, s)
	} else {
		e.u32(FormatVersion)
		encodeV10(e, s)
	}
	if e.err != nil {
		return nil, fmt.Errorf("encode control file of %s/%s: %w", s.Tenant, s.Timeline, e.err)
	}
	return binary.LittleEndian.AppendUint32(e.buf, checksum(e.buf)), nil
}

// Decode parses a complete control file of any readable format (10, 9, 8, 7,
// 4, 3, 2, 1), upgrading older formats as Neon does. Fields an old format
// lacks take their zero value, except CreationTS, which is the Unix epoch.
func Decode(b []byte) (*State, error) {
	if len(b) < checksumSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the checksum", ErrCorrupt, len(b))
	}
	body := b[:len(b)-checksumSize]
	stored := binary.LittleEndian.Uint32(b[len(body):])
	if computed := checksum(body); computed != stored {
		return nil, fmt.Errorf("%w: stored %#08x, computed %#08x", ErrChecksum, stored, computed)
	}
	d := &decoder{buf: body}
	magic := d.u32("magic")
	version := d.u32("format version")
	if d.err != nil {
		return nil, d.err
	}
	if magic != Magic {
		return nil, fmt.Errorf("%w %#08x (want %#08x)", ErrBadMagic, magic, Magic)
	}
	var s *State
	switch version {
	case 10:
		s = decodeV10(d)
	case 9:
		s = decodeV9(d)
	case 8:
		s = decodeV8(d)
	case 7:
		s = decodeV7(d)
	case 5, 6:
		// Neon reads these with the version 10 layout, so a genuine file of
		// either version loads nowhere; refusing is the honest answer.
		return nil, fmt.Errorf("%w %d: Neon itself can no longer read this format", ErrUnsupportedVersion, version)
	case 4:
		s = decodeV4(d)
	case 3:
		s = decodeV3(d)
	case 2:
		s = decodeV2(d)
	case 1:
		s = decodeV1(d)
	default:
		return nil, fmt.Errorf("%w %d", ErrUnsupportedVersion, version)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("format version %d: %w", version, err)
	}
	return s, nil
}

// newState is the state an upgrade starts from: what formats before 10 lack.
func newState() *State {
	return &State{CreationTS: unixEpoch()}
}

func encodeV10(e *encoder, s *State) {
	e.hexID(s.Tenant)
	e.hexID(s.Timeline)
	e.u32(uint32(s.Mconf.Generation))
	encodeMembers(e, s.Mconf.Members)
	e.option(s.Mconf.NewMembers != nil)
	if s.Mconf.NewMembers != nil {
		encodeMembers(e, s.Mconf.NewMembers)
	}
	encodeAcceptor(e, s.AcceptorState)
	encodeServer(e, s.Server)
	e.hexID(s.ProposerUUID)
	encodeLSNs(e, s)
	encodePartialBackup(e, s.PartialBackup)
	encodeEviction(e, s.Eviction)
	e.systemTime("creation_ts", s.CreationTS)
}

func decodeV10(d *decoder) *State {
	s := newState()
	s.Tenant = d.hexID("tenant_id")
	s.Timeline = d.hexID("timeline_id")
	s.Mconf.Generation = pamsg.Generation(d.u32("mconf.generation"))
	s.Mconf.Members = decodeMembers(d, "mconf.members")
	if d.option("mconf.new_members") {
		s.Mconf.NewMembers = decodeMembers(d, "mconf.new_members")
	}
	s.AcceptorState = decodeAcceptor(d)
	s.Server = decodeServer(d)
	s.ProposerUUID = d.hexID("proposer_uuid")
	decodeLSNs(d, s)
	s.PartialBackup = decodePartialBackup(d)
	s.Eviction = decodeEviction(d)
	s.CreationTS = d.systemTime("creation_ts")
	return s
}

func encodeV9(e *encoder, s *State) {
	e.hexID(s.Tenant)
	e.hexID(s.Timeline)
	encodeAcceptor(e, s.AcceptorState)
	encodeServer(e, s.Server)
	e.hexID(s.ProposerUUID)
	encodeLSNs(e, s)
	e.length(0) // peers: never used, always empty
	encodePartialBackup(e, s.PartialBackup)
	encodeEviction(e, s.Eviction)
}

func decodeV9(d *decoder) *State {
	s := decodeV7(d)
	s.PartialBackup = decodePartialBackup(d)
	s.Eviction = decodeEviction(d)
	return s
}

// decodeV7 reads the layout formats 7, 8 and 9 share; 8 and 9 append to it.
func decodeV7(d *decoder) *State {
	s := newState()
	s.Tenant = d.hexID("tenant_id")
	s.Timeline = d.hexID("timeline_id")
	s.AcceptorState = decodeAcceptor(d)
	s.Server = decodeServer(d)
	s.ProposerUUID = d.hexID("proposer_uuid")
	decodeLSNs(d, s)
	skipPeers(d)
	return s
}

// encodeLSNs writes the six LSNs that follow proposer_uuid since format 7.
func encodeLSNs(e *encoder, s *State) {
	e.u64(uint64(s.TimelineStartLSN))
	e.u64(uint64(s.LocalStartLSN))
	e.u64(uint64(s.CommitLSN))
	e.u64(uint64(s.BackupLSN))
	e.u64(uint64(s.PeerHorizonLSN))
	e.u64(uint64(s.RemoteConsistentLSN))
}

func decodeLSNs(d *decoder, s *State) {
	s.TimelineStartLSN = lsn.LSN(d.u64("timeline_start_lsn"))
	s.LocalStartLSN = lsn.LSN(d.u64("local_start_lsn"))
	s.CommitLSN = lsn.LSN(d.u64("commit_lsn"))
	s.BackupLSN = lsn.LSN(d.u64("backup_lsn"))
	s.PeerHorizonLSN = lsn.LSN(d.u64("peer_horizon_lsn"))
	s.RemoteConsistentLSN = lsn.LSN(d.u64("remote_consistent_lsn"))
}

func encodeMembers(e *encoder, ms []pamsg.SafekeeperID) {
	e.length(len(ms))
	for _, m := range ms {
		e.u64(uint64(m.ID))
		e.str("safekeeper host", m.Host)
		e.u16(m.PgPort)
	}
}

// decodeMembers returns a non-nil slice, so that Some(empty) new_members
// stays a joint configuration.
func decodeMembers(d *decoder, what string) []pamsg.SafekeeperID {
	n := d.count(what, memberMinSize)
	ms := make([]pamsg.SafekeeperID, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var m pamsg.SafekeeperID
		m.ID = id.NodeID(d.u64(what + ".id"))
		m.Host = d.str(what + ".host")
		m.PgPort = d.u16(what + ".pg_port")
		ms = append(ms, m)
	}
	return ms
}

func encodeAcceptor(e *encoder, a AcceptorState) {
	e.u64(uint64(a.Term))
	e.length(len(a.TermHistory))
	for _, ts := range a.TermHistory {
		e.u64(uint64(ts.Term))
		e.u64(uint64(ts.LSN))
	}
}

func decodeAcceptor(d *decoder) AcceptorState {
	var a AcceptorState
	a.Term = pamsg.Term(d.u64("acceptor_state.term"))
	n := d.count("acceptor_state.term_history", termSwitchSize)
	a.TermHistory = make(pamsg.TermHistory, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		term := pamsg.Term(d.u64("term_history.term"))
		at := lsn.LSN(d.u64("term_history.lsn"))
		a.TermHistory = append(a.TermHistory, pamsg.TermSwitch{Term: term, LSN: at})
	}
	return a
}

func encodeServer(e *encoder, s ServerInfo) {
	e.u32(s.PgVersion)
	e.u64(s.SystemID)
	e.u32(s.WalSegSize)
}

func decodeServer(d *decoder) ServerInfo {
	var s ServerInfo
	s.PgVersion = d.u32("server.pg_version")
	s.SystemID = d.u64("server.system_id")
	s.WalSegSize = d.u32("server.wal_seg_size")
	return s
}

// skipPeers reads the obsolete peers vector of formats 4 and 7–9. Neon never
// fills it in and drops it on upgrade, so its contents are only validated.
func skipPeers(d *decoder) {
	n := d.count("peers", persistedPeerSize)
	d.take("peers", n*persistedPeerSize)
}

func encodePartialBackup(e *encoder, segs []PartialRemoteSegment) {
	e.length(len(segs))
	for _, p := range segs {
		e.variant(uint32(p.Status))
		e.str("partial segment name", p.Name)
		e.u64(uint64(p.CommitLSN))
		e.u64(uint64(p.FlushLSN))
		e.u64(uint64(p.Term))
	}
}

func decodePartialBackup(d *decoder) []PartialRemoteSegment {
	n := d.count("partial_backup.segments", partialSegMinSize)
	segs := make([]PartialRemoteSegment, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var p PartialRemoteSegment
		p.Status = UploadStatus(d.variant("partial segment status", uploadStatusCount))
		p.Name = d.str("partial segment name")
		p.CommitLSN = lsn.LSN(d.u64("partial segment commit_lsn"))
		p.FlushLSN = lsn.LSN(d.u64("partial segment flush_lsn"))
		p.Term = pamsg.Term(d.u64("partial segment term"))
		segs = append(segs, p)
	}
	return segs
}

func encodeEviction(e *encoder, ev Eviction) {
	if flush, ok := ev.Offloaded(); ok {
		e.variant(evictionOffloaded)
		e.u64(uint64(flush))
		return
	}
	e.variant(evictionPresent)
}

func decodeEviction(d *decoder) Eviction {
	if d.variant("eviction_state", evictionVariants) == evictionOffloaded {
		return Offloaded(lsn.LSN(d.u64("eviction_state flush_lsn")))
	}
	return Present()
}
