// Package pagecheck checks what a pageserver timeline holds against the
// PostgreSQL 15 primary whose WAL it was given: PostgreSQL itself is the
// oracle. After the primary stops with a shutdown checkpoint, its data
// directory is final, and Compare checks the timeline at its last record
// LSN against it: the databases and their relation maps, the relation
// forks and their sizes, every page that needs no PostgreSQL redo (masked
// as MaskPage says), the SLRUs, the prepared transactions, the checkpoint
// and the live key space.
//
// Any Store can be checked: ingest's in-memory store
// (ingesttest.MemStore) or a timeline on disk (timeline.Timeline). Pages
// are rebuilt with the Reconstructor the test gives: the WAL-redo pool, or
// neonredo's, with which pages that need PostgreSQL redo are counted and
// skipped.
//
// Workload is the pgbench + DDL workload the checks expect (Compare knows
// about its prepared transaction and its FILE_COPY database), and
// ClusterOptions the settings it needs.
package pagecheck

import (
	"context"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// BlockSize is PostgreSQL's page size.
const BlockSize = 8192

// Store is what the checks read: a timeline's versioned values.
type Store interface {
	Get(ctx context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error)
	LastRecordLSN() (last, prev lsn.LSN)
}

// FirstDiff is the index of the first byte where a and b differ (the
// shorter length when one is a prefix of the other).
func FirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
