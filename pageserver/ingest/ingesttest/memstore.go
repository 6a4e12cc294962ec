// Package ingesttest provides an in-memory Store for tests of ingest and
// of what reads its output: every version of every key in maps, with the
// read rule of the timeline (newest image at or below the LSN plus the
// records above it) and page reconstruction for the records Go can apply.
package ingesttest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/value"
)

// ErrMissingKey is wrapped when a key has no complete value at an LSN.
var ErrMissingKey = errors.New("missing key")

// ErrNeedsRedo is wrapped by Page when a PostgreSQL record must be
// replayed, which only the WAL-redo process can do. It is
// neonredo.ErrNeedsRedo, for callers that test for either.
var ErrNeedsRedo = neonredo.ErrNeedsRedo

type version struct {
	lsn lsn.LSN
	v   value.Value
}

// MemStore is a Store in memory. Stored values are never modified.
type MemStore struct {
	// Reconstructor rebuilds the pages Page reads (database copies); nil:
	// neonredo's, which fails on pages with PostgreSQL records. Set it
	// before use.
	Reconstructor interface {
		Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
	}

	mu         sync.Mutex
	versions   map[key.Key][]version // sorted by LSN
	last, prev lsn.LSN
	commits    int
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{versions: make(map[key.Key][]version)} }

// Commit stores entries. Entry LSNs must be at least the current last
// record LSN (equal is allowed, for an import committed in pieces) and at
// most lastRecord, which must not go backwards. A version at an LSN that
// is already there replaces it.
func (s *MemStore) Commit(entries []value.Entry, lastRecord, prevRecord lsn.LSN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lastRecord < s.last {
		return fmt.Errorf("memstore: last record %s below %s", lastRecord, s.last)
	}
	for _, e := range entries {
		if e.LSN < s.last || e.LSN > lastRecord {
			return fmt.Errorf("memstore: %s@%s outside [%s, %s]", e.Key, e.LSN, s.last, lastRecord)
		}
	}
	for _, e := range entries {
		// The caller reuses the bytes (Store.Commit's contract).
		v, err := value.Decode(e.Value.Encode())
		if err != nil {
			return fmt.Errorf("memstore: %s@%s: %w", e.Key, e.LSN, err)
		}
		e.Value = v
		vs := s.versions[e.Key]
		i := sort.Search(len(vs), func(j int) bool { return vs[j].lsn >= e.LSN })
		if i < len(vs) && vs[i].lsn == e.LSN {
			vs[i].v = e.Value
			continue
		}
		s.versions[e.Key] = slices.Insert(vs, i, version{e.LSN, e.Value})
	}
	s.last, s.prev = lastRecord, prevRecord
	s.commits++
	return nil
}

// LastRecordLSN is what the last Commit set.
func (s *MemStore) LastRecordLSN() (last, prev lsn.LSN) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.prev
}

// Commits is the number of Commit calls that succeeded.
func (s *MemStore) Commits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// Get returns the versions needed to reconstruct k at at.
func (s *MemStore) Get(_ context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := value.Reconstruction{Key: k, LSN: at}
	vs := s.versions[k]
	i := sort.Search(len(vs), func(j int) bool { return vs[j].lsn > at })
	for i--; i >= 0; i-- {
		v := vs[i]
		if v.v.IsImage {
			rec.HasImage, rec.Image, rec.ImageLSN = true, v.v.Image, v.lsn
			break
		}
		rec.Records = append(rec.Records, value.Versioned{LSN: v.lsn, Record: v.v.Record})
		if v.v.WillInit() {
			break
		}
	}
	slices.Reverse(rec.Records)
	if !rec.HasImage && (len(rec.Records) == 0 || !rec.Records[0].Record.WillInit) {
		return rec, fmt.Errorf("key %s at %s (%d records without a base): %w", k, at, len(rec.Records), ErrMissingKey)
	}
	return rec, nil
}

// Page reconstructs a page at an LSN with the store's Reconstructor. A
// page that is a stored image is returned as stored: do not modify it.
func (s *MemStore) Page(ctx context.Context, k key.Key, at lsn.LSN) ([]byte, error) {
	rec, err := s.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	if s.Reconstructor == nil {
		return neonredo.Reconstruct(rec)
	}
	return s.Reconstructor.Reconstruct(ctx, rec)
}

// Latest is the newest version of k and its LSN.
func (s *MemStore) Latest(k key.Key) (value.Value, lsn.LSN, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.versions[k]
	if len(vs) == 0 {
		return value.Value{}, 0, false
	}
	return vs[len(vs)-1].v, vs[len(vs)-1].lsn, true
}

// Versions lists k's versions, oldest first.
func (s *MemStore) Versions(k key.Key) []value.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []value.Entry
	for _, v := range s.versions[k] {
		out = append(out, value.Entry{Key: k, LSN: v.lsn, Value: v.v})
	}
	return out
}

// Keys lists every key with a version, sorted.
func (s *MemStore) Keys() []key.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Keys(s.versions), key.Key.Compare)
}
