// Package walrecord_test is the acceptance oracle of libs/walrecord: a real
// PostgreSQL 15 writes WAL under every wal_compression method (and under
// wal_consistency_checking), and every record of it, decoded by wal.Decoder
// and walrecord.Decode, must agree with pg_waldump --bkp-details; every
// full-page image must rebuild into a page; images of pages whose content is
// known otherwise (read from the data file, or logged again under another
// compression method) must rebuild into exactly that content.
package walrecord_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// phase is one stretch of workload under one wal_compression setting.
type phase struct {
	method      string // wal_compression
	consistency bool   // wal_consistency_checking = 'all' (images without APPLY)
	from, to    lsn.LSN

	// copyDB is the database created from template1 with STRATEGY
	// wal_log: every template1 page logged as an image, with the same
	// content in every phase.
	copyDB uint32

	// The disk oracle: one page of table img_<method>, logged as an image by
	// an UPDATE in [updFrom, updTo), then read from the data file.
	imgRel         walrecord.RelFileNode
	updFrom, updTo lsn.LSN
	disk           []byte
}

var forkNames = [...]string{"main", "fsm", "vm", "init"}

func TestAgainstPgWaldump(t *testing.T) {
	start := time.Now()
	c := pgharness.New(t,
		pgharness.WithConf("wal_level", "logical"),     // subtransactions log XLR_BLOCK_ID_TOPLEVEL_XID
		pgharness.WithConf("wal_keep_size", "4GB"),     // every segment stays for the decode
		pgharness.WithConf("max_wal_size", "4GB"),      // no checkpoints but ours
		pgharness.WithConf("checkpoint_timeout", "1h"), // ditto
		pgharness.WithConf("autovacuum", "off"),        // pages change only when the test says
		pgharness.WithConf("max_prepared_transactions", "4"),
		pgharness.WithConf("track_commit_timestamp", "on"),
	)
	tblspc := c.MkdirShared(t, "tblspc")

	var phases []*phase
	for _, m := range []string{"off", "pglz", "lz4", "zstd"} {
		phases = append(phases, runPhase(t, c, &phase{method: m}, tblspc))
	}
	phases = append(phases, runPhase(t, c, &phase{method: "lz4", consistency: true}, tblspc))
	c.Stop(t)
	t.Logf("workload took %v", time.Since(start).Round(time.Millisecond))

	decodeStart := time.Now()
	st := compareWithWaldump(t, c, phases)
	t.Logf("decoded and compared %d records (%d images) from %s to %s in %v",
		st.records, st.images, st.start, st.end, time.Since(decodeStart).Round(time.Millisecond))
	t.Logf("records by rmgr: %v", st.byRmgr)
	t.Logf("images by compression: %v; not applied: %d; records with origin: %d, with top-level xid: %d",
		st.byMethod, st.notApplied, st.origins, st.toplevels)
	t.Logf("%d images of template1 copies compared across methods, %d with the data file", st.copyPages, st.diskChecked)

	for _, rm := range []string{"XLOG", "Transaction", "Storage", "Database", "Tablespace", "MultiXact",
		"RelMap", "Standby", "Heap2", "Heap", "Btree", "Hash", "Gin", "Gist", "Sequence", "SPGist", "BRIN",
		"ReplicationOrigin", "Generic", "LogicalMessage"} {
		if st.byRmgr[rm] == 0 {
			t.Errorf("the workload produced no %s record", rm)
		}
	}
	for _, m := range []walrecord.Compression{walrecord.CompressionNone, walrecord.CompressionPGLZ, walrecord.CompressionLZ4, walrecord.CompressionZstd} {
		if st.byMethod[m.String()] < 100 {
			t.Errorf("only %d images compressed with %v", st.byMethod[m.String()], m)
		}
	}
	if st.notApplied == 0 || st.origins == 0 || st.toplevels == 0 || st.originCommits == 0 {
		t.Errorf("missing cases: %d images not applied, %d records with origin (%d commits), %d with top-level xid",
			st.notApplied, st.origins, st.originCommits, st.toplevels)
	}
}

// runPhase runs the workload of one phase and fills in what the decode
// checks need.
func runPhase(t *testing.T, c *pgharness.Cluster, p *phase, tblspc string) *phase {
	t.Helper()
	name := p.method
	if p.consistency {
		name += "_check"
	}
	setConf(t, c, "wal_compression", p.method)
	if p.consistency {
		setConf(t, c, "wal_consistency_checking", "all")
		defer setConf(t, c, "wal_consistency_checking", "")
	}
	p.from = c.InsertWALLSN(t)

	// Every page of template1, as an image.
	c.Exec(t, "CREATE DATABASE copy_"+name+" STRATEGY wal_log")
	c.QueryRow(t, "SELECT oid FROM pg_database WHERE datname = $1", "copy_"+name).Scan(&p.copyDB)

	// The disk oracle: a compressible page, imaged by the first change
	// after a checkpoint, then written by the next checkpoint. Nothing
	// reads the table in between, so no hint bit changes the page.
	tbl := "img_" + name
	c.Exec(t, "CREATE TABLE "+tbl+" (id int, pad text) WITH (autovacuum_enabled = off)")
	c.Exec(t, "INSERT INTO "+tbl+" SELECT g, repeat(chr(65 + g % 26), 100) FROM generate_series(1, 30) g")
	var dbOID, relNode uint32
	var path string
	c.QueryRow(t, "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), pg_relation_filenode($1), pg_relation_filepath($1)",
		tbl).Scan(&dbOID, &relNode, &path)
	p.imgRel = walrecord.RelFileNode{Spc: 1663, DB: dbOID, Rel: relNode}
	c.Exec(t, "CHECKPOINT")
	p.updFrom = c.InsertWALLSN(t)
	c.Exec(t, "UPDATE "+tbl+" SET pad = repeat('z', 100) WHERE id = 1")
	p.updTo = c.InsertWALLSN(t)
	c.Exec(t, "CHECKPOINT")
	p.disk = readBlock(t, filepath.Join(c.DataDir(), path), 0)

	if !p.consistency {
		c.RunPgbench(t, "-i", "-s", "1", "-q")
		c.RunPgbench(t, "-T", "2", "-c", "2", "-j", "2")
	}
	ddl(t, c, name, tblspc)
	p.to = c.InsertWALLSN(t)
	return p
}

// ddl covers the resource managers and record headers pgbench does not.
func ddl(t *testing.T, c *pgharness.Cluster, name, tblspc string) {
	t.Helper()
	tbl := "t_" + name
	for _, sql := range []string{
		"CREATE TABLE " + tbl + " (a int PRIMARY KEY, b text, arr int[], p point, r int4range)",
		"INSERT INTO " + tbl + " SELECT g, md5(g::text), ARRAY[g % 10, g % 7], point(g % 100, g / 100), int4range(g, g + 10) FROM generate_series(1, 3000) g",
		"CREATE INDEX ON " + tbl + " (b)",
		"CREATE INDEX ON " + tbl + " USING hash (b)",
		"CREATE INDEX ON " + tbl + " USING gin (arr)",
		"CREATE INDEX ON " + tbl + " USING gist (r)",
		"CREATE INDEX ON " + tbl + " USING spgist (p)",
		"CREATE INDEX ON " + tbl + " USING brin (a)",
		"CREATE EXTENSION IF NOT EXISTS bloom",
		"CREATE INDEX ON " + tbl + " USING bloom (a)",
		"UPDATE " + tbl + " SET b = b || 'x' WHERE a % 5 = 0",
		"DELETE FROM " + tbl + " WHERE a % 7 = 0",
		"INSERT INTO " + tbl + " SELECT g, md5(g::text), ARRAY[g], point(g, g), int4range(g, g + 1) FROM generate_series(3001, 3500) g",
		"VACUUM " + tbl,
		"CREATE SEQUENCE seq_" + name,
		"SELECT nextval('seq_" + name + "') FROM generate_series(1, 100)",
		"SELECT pg_logical_emit_message(true, 'strata', 'transactional')",
		"SELECT pg_logical_emit_message(false, 'strata', repeat('m', 10000))",
		"TRUNCATE " + tbl,
		"CREATE TABLESPACE ts_" + name + " LOCATION '" + filepath.Join(tblspc, name) + "'",
		"CREATE TABLE ts_t_" + name + " TABLESPACE ts_" + name + " AS SELECT g FROM generate_series(1, 1000) g",
		"DROP TABLE ts_t_" + name,
		"DROP TABLESPACE ts_" + name,
		"VACUUM FULL pg_class",
		"CREATE DATABASE scratch_" + name,
		"DROP DATABASE scratch_" + name,
		"DROP TABLE " + tbl,
	} {
		if strings.HasPrefix(sql, "CREATE TABLESPACE") {
			dir := filepath.Join(tblspc, name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := c.User().Chown(dir); err != nil {
				t.Fatal(err)
			}
		}
		c.Exec(t, sql)
	}

	// Records with a replication origin, a two-phase commit, subtransactions
	// (top-level xid) and a multixact, each needing one session.
	conn := c.MustConnect(t)
	ctx := t.Context()
	for _, sql := range []string{
		"CREATE TABLE o_" + name + " (a int PRIMARY KEY, b int)",
		"SELECT pg_replication_origin_create('origin_" + name + "')",
		"SELECT pg_replication_origin_session_setup('origin_" + name + "')",
		"BEGIN",
		"SELECT pg_replication_origin_xact_setup('0/1000', now())",
		"INSERT INTO o_" + name + " SELECT g, g FROM generate_series(1, 10) g",
		"COMMIT",
		"SELECT pg_replication_origin_session_reset()",
		"SELECT pg_replication_origin_advance('origin_" + name + "', '0/2000')",
		"SELECT pg_replication_origin_drop('origin_" + name + "')",
		"BEGIN",
		"INSERT INTO o_" + name + " VALUES (100, 0)",
		"SAVEPOINT s1",
		"INSERT INTO o_" + name + " VALUES (101, 0)",
		"SAVEPOINT s2",
		"UPDATE o_" + name + " SET b = 1 WHERE a = 1",
		"RELEASE s2",
		"ROLLBACK TO s1",
		"INSERT INTO o_" + name + " VALUES (102, 0)",
		"COMMIT",
		"BEGIN",
		"INSERT INTO o_" + name + " VALUES (200, 0)",
		"PREPARE TRANSACTION 'p_" + name + "'",
		"COMMIT PREPARED 'p_" + name + "'",
		"BEGIN",
		"SELECT * FROM o_" + name + " WHERE a = 1 FOR SHARE",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// A second share lock on the same row makes a multixact.
	conn2 := c.MustConnect(t)
	for _, sql := range []string{"BEGIN", "SELECT * FROM o_" + name + " WHERE a = 1 FOR SHARE", "COMMIT"} {
		if _, err := conn2.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
}

func setConf(t *testing.T, c *pgharness.Cluster, key, value string) {
	t.Helper()
	c.Exec(t, fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", key, value))
	c.Exec(t, "SELECT pg_reload_conf()")
	walcheck.WaitFor(t, key+" = "+value, 10*time.Second, func() (bool, string) {
		var s string
		c.QueryRow(t, "SHOW "+key).Scan(&s)
		return s == value || (value == "" && s == ""), s
	})
}

func readBlock(t *testing.T, path string, blk int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, walrecord.BlockSize)
	if _, err := f.ReadAt(b, blk*walrecord.BlockSize); err != nil {
		t.Fatalf("read block %d of %s: %v", blk, path, err)
	}
	return b
}

type stats struct {
	start, end             lsn.LSN
	records, images        int
	byRmgr, byMethod       map[string]int
	notApplied             int
	origins, originCommits int
	toplevels              int
	copyPages              int
	diskChecked            int
}

// compareWithWaldump decodes the whole of pg_wal up to the shutdown
// checkpoint and compares every record with pg_waldump's view of it.
func compareWithWaldump(t *testing.T, c *pgharness.Cluster, phases []*phase) stats {
	t.Helper()
	segSize := c.WALSegmentSize()
	first := firstSegment(t, c.WALDir(), segSize)
	start := lsn.SegmentLSN(first, 0, segSize)
	checkpoint := walcheck.LatestCheckpoint(t, c)
	end := recordEnd(t, c.WALDir(), segSize, start, checkpoint)

	cmd := c.Command("pg_waldump", "--bkp-details", "--path", c.WALDir(), "--start", start.String(), "--end", end.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil && !t.Failed() {
			t.Fatalf("pg_waldump: %v\n%s", err, stderr.String())
		}
	}()
	next, stop := iter.Pull2(waldumpRecords(stdout))
	defer stop()

	st := stats{start: start, end: end, byRmgr: map[string]int{}, byMethod: map[string]int{}}
	xactsWithOrigin := map[uint32]uint16{}
	var topXIDs []uint32
	commits := map[uint32]bool{}
	copies := map[string][]byte{} // "rel/fork/blk" -> page, from the first phase
	copyPages := map[*phase]int{}
	sample := newSampler(t)
	var r walrecord.Record
	page := make([]byte, walrecord.BlockSize)

	dec := wal.NewDecoder(start, 15, segSize)
	for seg := first; ; seg++ {
		b, err := walcheck.ReadSegment(c.WALDir(), seg, segSize)
		if err != nil {
			t.Fatalf("segment %d: %v (the checkpoint at %s was not reached)", seg, err, checkpoint)
		}
		dec.Feed(b)
		for {
			rec, ok, err := dec.Next()
			if err != nil {
				t.Fatalf("wal decoder: %v", err)
			}
			if !ok {
				break
			}
			if err := walrecord.DecodeInto(&r, rec.Data, rec.StartLSN, rec.EndLSN); err != nil {
				t.Fatalf("walrecord: %v", err)
			}
			d, err, ok := next()
			if err != nil {
				t.Fatalf("pg_waldump output: %v\nstderr: %s", err, stderr.String())
			}
			if !ok {
				t.Fatalf("pg_waldump ended before the record at %s:\n%s\nstderr: %s", r.StartLSN, describe(&r), stderr.String())
			}
			if msg := compareRecord(&r, &d); msg != "" {
				t.Fatalf("record %d differs from pg_waldump: %s\npg_waldump:\n%s\nwalrecord:\n%s",
					st.records, msg, d.text, describe(&r))
			}
			st.records++
			st.byRmgr[walrecord.RmgrName(r.Header.RmID)]++
			if r.HasOrigin {
				st.origins++
				xactsWithOrigin[r.Header.XID] = r.Origin
			}
			if r.ToplevelXID != 0 {
				st.toplevels++
				topXIDs = append(topXIDs, r.ToplevelXID)
			}
			if r.Header.RmID == walrecord.RmTransaction && strings.HasPrefix(d.desc, "COMMIT") {
				commits[r.Header.XID] = true
				if o, ok := xactsWithOrigin[r.Header.XID]; ok && r.HasOrigin {
					if want := fmt.Sprintf("origin: node %d,", o); !strings.Contains(d.desc, want) {
						t.Fatalf("commit at %s has origin %d in its header; pg_waldump: %s", r.StartLSN, o, d.desc)
					}
					st.originCommits++
				}
			}
			ph := phaseOf(phases, r.StartLSN)
			var pages [][]byte // for the sample
			copyKey, disk := "", false
			for i := range r.Blocks {
				b := &r.Blocks[i]
				if !b.HasImage {
					continue
				}
				st.images++
				st.byMethod[b.Image.Compression().String()]++
				if !b.Image.Apply() {
					st.notApplied++
				}
				pg, err := b.Image.Page(page)
				if err != nil {
					t.Fatalf("record at %s block %d: %v\n%s", r.StartLSN, b.ID, err, d.text)
				}
				checkHole(t, &r, b, pg)
				if sample != nil {
					pages = append(pages, make([][]byte, i+1-len(pages))...)
					pages[i] = bytes.Clone(pg)
				}
				if ph == nil {
					continue
				}
				if b.Rel.DB == ph.copyDB && r.Header.RmID == walrecord.RmXLOG {
					key := fmt.Sprintf("%d/%d/%d", b.Rel.Rel, b.Fork, b.Blkno)
					copyKey = key
					if ph == phases[0] {
						copies[key] = bytes.Clone(pg)
					} else if want, ok := copies[key]; !ok {
						t.Fatalf("phase %s: page %s of the template1 copy was not logged in phase %s", ph.method, key, phases[0].method)
					} else if !bytes.Equal(pg, want) {
						t.Fatalf("phase %s (%v): page %s of the template1 copy differs from the uncompressed image at %s",
							ph.method, b.Image.Compression(), key, r.StartLSN)
					}
					copyPages[ph]++
				}
				if b.Rel == ph.imgRel && b.Blkno == 0 && r.StartLSN >= ph.updFrom && r.StartLSN < ph.updTo {
					checkDiskPage(t, ph, &r, b, pg)
					st.diskChecked++
					disk = true
				}
			}
			sample.consider(&r, &d, copyKey, disk, pages)
			if r.StartLSN == checkpoint {
				if _, _, ok := next(); ok {
					t.Fatalf("pg_waldump lists records after the shutdown checkpoint at %s", checkpoint)
				}
				for _, x := range topXIDs {
					if !commits[x] {
						t.Fatalf("top-level xid %d of a subtransaction record never commits", x)
					}
				}
				if st.diskChecked != len(phases) {
					t.Fatalf("compared %d images with the data file, want one per phase (%d)", st.diskChecked, len(phases))
				}
				for _, p := range phases {
					if copyPages[p] == 0 || copyPages[p] != copyPages[phases[0]] {
						t.Fatalf("phase %s logged %d pages of the template1 copy, phase %s %d",
							p.method, copyPages[p], phases[0].method, copyPages[phases[0]])
					}
					st.copyPages += copyPages[p]
				}
				sample.write(t)
				return st
			}
		}
	}
}

// waldumpRecords adapts parseWaldump to a pull iterator.
func waldumpRecords(r io.Reader) iter.Seq2[dumpRecord, error] {
	return func(yield func(dumpRecord, error) bool) {
		stopped := false
		err := parseWaldump(r, func(d dumpRecord) error {
			if !yield(d, nil) {
				stopped = true
				return io.EOF
			}
			return nil
		})
		if err != nil && !stopped {
			yield(dumpRecord{}, err)
		}
	}
}

func phaseOf(phases []*phase, l lsn.LSN) *phase {
	for _, p := range phases {
		if l >= p.from && l < p.to {
			return p
		}
	}
	return nil
}

// compareRecord returns what differs between the decoded record and
// pg_waldump's, or "".
func compareRecord(r *walrecord.Record, d *dumpRecord) string {
	h := r.Header
	switch {
	case r.StartLSN != d.lsn:
		return fmt.Sprintf("lsn %s, pg_waldump %s", r.StartLSN, d.lsn)
	case walrecord.RmgrName(h.RmID) != d.rmgr:
		return fmt.Sprintf("rmgr %s, pg_waldump %s", walrecord.RmgrName(h.RmID), d.rmgr)
	case h.TotLen != d.totLen || h.TotLen-r.FPILen() != d.recLen:
		return fmt.Sprintf("len (rec/tot) %d/%d, pg_waldump %d/%d", h.TotLen-r.FPILen(), h.TotLen, d.recLen, d.totLen)
	case h.XID != d.xid:
		return fmt.Sprintf("tx %d, pg_waldump %d", h.XID, d.xid)
	case h.Prev != d.prev:
		return fmt.Sprintf("prev %s, pg_waldump %s", h.Prev, d.prev)
	case len(r.Blocks) != len(d.blocks):
		return fmt.Sprintf("%d block references, pg_waldump %d", len(r.Blocks), len(d.blocks))
	}
	for i := range r.Blocks {
		b, w := &r.Blocks[i], &d.blocks[i]
		got := dumpOf(b)
		want := dumpBlock{id: w.id, spc: w.spc, db: w.db, rel: w.rel, fork: w.fork, blk: w.blk, fpw: w.fpw, apply: w.apply,
			holeOffset: w.holeOffset, holeLength: w.holeLength, method: w.method, saved: w.saved}
		if got != want {
			return fmt.Sprintf("block %d: %+v, pg_waldump %+v", i, got, want)
		}
	}
	return ""
}

// dumpOf is what pg_waldump would print of b, as a dumpBlock.
func dumpOf(b *walrecord.BlockRef) dumpBlock {
	fork := fmt.Sprintf("fork%d", b.Fork)
	if int(b.Fork) < len(forkNames) {
		fork = forkNames[b.Fork]
	}
	d := dumpBlock{id: b.ID, spc: b.Rel.Spc, db: b.Rel.DB, rel: b.Rel.Rel, fork: fork, blk: b.Blkno}
	if b.HasImage {
		im := &b.Image
		d.fpw, d.apply = true, im.Apply()
		d.holeOffset, d.holeLength = im.HoleOffset, im.HoleLength
		if c := im.Compression(); c != walrecord.CompressionNone {
			d.method = c.String()
			d.saved = uint32(walrecord.BlockSize - int(im.HoleLength) - len(im.Bytes))
		}
	}
	return d
}

// describe prints the decoded record the way pg_waldump would (without the
// resource manager's description), for failure messages.
func describe(r *walrecord.Record) string {
	h := r.Header
	var s strings.Builder
	fmt.Fprintf(&s, "rmgr: %-11s len (rec/tot): %6d/%6d, tx: %10d, lsn: %s, prev %s, origin %v/%d, toplevel xid %d, main data %d bytes\n",
		walrecord.RmgrName(h.RmID), h.TotLen-r.FPILen(), h.TotLen, h.XID, pgLSN(r.StartLSN), pgLSN(h.Prev), r.HasOrigin, r.Origin, r.ToplevelXID, len(r.MainData))
	for i := range r.Blocks {
		fmt.Fprintf(&s, "\t%+v\n", dumpOf(&r.Blocks[i]))
	}
	return s.String()
}

// pgLSN formats as pg_waldump does, the low half zero-padded to 8 digits.
func pgLSN(l lsn.LSN) string { return fmt.Sprintf("%X/%08X", uint64(l)>>32, uint32(l)) }

// checkHole: XLogRecordAssemble cuts the hole of a standard page from
// pd_lower to pd_upper, so a rebuilt page must say exactly that.
func checkHole(t *testing.T, r *walrecord.Record, b *walrecord.BlockRef, pg []byte) {
	t.Helper()
	if b.Image.HoleLength == 0 {
		return
	}
	lower, upper := binary.LittleEndian.Uint16(pg[12:]), binary.LittleEndian.Uint16(pg[14:])
	if lower != b.Image.HoleOffset || upper != b.Image.HoleOffset+b.Image.HoleLength {
		t.Fatalf("record at %s block %d (%v): rebuilt page has pd_lower %d pd_upper %d, hole %d+%d",
			r.StartLSN, b.ID, b.Image.Compression(), lower, upper, b.Image.HoleOffset, b.Image.HoleLength)
	}
}

// checkDiskPage compares the image with the page the checkpoint wrote,
// ignoring pd_lsn (bytes 0-7, set after the image was taken) and
// pd_checksum (8-9).
func checkDiskPage(t *testing.T, p *phase, r *walrecord.Record, b *walrecord.BlockRef, pg []byte) {
	t.Helper()
	if want := compressionOf(p.method); b.Image.Compression() != want {
		t.Fatalf("phase %s: the image at %s is %v, want %v", p.method, r.StartLSN, b.Image.Compression(), want)
	}
	if !bytes.Equal(pg[10:], p.disk[10:]) {
		i := 10
		for pg[i] == p.disk[i] {
			i++
		}
		t.Fatalf("phase %s: the image at %s differs from the data file at byte %d: %#x, on disk %#x",
			p.method, r.StartLSN, i, pg[i], p.disk[i])
	}
}

func compressionOf(method string) walrecord.Compression {
	switch method {
	case "pglz":
		return walrecord.CompressionPGLZ
	case "lz4":
		return walrecord.CompressionLZ4
	case "zstd":
		return walrecord.CompressionZstd
	}
	return walrecord.CompressionNone
}

// firstSegment is the oldest segment in pg_wal.
func firstSegment(t *testing.T, dir string, segSize uint64) uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []uint64
	for _, e := range ents {
		if !wal.IsSegmentFileName(e.Name()) {
			continue
		}
		_, n, _, err := wal.ParseSegmentFileName(e.Name(), segSize)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, n)
	}
	if len(segs) == 0 {
		t.Fatalf("no segments in %s", dir)
	}
	return slices.Min(segs)
}

// recordEnd finds the end LSN of the record starting at target.
func recordEnd(t *testing.T, dir string, segSize uint64, start, target lsn.LSN) lsn.LSN {
	t.Helper()
	dec := wal.NewBoundaryDecoder(start, 15, segSize)
	for seg := start.SegmentNumber(segSize); ; seg++ {
		b, err := walcheck.ReadSegment(dir, seg, segSize)
		if err != nil {
			t.Fatalf("looking for the record at %s: %v", target, err)
		}
		dec.Feed(b)
		for {
			rec, ok, err := dec.Next()
			if err != nil {
				t.Fatalf("looking for the record at %s: %v", target, err)
			}
			if !ok {
				break
			}
			if rec.StartLSN == target {
				return rec.EndLSN
			}
		}
	}
}
