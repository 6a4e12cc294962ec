package httpapi

import (
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/tenant"
)

// TimelineInfo is Neon's timeline description (PS §9.1), the fields this
// pageserver knows. Without remote storage remote_consistent_lsn is the
// disk-consistent LSN: local layer files are the durable copy.
type TimelineInfo struct {
	TenantID            string   `json:"tenant_id"`
	TimelineID          string   `json:"timeline_id"`
	AncestorTimelineID  *string  `json:"ancestor_timeline_id"`
	AncestorLSN         *lsn.LSN `json:"ancestor_lsn"`
	LastRecordLSN       lsn.LSN  `json:"last_record_lsn"`
	PrevRecordLSN       lsn.LSN  `json:"prev_record_lsn"`
	DiskConsistentLSN   lsn.LSN  `json:"disk_consistent_lsn"`
	RemoteConsistentLSN lsn.LSN  `json:"remote_consistent_lsn"`
	InitDBLSN           lsn.LSN  `json:"initdb_lsn"`
	AppliedGCCutoffLSN  lsn.LSN  `json:"applied_gc_cutoff_lsn"`
	PgVersion           uint32   `json:"pg_version"`
	CurrentPhysicalSize int64    `json:"current_physical_size"`
	State               string   `json:"state"`
	// StateError says why a Broken timeline stopped ingesting.
	StateError string `json:"state_error,omitempty"`

	WALSourceConnstr     string     `json:"wal_source_connstr"`
	LastReceivedMsgLSN   lsn.LSN    `json:"last_received_msg_lsn"`
	LastReceivedMsgTS    *int64     `json:"last_received_msg_ts"` // µs since the Unix epoch
	SafekeeperCommitLSN  lsn.LSN    `json:"safekeeper_commit_lsn"`
	WALReceiverLastError string     `json:"walreceiver_last_error,omitempty"`
	WALReceiverErrorTime *time.Time `json:"walreceiver_last_error_time,omitempty"`
	RecordsIngested      uint64     `json:"records_ingested"`
	WALBytesReceived     uint64     `json:"wal_bytes_received"`
}

func info(t *tenant.Timeline) TimelineInfo {
	in := t.Info()
	ti := TimelineInfo{
		TenantID: in.ID.Tenant.String(), TimelineID: in.ID.Timeline.String(),
		LastRecordLSN: in.LastRecord, PrevRecordLSN: in.PrevRecord, DiskConsistentLSN: in.DiskConsistent,
		RemoteConsistentLSN: in.RemoteConsistent, InitDBLSN: in.InitDB, AppliedGCCutoffLSN: in.GCCutoff,
		PgVersion: in.PgVersion, CurrentPhysicalSize: in.LayerBytes, State: in.State, StateError: in.StateError,
		WALSourceConnstr: in.WALSource, LastReceivedMsgLSN: in.LastReceived, SafekeeperCommitLSN: in.SafekeeperCommitLSN,
		WALReceiverLastError: in.ReceiverError, RecordsIngested: in.RecordsIngested, WALBytesReceived: in.WALBytesReceived,
	}
	if !in.Ancestor.IsZero() {
		s, at := in.Ancestor.String(), in.AncestorLSN
		ti.AncestorTimelineID, ti.AncestorLSN = &s, &at
	}
	if in.ReceiverError != "" {
		tm := in.ReceiverErrorTime
		ti.WALReceiverErrorTime = &tm
	}
	if !in.LastMessage.IsZero() {
		us := in.LastMessage.UnixMicro()
		ti.LastReceivedMsgTS = &us
	}
	return ti
}
