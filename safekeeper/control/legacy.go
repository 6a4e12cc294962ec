package control

// This file reads the control-file formats Neon wrote before format 9, so that
// data directories from old Neon safekeepers can be imported (SK §4.1, the
// "older versions" table). Nothing here writes: an upgraded state is written
// back as format 9 or 10 at its next Persist, never eagerly.
//
// The upgrade rules are Neon's (safekeeper/src/control_file_upgrade.rs):
//   - 1: the acceptor had {term, epoch}; the history becomes [(epoch, 0)].
//     Ids live inside server as 16 raw bytes, as does proposer_uuid.
//   - 2: like 1 but with a full term history.
//   - 3: like 2 but ids and proposer_uuid are hex strings.
//   - 1–3: truncate_lsn becomes peer_horizon_lsn; wal_start_lsn is dropped.
//   - 4: ids first; s3_wal_lsn, remote_consistent_lsn and peers are dropped
//     (Neon resets remote_consistent_lsn to 0 on this upgrade).
//   - 7: the format 9 layout up to and including peers (peers dropped).
//   - 8: 7 plus partial_backup.
//
// Every upgrade yields an empty membership configuration (generation 0), the
// Present eviction state and the Unix epoch as creation time.

import (
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

func decodeV8(d *decoder) *State {
	s := decodeV7(d)
	s.PartialBackup = decodePartialBackup(d)
	return s
}

func decodeV4(d *decoder) *State {
	s := newState()
	s.Tenant = d.hexID("tenant_id")
	s.Timeline = d.hexID("timeline_id")
	s.AcceptorState = decodeAcceptor(d)
	s.Server = decodeServer(d)
	s.ProposerUUID = d.hexID("proposer_uuid")
	s.CommitLSN = lsn.LSN(d.u64("commit_lsn"))
	d.u64("s3_wal_lsn")
	s.PeerHorizonLSN = lsn.LSN(d.u64("peer_horizon_lsn"))
	d.u64("remote_consistent_lsn")
	skipPeers(d)
	return s
}

func decodeV3(d *decoder) *State {
	s := newState()
	s.AcceptorState = decodeAcceptor(d)
	s.Server.PgVersion = d.u32("server.pg_version")
	s.Server.SystemID = d.u64("server.system_id")
	s.Tenant = d.hexID("server.tenant_id")
	s.Timeline = d.hexID("server.timeline_id")
	s.Server.WalSegSize = d.u32("server.wal_seg_size")
	s.ProposerUUID = d.hexID("proposer_uuid")
	decodeV1Tail(d, s)
	return s
}

func decodeV2(d *decoder) *State {
	s := newState()
	s.AcceptorState = decodeAcceptor(d)
	decodeV1Server(d, s)
	s.ProposerUUID = d.raw16("proposer_uuid")
	decodeV1Tail(d, s)
	return s
}

func decodeV1(d *decoder) *State {
	s := newState()
	s.AcceptorState.Term = pamsg.Term(d.u64("acceptor_state.term"))
	epoch := pamsg.Term(d.u64("acceptor_state.epoch"))
	s.AcceptorState.TermHistory = pamsg.TermHistory{{Term: epoch, LSN: 0}}
	decodeV1Server(d, s)
	s.ProposerUUID = d.raw16("proposer_uuid")
	decodeV1Tail(d, s)
	return s
}

// decodeV1Server reads the server info of formats 1 and 2, which held the
// ids as raw bytes.
func decodeV1Server(d *decoder, s *State) {
	s.Server.PgVersion = d.u32("server.pg_version")
	s.Server.SystemID = d.u64("server.system_id")
	s.Tenant = d.raw16("server.tenant_id")
	s.Timeline = d.raw16("server.timeline_id")
	s.Server.WalSegSize = d.u32("server.wal_seg_size")
}

// decodeV1Tail reads the three LSNs that end formats 1 to 3.
func decodeV1Tail(d *decoder, s *State) {
	s.CommitLSN = lsn.LSN(d.u64("commit_lsn"))
	s.PeerHorizonLSN = lsn.LSN(d.u64("truncate_lsn"))
	d.u64("wal_start_lsn")
}
