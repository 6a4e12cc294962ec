package pagecheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/value"
	"strata.dev/test/pgharness"
)

// Compare checks store at its last record LSN against the stopped
// primary c: p is what c reported just before it stopped (SnapshotSQL),
// w what Workload learned. The store must hold every record c wrote
// through its shutdown checkpoint and nothing after: its last record LSN
// is the end of that record, and beforeShutdown the last record LSN just
// before it. rc rebuilds pages (the WAL-redo pool, or neonredo's, which
// leaves pages that need PostgreSQL uncompared).
func Compare(t *testing.T, ctx context.Context, c *pgharness.Cluster, store Store, rc Reconstructor, p PrimarySQL, w WorkloadInfo, beforeShutdown lsn.LSN) {
	final, _ := store.LastRecordLSN()
	disk := DiskForks(t, c.DataDir())

	// The disk listing is what pg_relation_size reported.
	for rel, n := range p.Sizes {
		if d, ok := disk[rel]; (ok || n > 0) && d != n {
			t.Errorf("harness: %s: pg_relation_size %d blocks, files %d", rel, n, d)
		}
	}

	// Databases: every pg_database entry and the global catalog, all with
	// a relation map equal to the file.
	dbs, err := datadir.DBDir(ctx, store, final)
	if err != nil {
		t.Fatal(err)
	}
	want := value.DBDir{{Spc: key.GlobalTablespace, DB: 0}: true}
	for oid := range p.DBs {
		want[value.DBKey{Spc: key.DefaultTablespace, DB: oid}] = true
	}
	if !maps.Equal(dbs, want) {
		t.Errorf("database directory %v, want %v", dbs, want)
	}
	for db := range want {
		path := filepath.Join(c.DataDir(), "global", "pg_filenode.map")
		if db.Spc == key.DefaultTablespace {
			path = filepath.Join(c.DataDir(), "base", strconv.FormatUint(uint64(db.DB), 10), "pg_filenode.map")
		}
		onDisk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := datadir.RelMap(ctx, store, db.Spc, db.DB, final); err != nil || !bytes.Equal(m, onDisk) {
			t.Errorf("relation map of %v differs (%v)", db, err)
		}
	}

	// Relation forks and sizes. The free-space map is not WAL-logged in
	// vanilla PostgreSQL (it is created, extended and updated without
	// WAL), so the stored FSM of a relation may be missing or shorter; the
	// main fork of an unlogged relation is not WAL-logged either.
	stored := map[key.Rel]uint32{}
	for db := range want {
		rels, err := datadir.ListRels(ctx, store, db.Spc, db.DB, final)
		if err != nil {
			t.Fatal(err)
		}
		for _, rel := range rels {
			n, err := datadir.RelSize(ctx, store, rel, final)
			if err != nil {
				t.Fatal(err)
			}
			stored[rel] = n
		}
	}
	var fsmMissing, fsmShorter int
	for rel, n := range disk {
		s, ok := stored[rel]
		switch {
		case rel.Fork == key.ForkFSM:
			if !ok {
				fsmMissing++
			} else if s > n {
				t.Errorf("%s: stored FSM of %d blocks, primary's %d", rel, s, n)
			} else if s < n {
				fsmShorter++
			}
		case p.Unlogged[rel]:
			if ok {
				t.Errorf("%s: unlogged main fork stored", rel)
			}
		case !ok:
			t.Errorf("%s (%d blocks) exists on the primary, not in the store", rel, n)
		case s != n:
			t.Errorf("%s: stored size %d blocks, primary's %d", rel, s, n)
		}
	}
	for rel := range stored {
		if _, ok := disk[rel]; !ok {
			t.Errorf("%s is stored but not on the primary", rel)
		}
	}
	t.Logf("%d relation forks compared; FSM forks missing %d, shorter %d", len(disk), fsmMissing, fsmShorter)

	// Every page, rebuilt by rc, compared with the primary's file after
	// the shutdown checkpoint, masked as MaskPage says. Forks whose sizes
	// differ were reported above.
	pages := map[key.Rel]string{}
	for rel, n := range stored {
		if d, ok := disk[rel]; ok && d == n {
			pages[rel] = fmt.Sprintf("fork %d", rel.Fork)
		}
	}
	stats := ComparePages(t, ctx, c.DataDir(), store, rc, pages, 0)
	total := stats.Total()
	t.Logf("pages equal to the primary's: %d images, %d rebuilt from records; %d need PostgreSQL redo (not compared)", total.Images, total.Rebuilt, total.Skipped)
	if total.Images+total.Rebuilt < 1000 {
		t.Errorf("only %d pages compared", total.Images+total.Rebuilt)
	}

	CompareSLRUs(t, ctx, c, store, final)

	// Prepared transactions: the open one, with its state file as the
	// shutdown checkpoint wrote it (without the CRC).
	xids, err := datadir.TwoPhaseXids(ctx, store, final)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(xids, p.Prepared) || !slices.Equal(xids, []uint32{w.PreparedXid}) {
		t.Errorf("prepared xids %v, primary %v", xids, p.Prepared)
	}
	for _, xid := range xids {
		file, err := os.ReadFile(filepath.Join(c.DataDir(), "pg_twophase", fmt.Sprintf("%08X", xid)))
		if err != nil {
			t.Fatal(err)
		}
		state, err := datadir.TwoPhaseFile(ctx, store, xid, final)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(state, file[:len(file)-4]) || crc32.Checksum(state, crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(file[len(file)-4:]) {
			t.Errorf("two-phase state of %d differs from pg_twophase", xid)
		}
	}

	// The checkpoint: what pg_control holds after the shutdown checkpoint,
	// and — the exact nextXid tracking of PS §7.7 — the same nextXid and
	// multixact counters just before that record, from the WAL alone.
	control, err := os.ReadFile(filepath.Join(c.DataDir(), "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	pgcp, err := pgrecords.DecodeCheckPoint(control[40:128])
	if err != nil {
		t.Fatal(err)
	}
	cp, err := datadir.Checkpoint(ctx, store, final)
	if err != nil {
		t.Fatal(err)
	}
	wantCP := pgcp
	wantCP.Redo = final                    // Neon's convention: the end of the shutdown checkpoint record
	wantCP.OldestActiveXid = w.PreparedXid // the oldest prepared xid, not 0
	wantCP.Time = cp.Time                  // not copied
	wantCP.FullPageWrites, wantCP.ThisTimeLineID, wantCP.PrevTimeLineID = cp.FullPageWrites, cp.ThisTimeLineID, cp.PrevTimeLineID
	if cp != wantCP {
		t.Errorf("checkpoint\n got %+v\nwant %+v", cp, wantCP)
	}
	before, err := datadir.Checkpoint(ctx, store, beforeShutdown)
	if err != nil {
		t.Fatal(err)
	}
	if before.NextXid != pgcp.NextXid || before.NextMulti != pgcp.NextMulti || before.NextMultiOffset != pgcp.NextMultiOffset {
		t.Errorf("before the shutdown checkpoint: nextXid %d nextMulti %d/%d, pg_control %d %d/%d",
			before.NextXid, before.NextMulti, before.NextMultiOffset, pgcp.NextXid, pgcp.NextMulti, pgcp.NextMultiOffset)
	}

	// The live key space holds every stored relation's blocks.
	ks, err := datadir.KeySpace(ctx, store, final)
	if err != nil {
		t.Fatal(err)
	}
	for rel, n := range stored {
		if n > 0 && !covered(ks, key.RelBlock(rel, n-1)) || covered(ks, key.RelBlock(rel, n)) {
			t.Errorf("key space wrong around the end of %s", rel)
		}
	}
	if _, ok := stored[key.Rel{Spc: key.DefaultTablespace, DB: w.FileCopyDB, Rel: 1259}]; !ok {
		t.Error("pg_class of the file-copied database is missing")
	}
}

func covered(ks []key.Range, k key.Key) bool {
	for _, r := range ks {
		if r.Contains(k) {
			return true
		}
	}
	return false
}

// CompareSLRUs checks pg_xact and pg_multixact: the same segments, of the
// same length, and every page — rebuilt from the stored zero pages and the
// CLOG/multixact records applied in Go — equal to the primary's file
// (the 8-byte commit-timestamp tail of CLOG pages cut off, PS §3).
func CompareSLRUs(t *testing.T, ctx context.Context, c *pgharness.Cluster, store Store, at lsn.LSN) {
	dirs := map[key.SlruKind]string{key.Clog: "pg_xact", key.MultiXactOffsets: "pg_multixact/offsets", key.MultiXactMembers: "pg_multixact/members"}
	for kind, dir := range dirs {
		ents, err := os.ReadDir(filepath.Join(c.DataDir(), dir))
		if err != nil {
			t.Fatal(err)
		}
		var onDisk []uint32
		for _, e := range ents {
			if seg, err := strconv.ParseUint(e.Name(), 16, 32); err == nil {
				onDisk = append(onDisk, uint32(seg))
			}
		}
		segs, err := datadir.SlruSegments(ctx, store, kind, at)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(segs, onDisk) {
			t.Errorf("%s segments %v, primary %v", kind, segs, onDisk)
			continue
		}
		for _, seg := range segs {
			file, err := os.ReadFile(filepath.Join(c.DataDir(), dir, fmt.Sprintf("%04X", seg)))
			if err != nil {
				t.Fatal(err)
			}
			n, err := datadir.SlruSegmentSize(ctx, store, kind, seg, at)
			if err != nil {
				t.Fatal(err)
			}
			if int(n)*BlockSize != len(file) {
				t.Errorf("%s segment %04X: %d pages stored, %d bytes on the primary", kind, seg, n, len(file))
				continue
			}
			for blk := range n {
				page, err := slruPage(ctx, store, key.SlruBlock(kind, seg, blk), at)
				if err != nil {
					t.Fatalf("%s segment %04X page %d: %v", kind, seg, blk, err)
				}
				if !bytes.Equal(page[:BlockSize], file[blk*BlockSize:(blk+1)*BlockSize]) {
					i := FirstDiff(page[:BlockSize], file[blk*BlockSize:])
					t.Errorf("%s segment %04X page %d differs at byte %d: stored % x, primary % x", kind, seg, blk, i, page[i:min(i+16, BlockSize)], file[int(blk)*BlockSize+i:int(blk)*BlockSize+min(i+16, BlockSize)])
				}
			}
		}
	}
}

// slruPage reads an SLRU page at an LSN, rebuilt in Go.
func slruPage(ctx context.Context, store Store, k key.Key, at lsn.LSN) ([]byte, error) {
	rec, err := store.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	return neonredo.Reconstruct(rec)
}
