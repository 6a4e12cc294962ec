package ingest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
	"strata.dev/test/pgharness"
)

const blockSize = 8192

// primarySQL is what the primary reports over SQL before it stops.
type primarySQL struct {
	dbs      map[uint32]string  // pg_database: oid -> name
	sizes    map[key.Rel]uint32 // pg_relation_size / 8192 of each fork of each relation with storage
	unlogged map[key.Rel]bool   // main forks of unlogged relations (not WAL-logged)
	prepared []uint32           // pg_prepared_xacts
}

func snapshotSQL(t *testing.T, ctx context.Context, c *pgharness.Cluster) primarySQL {
	t.Helper()
	p := primarySQL{dbs: map[uint32]string{}, sizes: map[key.Rel]uint32{}, unlogged: map[key.Rel]bool{}}
	conn := c.MustConnect(t)
	rows, err := conn.Query(ctx, "SELECT oid::int8, datname, datallowconn FROM pg_database")
	if err != nil {
		t.Fatal(err)
	}
	var connectable []string
	for rows.Next() {
		var oid int64
		var name string
		var allow bool
		if err := rows.Scan(&oid, &name, &allow); err != nil {
			t.Fatal(err)
		}
		p.dbs[uint32(oid)] = name
		if allow {
			connectable = append(connectable, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, "SELECT transaction::text::int8 FROM pg_prepared_xacts ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var xid int64
		if err := rows.Scan(&xid); err != nil {
			t.Fatal(err)
		}
		p.prepared = append(p.prepared, uint32(xid))
	}
	conn.Close(ctx)

	const relations = `
		SELECT CASE WHEN c.reltablespace = 0 THEN 1663 ELSE c.reltablespace END::int8,
		       CASE WHEN c.reltablespace = 1664 THEN 0
		            ELSE (SELECT oid FROM pg_database WHERE datname = current_database()) END::int8,
		       pg_relation_filenode(c.oid)::int8, c.relpersistence::text,
		       pg_relation_size(c.oid, 'main'), pg_relation_size(c.oid, 'fsm'),
		       pg_relation_size(c.oid, 'vm'), pg_relation_size(c.oid, 'init')
		FROM pg_class c
		WHERE pg_relation_filenode(c.oid) IS NOT NULL AND c.relpersistence <> 't'`
	for _, name := range connectable {
		conn, err := pgx.Connect(ctx, c.ConnString(name))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, relations)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var spc, db, node int64
			var persistence string
			var bytes [4]int64
			if err := rows.Scan(&spc, &db, &node, &persistence, &bytes[0], &bytes[1], &bytes[2], &bytes[3]); err != nil {
				t.Fatal(err)
			}
			for fork, n := range bytes {
				rel := key.Rel{Spc: uint32(spc), DB: uint32(db), Rel: uint32(node), Fork: uint8(fork)}
				p.sizes[rel] = uint32(n / blockSize)
				if persistence == "u" && fork == int(key.ForkMain) {
					p.unlogged[rel] = true
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	return p
}

var relFile = regexp.MustCompile(`^([0-9]+)(_fsm|_vm|_init)?(\.([0-9]+))?$`)

// diskForks lists the relation forks in the stopped primary's data
// directory with their sizes in blocks (what pg_relation_size reports).
func diskForks(t *testing.T, dataDir string) map[key.Rel]uint32 {
	t.Helper()
	forks := map[key.Rel]uint32{}
	scan := func(dir string, spc, db uint32) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			m := relFile.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			node, _ := strconv.ParseUint(m[1], 10, 32)
			fork := map[string]uint8{"": 0, "_fsm": 1, "_vm": 2, "_init": 3}[m[2]]
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			rel := key.Rel{Spc: spc, DB: db, Rel: uint32(node), Fork: fork}
			forks[rel] += uint32(info.Size() / blockSize)
		}
	}
	scan(filepath.Join(dataDir, "global"), key.GlobalTablespace, 0)
	ents, err := os.ReadDir(filepath.Join(dataDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if db, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			scan(filepath.Join(dataDir, "base", e.Name()), key.DefaultTablespace, uint32(db))
		}
	}
	return forks
}

func relPath(dataDir string, rel key.Rel, blk uint32) (string, int64) {
	name := strconv.FormatUint(uint64(rel.Rel), 10) + [...]string{"", "_fsm", "_vm", "_init"}[rel.Fork]
	if seg := blk / 131072; seg > 0 {
		name += "." + strconv.FormatUint(uint64(seg), 10)
	}
	dir := filepath.Join(dataDir, "base", strconv.FormatUint(uint64(rel.DB), 10))
	if rel.Spc == key.GlobalTablespace {
		dir = filepath.Join(dataDir, "global")
	}
	return filepath.Join(dir, name), int64(blk%131072) * blockSize
}

func readPage(t *testing.T, dataDir string, rel key.Rel, blk uint32) []byte {
	t.Helper()
	path, off := relPath(dataDir, rel, blk)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, blockSize)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("%s block %d: %v", rel, blk, err)
	}
	return p
}

func compare(t *testing.T, ctx context.Context, c *pgharness.Cluster, store *ingesttest.MemStore, p primarySQL, w workloadInfo, beforeShutdown lsn.LSN) {
	final, _ := store.LastRecordLSN()
	disk := diskForks(t, c.DataDir())

	// The disk listing is what pg_relation_size reported.
	for rel, n := range p.sizes {
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
	for oid := range p.dbs {
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
		case p.unlogged[rel]:
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

	// Pages whose newest version is an image (or an image plus records
	// Go applies), compared with the primary's file after the shutdown
	// checkpoint, masked as maskPage says.
	var images, rebuilt, skippedRecords int
	for rel, n := range stored {
		if rel.Fork == key.ForkFSM {
			continue
		}
		for blk := range n {
			k := key.RelBlock(rel, blk)
			rec, err := store.Get(ctx, k, final)
			if err != nil {
				t.Fatalf("%s block %d: %v", rel, blk, err)
			}
			got := rec.Image
			if !rec.ImageOnly() {
				if got, err = store.Page(ctx, k, final); errors.Is(err, ingesttest.ErrNeedsRedo) {
					skippedRecords++
					continue
				} else if err != nil {
					t.Fatalf("%s block %d: %v", rel, blk, err)
				}
				rebuilt++
			} else {
				images++
			}
			primary := readPage(t, c.DataDir(), rel, blk)
			if a, b := maskPage(got, rel.Fork), maskPage(primary, rel.Fork); !bytes.Equal(a, b) {
				t.Errorf("%s block %d (image at %s, %d records) differs from the primary's at byte %d",
					rel, blk, rec.ImageLSN, len(rec.Records), firstDiff(a, b))
			}
		}
	}
	t.Logf("pages equal to the primary's: %d images, %d rebuilt in Go; %d need PostgreSQL redo (not compared)", images, rebuilt, skippedRecords)
	if images < 1000 {
		t.Errorf("only %d image pages compared", images)
	}

	compareSLRUs(t, ctx, c, store, final)

	// Prepared transactions: the open one, with its state file as the
	// shutdown checkpoint wrote it (without the CRC).
	xids, err := datadir.TwoPhaseXids(ctx, store, final)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(xids, p.prepared) || !slices.Equal(xids, []uint32{w.preparedXid}) {
		t.Errorf("prepared xids %v, primary %v", xids, p.prepared)
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
	wantCP.OldestActiveXid = w.preparedXid // the oldest prepared xid, not 0
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
	if _, ok := stored[key.Rel{Spc: key.DefaultTablespace, DB: w.fileCopyDB, Rel: 1259}]; !ok {
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

// compareSLRUs checks pg_xact and pg_multixact: the same segments, of the
// same length, and every page — rebuilt from the stored zero pages and the
// CLOG/multixact records applied in Go — equal to the primary's file
// (the 8-byte commit-timestamp tail of CLOG pages cut off, PS §3).
func compareSLRUs(t *testing.T, ctx context.Context, c *pgharness.Cluster, store *ingesttest.MemStore, final lsn.LSN) {
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
		segs, err := datadir.SlruSegments(ctx, store, kind, final)
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
			n, err := datadir.SlruSegmentSize(ctx, store, kind, seg, final)
			if err != nil {
				t.Fatal(err)
			}
			if int(n)*blockSize != len(file) {
				t.Errorf("%s segment %04X: %d pages stored, %d bytes on the primary", kind, seg, n, len(file))
				continue
			}
			for blk := range n {
				page, err := store.Page(ctx, key.SlruBlock(kind, seg, blk), final)
				if err != nil {
					t.Fatalf("%s segment %04X page %d: %v", kind, seg, blk, err)
				}
				if !bytes.Equal(page[:blockSize], file[blk*blockSize:(blk+1)*blockSize]) {
					i := firstDiff(page[:blockSize], file[blk*blockSize:])
					t.Errorf("%s segment %04X page %d differs at byte %d: stored % x, primary % x", kind, seg, blk, i, page[i:min(i+16, blockSize)], file[int(blk)*blockSize+i:int(blk)*blockSize+min(i+16, blockSize)])
				}
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
