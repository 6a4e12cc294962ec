package pagecheck

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/value"
)

// Reconstructor rebuilds a page from what a read found: neonredo's
// Reconstructor (Neon records only) or the WAL-redo process pool.
type Reconstructor interface {
	Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
}

// PageCounts counts the pages ComparePages read for one label.
type PageCounts struct {
	Images  int // the stored image itself, nothing to apply
	Rebuilt int // rebuilt with records (on an image or from nothing)
	Skipped int // the Reconstructor returned neonredo.ErrNeedsRedo
}

// PageStats are PageCounts by label.
type PageStats map[string]PageCounts

// Total sums the counts of every label.
func (s PageStats) Total() PageCounts {
	var t PageCounts
	for _, c := range s {
		t.Images += c.Images
		t.Rebuilt += c.Rebuilt
		t.Skipped += c.Skipped
	}
	return t
}

// ComparePages rebuilds pages of the relation forks in rels (value: a
// label such as an access method name, used in messages and in the
// returned counts) with rc at the store's last record LSN and compares
// them, masked as MaskPage says, with the stopped primary's files in
// dataDir. It reads up to perRel pages of each fork — the first, the last
// and evenly spaced ones between — or all of them when perRel <= 0.
//
// FSM forks are skipped: vanilla PostgreSQL does not WAL-log them. A page
// rc fails to rebuild with neonredo.ErrNeedsRedo is counted as skipped, so
// that neonredo.Reconstructor{} can stand in for the WAL-redo pool; any
// other error, a fork whose stored size is not its file's, and a page
// that differs are test errors.
func ComparePages(t *testing.T, ctx context.Context, dataDir string, store Store, rc Reconstructor, rels map[key.Rel]string, perRel int) PageStats {
	t.Helper()
	at, _ := store.LastRecordLSN()
	stats := PageStats{}
	for _, rel := range slices.SortedFunc(maps.Keys(rels), compareRels) {
		if rel.Fork == key.ForkFSM {
			continue
		}
		label := rels[rel]
		counts := stats[label] // a label with no pages still shows up
		n, err := datadir.RelSize(ctx, store, rel, at)
		if err != nil {
			t.Errorf("%s (%s): stored size: %v", rel, label, err)
			stats[label] = counts
			continue
		}
		if onDisk := forkBlocks(t, dataDir, rel); onDisk != n {
			t.Errorf("%s (%s): stored size %d blocks, primary's %d", rel, label, n, onDisk)
			n = min(n, onDisk)
		}
		for _, blk := range sampleBlocks(n, perRel) {
			r, err := store.Get(ctx, key.RelBlock(rel, blk), at)
			if err != nil {
				t.Errorf("%s (%s) block %d: read at %s: %v", rel, label, blk, at, err)
				continue
			}
			got, err := rc.Reconstruct(ctx, r)
			switch {
			case errors.Is(err, neonredo.ErrNeedsRedo):
				counts.Skipped++
				continue
			case err != nil:
				t.Errorf("%s (%s) block %d (%s): %v", rel, label, blk, describe(r), err)
				continue
			case r.ImageOnly():
				counts.Images++
			default:
				counts.Rebuilt++
			}
			primary := ReadPage(t, dataDir, rel, blk)
			if a, b := MaskPage(got, rel.Fork), MaskPage(primary, rel.Fork); !bytes.Equal(a, b) {
				t.Errorf("%s (%s) block %d (%s) differs from the primary's at byte %d\n got     %s\n primary %s",
					rel, label, blk, describe(r), FirstDiff(a, b), pageHeader(got), pageHeader(primary))
			}
		}
		stats[label] = counts
	}
	return stats
}

// describe names what a page was rebuilt from.
func describe(r value.Reconstruction) string {
	base := "no image"
	if r.HasImage {
		base = fmt.Sprintf("image at %s", r.ImageLSN)
	}
	// The newest records, by resource manager and info, help to tell
	// which redo routine made a difference.
	var kinds []string
	for _, rec := range r.Records[max(0, len(r.Records)-4):] {
		if rec.Record.Kind != value.Postgres {
			kinds = append(kinds, fmt.Sprintf("%s@%s", rec.Record.Kind, rec.LSN))
			continue
		}
		if h, err := wal.DecodeRecordHeader(rec.Record.Raw); err == nil {
			kinds = append(kinds, fmt.Sprintf("%s/%#02x@%s", walrecord.RmgrName(h.RmID), h.Info, rec.LSN))
		}
	}
	return fmt.Sprintf("%s, %d records, last %v", base, len(r.Records), kinds)
}

func compareRels(a, b key.Rel) int {
	return cmp.Or(cmp.Compare(a.Spc, b.Spc), cmp.Compare(a.DB, b.DB), cmp.Compare(a.Rel, b.Rel), cmp.Compare(a.Fork, b.Fork))
}

// sampleBlocks picks up to per of n blocks, first and last included and
// the rest evenly spaced; all n when per <= 0 or per >= n.
func sampleBlocks(n uint32, per int) []uint32 {
	if per <= 0 || uint64(per) >= uint64(n) {
		blks := make([]uint32, n)
		for i := range blks {
			blks[i] = uint32(i)
		}
		return blks
	}
	if per == 1 {
		return []uint32{0}
	}
	// Since n > per, consecutive picks are at least one block apart.
	blks := make([]uint32, per)
	for i := range blks {
		blks[i] = uint32(uint64(i) * uint64(n-1) / uint64(per-1))
	}
	return blks
}

// forkBlocks is the size in blocks of a relation fork's files in dataDir
// (0 when it has none).
func forkBlocks(t *testing.T, dataDir string, rel key.Rel) uint32 {
	t.Helper()
	const segBlocks = 131072 // 1 GiB segments
	var n uint32
	for seg := uint32(0); ; seg++ {
		path, _ := relPath(dataDir, rel, seg*segBlocks)
		info, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n += uint32(info.Size() / BlockSize)
		if info.Size() < segBlocks*BlockSize {
			return n
		}
	}
}

// pageHeader describes a page's header fields, for difference reports.
func pageHeader(p []byte) string {
	if len(p) < 24 {
		return fmt.Sprintf("%d bytes", len(p))
	}
	le := binary.LittleEndian
	special := min(int(le.Uint16(p[16:])), len(p))
	return fmt.Sprintf("lsn %X/%X flags %#x lower %d upper %d special %d prune_xid %d opaque %x",
		le.Uint32(p[0:]), le.Uint32(p[4:]), le.Uint16(p[10:]), le.Uint16(p[12:]), le.Uint16(p[14:]), special, le.Uint32(p[20:]), p[special:])
}
