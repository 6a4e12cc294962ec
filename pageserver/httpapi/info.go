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
	last, prev := t.LastRecordLSN()
	dcl := t.DiskConsistentLSN()
	st := t.Status()
	id := t.ID()
	ti := TimelineInfo{
		TenantID: id.Tenant.String(), TimelineID: id.Timeline.String(),
		LastRecordLSN: last, PrevRecordLSN: prev, DiskConsistentLSN: dcl, RemoteConsistentLSN: dcl,
		InitDBLSN: t.InitDBLSN(), AppliedGCCutoffLSN: t.GCCutoff(), PgVersion: t.PgVersion(),
		State: st.State, WALSourceConnstr: st.Receiver.Safekeeper, LastReceivedMsgLSN: st.Received,
		SafekeeperCommitLSN: st.Receiver.CommitLSN, RecordsIngested: st.RecordsIngested, WALBytesReceived: st.BytesReceived,
	}
	if anc, at := t.Ancestor(); anc != nil {
		s := anc.ID().Timeline.String()
		ti.AncestorTimelineID, ti.AncestorLSN = &s, &at
	}
	for _, l := range t.Layers() {
		if !l.InMemory {
			ti.CurrentPhysicalSize += l.Size
		}
	}
	if st.Error != nil {
		if st.State == "Broken" {
			ti.StateError = st.Error.Error()
		} else {
			ti.WALReceiverLastError = st.Error.Error()
			tm := st.Receiver.LastErrorTime
			ti.WALReceiverErrorTime = &tm
		}
	}
	if !st.Receiver.LastMessage.IsZero() {
		us := st.Receiver.LastMessage.UnixMicro()
		ti.LastReceivedMsgTS = &us
	}
	return ti
}
