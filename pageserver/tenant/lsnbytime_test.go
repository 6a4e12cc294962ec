package tenant

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/value"
)

// commitLog is a CLOG as the timeline stores it: page images at base (page
// 0's carrying a commit timestamp when imageTS is set) and one
// ClogSetCommitted record per commit, at the commit record's end LSN.
type commitLog struct {
	base    lsn.LSN
	imageTS int64 // 0: images without a timestamp
	commits []commit
}

type commit struct {
	end lsn.LSN
	xid uint32
	ts  int64
}

const xactsPerPage = 32768

func (c *commitLog) Get(_ context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error) {
	img := func(b []byte) (value.Reconstruction, error) {
		return value.Reconstruction{Key: k, LSN: at, HasImage: true, Image: b, ImageLSN: c.base}, nil
	}
	switch k {
	case key.SlruDir(key.Clog):
		return img(value.U32Set{0: {}}.Encode())
	case key.SlruSegSize(key.Clog, 0):
		return img(value.EncodeSize(2))
	}
	for blk := range uint32(2) {
		if k != key.SlruBlock(key.Clog, 0, blk) {
			continue
		}
		page := make([]byte, neonredo.BlockSize)
		if blk == 0 && c.imageTS != 0 {
			page = binary.BigEndian.AppendUint64(page, uint64(c.imageTS))
		}
		r, _ := img(page)
		for _, cm := range c.commits {
			if cm.end <= at && cm.xid/xactsPerPage == blk {
				r.Records = append(r.Records, value.Versioned{LSN: cm.end,
					Record: value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{cm.xid}, Timestamp: cm.ts}})
			}
		}
		return r, nil
	}
	return value.Reconstruction{}, fmt.Errorf("unexpected key %s", k)
}

func TestLSNForTimestamp(t *testing.T) {
	// Commits at 10, 20 (on the second CLOG page), 30 and 40 (an abort
	// between them changes nothing). Ends are not 8-aligned, as real
	// records' often are not.
	log := &commitLog{base: 0x1000, commits: []commit{
		{end: 0x1203, xid: 700, ts: 10},
		{end: 0x2011, xid: xactsPerPage + 5, ts: 20},
		{end: 0x3804, xid: 702, ts: 30},
		{end: 0x3A7F, xid: 703, ts: 40},
	}}
	const lo, hi = 0x1000, 0x4000
	// visible reports which commits a read at l sees.
	visible := func(l lsn.LSN) (seen []int64) {
		for _, cm := range log.commits {
			if cm.end <= l {
				seen = append(seen, cm.ts)
			}
		}
		return seen
	}
	for _, tc := range []struct {
		ts   int64
		kind TimestampKind
		want []int64 // the commits visible at the answer
	}{
		{ts: 5, kind: TimestampPast},
		{ts: 10, kind: TimestampPresent, want: []int64{10}},
		{ts: 15, kind: TimestampPresent, want: []int64{10}},
		{ts: 20, kind: TimestampPresent, want: []int64{10, 20}},
		{ts: 35, kind: TimestampPresent, want: []int64{10, 20, 30}},
		{ts: 40, kind: TimestampFuture, want: []int64{10, 20, 30, 40}},
		{ts: 1 << 50, kind: TimestampFuture, want: []int64{10, 20, 30, 40}},
	} {
		got, err := lsnForTimestamp(context.Background(), log, lo, hi, tc.ts)
		if err != nil {
			t.Fatalf("ts %d: %v", tc.ts, err)
		}
		if got.Kind != tc.kind {
			t.Errorf("ts %d: %s at %s, want %s", tc.ts, got.Kind, got.LSN, tc.kind)
			continue
		}
		if got.LSN%8 != 0 || got.LSN < lo || got.LSN > hi {
			t.Errorf("ts %d: LSN %s is not an 8-aligned LSN in [%s, %s]", tc.ts, got.LSN, lsn.LSN(lo), lsn.LSN(hi))
		}
		if seen := visible(got.LSN); fmt.Sprint(seen) != fmt.Sprint(tc.want) {
			t.Errorf("ts %d: at %s the commits %v are visible, want %v", tc.ts, got.LSN, seen, tc.want)
		}
		switch tc.kind {
		case TimestampPast:
			if got.LSN != lo {
				t.Errorf("ts %d: past at %s, want the lowest LSN %s", tc.ts, got.LSN, lsn.LSN(lo))
			}
		case TimestampFuture:
			if got.LSN != hi {
				t.Errorf("ts %d: future at %s, want the last record %s", tc.ts, got.LSN, lsn.LSN(hi))
			}
		}
	}

	// The answer never goes below the lowest LSN the timeline serves, and
	// a search that starts after the first commit after ts is "past".
	if got, err := lsnForTimestamp(context.Background(), log, 0x2018, hi, 15); err != nil || got.Kind != TimestampPast || got.LSN != 0x2018 {
		t.Errorf("from 0/2018, ts 15: %+v, %v; want past at 0/2018", got, err)
	}

	// No timestamps at all, then one only in the page image (a CLOG page
	// imported or materialised after its records were compacted).
	empty := &commitLog{base: 0x1000}
	if got, err := lsnForTimestamp(context.Background(), empty, lo, hi, 10); err != nil || got.Kind != TimestampNoData || got.LSN != hi {
		t.Errorf("no commits: %+v, %v; want no data at the last record", got, err)
	}
	imageOnly := &commitLog{base: 0x1000, imageTS: 7}
	if got, err := lsnForTimestamp(context.Background(), imageOnly, lo, hi, 10); err != nil || got.Kind != TimestampFuture {
		t.Errorf("image timestamp 7, ts 10: %+v, %v; want future", got, err)
	}
	if got, err := lsnForTimestamp(context.Background(), imageOnly, lo, hi, 5); err != nil || got.Kind != TimestampPast {
		t.Errorf("image timestamp 7, ts 5: %+v, %v; want past", got, err)
	}

	// A cancelled search stops.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lsnForTimestamp(ctx, log, lo, hi, 15); err == nil {
		t.Error("a cancelled search succeeded")
	}
}
