package tenant

import (
	"context"
	"fmt"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/pgpage"
)

// Info describes a timeline for the management APIs (HTTP and gRPC), which
// only differ in how they spell it.
type Info struct {
	ID id.TenantTimeline
	// Ancestor is zero for a root timeline.
	Ancestor    id.TimelineID
	AncestorLSN lsn.LSN

	State string // "Active" or "Broken"
	// StateError is why a Broken timeline stopped ingesting.
	StateError string
	PgVersion  uint32

	LastRecord, PrevRecord lsn.LSN
	DiskConsistent         lsn.LSN
	// RemoteConsistent is DiskConsistent: without remote storage, local
	// layer files are the durable copy.
	RemoteConsistent lsn.LSN
	GCCutoff, InitDB lsn.LSN

	// Layer files on disk; in-memory layers are not counted.
	DeltaLayers, ImageLayers int
	LayerBytes               int64

	// The WAL receiver.
	WALSource           string // the safekeeper streamed from
	SafekeeperCommitLSN lsn.LSN
	LastReceived        lsn.LSN
	LastMessage         time.Time // zero if none yet
	// ReceiverError is the receiver's last error while the timeline is
	// Active, at ReceiverErrorTime.
	ReceiverError     string
	ReceiverErrorTime time.Time
	RecordsIngested   uint64
	WALBytesReceived  uint64
}

// Info describes the timeline now.
func (t *Timeline) Info() Info {
	last, prev := t.LastRecordLSN()
	dcl := t.DiskConsistentLSN()
	st := t.Status()
	in := Info{
		ID: t.ID(), State: st.State, PgVersion: t.PgVersion(),
		LastRecord: last, PrevRecord: prev, DiskConsistent: dcl, RemoteConsistent: dcl,
		GCCutoff: t.GCCutoff(), InitDB: t.InitDBLSN(),
		WALSource: st.Receiver.Safekeeper, SafekeeperCommitLSN: st.Receiver.CommitLSN,
		LastReceived: st.Received, LastMessage: st.Receiver.LastMessage,
		RecordsIngested: st.RecordsIngested, WALBytesReceived: st.BytesReceived,
	}
	if anc, at := t.Ancestor(); anc != nil {
		in.Ancestor, in.AncestorLSN = anc.ID().Timeline, at
	}
	for _, l := range t.Layers() {
		if l.InMemory {
			continue
		}
		if l.Kind == layer.KindImage {
			in.ImageLayers++
		} else {
			in.DeltaLayers++
		}
		in.LayerBytes += l.Size
	}
	if st.Error != nil {
		if st.State == "Broken" {
			in.StateError = st.Error.Error()
		} else {
			in.ReceiverError, in.ReceiverErrorTime = st.Error.Error(), st.Receiver.LastErrorTime
		}
	}
	return in
}

// LogicalSize is the sum of the sizes of every relation fork at an LSN, in
// bytes, from the database and relation directories.
func (t *Timeline) LogicalSize(ctx context.Context, at lsn.LSN) (uint64, error) {
	dbs, err := datadir.ListDatabases(ctx, t, at)
	if err != nil {
		return 0, fmt.Errorf("logical size of %s at %s: %w", t.ID(), at, err)
	}
	var blocks uint64
	for _, db := range dbs {
		rels, err := datadir.ListRels(ctx, t, db.Spc, db.DB, at)
		if err != nil {
			return 0, fmt.Errorf("logical size of %s at %s: %w", t.ID(), at, err)
		}
		for _, rel := range rels {
			// Listed in its directory, so its size key exists.
			n, err := datadir.StoredRelSize(ctx, t, rel, at)
			if err != nil {
				return 0, fmt.Errorf("logical size of %s at %s: %w", t.ID(), at, err)
			}
			blocks += uint64(n)
		}
	}
	return blocks * pgpage.BlockSize, nil
}

// Checkpoint writes the timeline's in-memory layers to layer files and,
// if compact, writes image layers where deltas pile up.
func (t *Timeline) Checkpoint(ctx context.Context, compact bool) error {
	if err := t.Flush(ctx); err != nil {
		return fmt.Errorf("checkpoint %s: %w", t.ID(), err)
	}
	if !compact {
		return nil
	}
	if err := t.Compact(ctx); err != nil {
		return fmt.Errorf("checkpoint %s: %w", t.ID(), err)
	}
	return nil
}
