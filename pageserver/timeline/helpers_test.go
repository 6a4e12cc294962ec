package timeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// fakeRedo applies test records: a will_init record's Raw is the value, any
// other record's Raw is appended to the value below it.
type fakeRedo struct{}

func (fakeRedo) Reconstruct(_ context.Context, r value.Reconstruction) ([]byte, error) {
	return applyRecords(r)
}

func applyRecords(r value.Reconstruction) ([]byte, error) {
	var b []byte
	switch {
	case r.HasImage:
		b = bytes.Clone(r.Image)
	case len(r.Records) == 0 || !r.Records[0].Record.WillInit:
		return nil, fmt.Errorf("no base for %s at %s", r.Key, r.LSN)
	}
	for _, v := range r.Records {
		if v.Record.WillInit {
			b = bytes.Clone(v.Record.Raw)
		} else {
			b = append(b, v.Record.Raw...)
		}
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func rel(n uint32) key.Rel { return key.Rel{Spc: key.DefaultTablespace, DB: 5, Rel: n} }

func blk(r, b uint32) key.Key { return key.RelBlock(rel(r), b) }

func img(s string) value.Value { return value.NewImage([]byte(s)) }
func rec(s string) value.Value { return value.NewPostgres([]byte(s), false) }
func ini(s string) value.Value { return value.NewPostgres([]byte(s), true) }

func ent(k key.Key, l lsn.LSN, v value.Value) value.Entry {
	return value.Entry{Key: k, LSN: l, Value: v}
}

func testID(n byte) id.TenantTimeline {
	return id.TenantTimeline{Tenant: id.ID{1}, Timeline: id.ID{n}}
}

func testOptions(t testing.TB, n byte) Options {
	return Options{
		TenantTimeline:     testID(n),
		PgVersion:          15,
		InitDBLSN:          0x100,
		CheckpointDistance: 1 << 20,
		CheckpointTimeout:  -1,
		Log:                zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Reconstructor:      fakeRedo{},
		// Small: reads go through it and evict from it.
		BlockCache: layer.NewBlockCache(64 << 10),
	}
}

func tlDir(base string, n byte) string { return filepath.Join(base, testID(n).Timeline.String()) }

// read returns the value of k at l on tl, as fakeRedo reconstructs it.
func read(tl *Timeline, k key.Key, l lsn.LSN) ([]byte, error) {
	r, err := tl.Get(context.Background(), k, l)
	if err != nil {
		return nil, err
	}
	if r.Key != k || r.LSN != l {
		return nil, fmt.Errorf("reconstruction of %s@%s says %s@%s", k, l, r.Key, r.LSN)
	}
	for i := 1; i < len(r.Records); i++ {
		if r.Records[i-1].LSN >= r.Records[i].LSN || (r.HasImage && r.Records[0].LSN <= r.ImageLSN) {
			return nil, fmt.Errorf("records of %s@%s out of order", k, l)
		}
	}
	return applyRecords(r)
}

func mustRead(t testing.TB, tl *Timeline, k key.Key, l lsn.LSN, want string) {
	t.Helper()
	got, err := read(tl, k, l)
	if err != nil || string(got) != want {
		t.Fatalf("read %s@%s = %q, %v; want %q", k, l, got, err, want)
	}
}

func mustMiss(t testing.TB, tl *Timeline, k key.Key, l lsn.LSN) {
	t.Helper()
	got, err := read(tl, k, l)
	if !errors.Is(err, ErrMissingKey) {
		t.Fatalf("read %s@%s = %q, %v; want ErrMissingKey", k, l, got, err)
	}
}

func mustCommit(t testing.TB, tl *Timeline, last lsn.LSN, es ...value.Entry) {
	t.Helper()
	cur, _ := tl.LastRecordLSN() // the previous batch's end stands in for prev_record_lsn
	if err := tl.Commit(es, last, cur); err != nil {
		t.Fatal(err)
	}
}

func mustFlush(t testing.TB, tl *Timeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// model is the expected contents of one timeline: every committed version
// and how reads fall through to the parent.
type model struct {
	parent   *model
	ancLSN   lsn.LSN
	versions map[key.Key][]value.Entry // by LSN
	batches  []batch
}

type batch struct {
	entries    []value.Entry
	last, prev lsn.LSN
}

func newModel(parent *model, anc lsn.LSN) *model {
	return &model{parent: parent, ancLSN: anc, versions: map[key.Key][]value.Entry{}}
}

func (m *model) commit(b batch) {
	m.batches = append(m.batches, b)
	for _, e := range b.entries {
		vs := m.versions[e.Key]
		i, found := slices.BinarySearchFunc(vs, e.LSN, func(x value.Entry, l lsn.LSN) int { return cmpLSN(x.LSN, l) })
		if found {
			vs[i] = e
		} else {
			vs = slices.Insert(vs, i, e)
		}
		m.versions[e.Key] = vs
	}
}

// lookup is the value of k at l, or ok=false when k has none.
func (m *model) lookup(k key.Key, l lsn.LSN) (b []byte, ok bool) {
	r := value.Reconstruction{Key: k, LSN: l}
	complete := false
	for cur := m; cur != nil && !complete; {
		vs := cur.versions[k]
		for i := len(vs) - 1; i >= 0 && !complete; i-- {
			e := vs[i]
			if e.LSN > l {
				continue
			}
			if e.Value.IsImage {
				r.HasImage, r.Image, r.ImageLSN, complete = true, e.Value.Image, e.LSN, true
				break
			}
			r.Records = append(r.Records, value.Versioned{LSN: e.LSN, Record: e.Value.Record})
			complete = e.Value.WillInit()
		}
		if !k.IsInherited() {
			break
		}
		l = min(l, cur.ancLSN)
		cur = cur.parent
	}
	if !complete {
		return nil, false
	}
	slices.Reverse(r.Records)
	b, err := applyRecords(r)
	if err != nil {
		panic(err)
	}
	return b, true
}
