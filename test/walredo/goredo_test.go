package walredo_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/goredo"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/redo"
	"strata.dev/pageserver/value"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// goRedoWorkload writes every shape of the heap records goredo applies:
// COPY FREEZE (pgbench -i: MULTI_INSERT+INIT with all-frozen pages),
// COPY into a table that has rows (MULTI_INSERT with offsets, on a page
// that is partly full), single inserts with nulls and TOASTed values,
// inserts into line pointers VACUUM freed, speculative inserts (CONFIRM),
// updates within and across pages (some to new pages: UPDATE+INIT), row
// locks, deletes, VACUUM (VISIBLE), and then pgbench's HOT updates with
// prefixes and suffixes taken from the old version, mixed with the pruning
// only redo processes apply.
var goRedoWorkload = []string{
	`CREATE TABLE g (id int, note text, n numeric, flag bool)`,
	`INSERT INTO g SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE repeat('x', i % 50) END, i * 1.5, i % 2 = 0 FROM generate_series(1, 3000) i`,
	`COPY g (id, note) FROM PROGRAM 'seq 1 5000 | sed "s/$/\tc/"'`,
	`INSERT INTO g VALUES (-1, repeat('toasted ', 4000), NULL, NULL)`,
	`DELETE FROM g WHERE id % 7 = 0`,
	`VACUUM g`,
	`INSERT INTO g SELECT i, 'reused', NULL, true FROM generate_series(1, 500) i`,
	`CREATE TABLE u (id int PRIMARY KEY, v text)`,
	`INSERT INTO u SELECT i, 'a' FROM generate_series(1, 200) i`,
	`INSERT INTO u SELECT i, 'b' FROM generate_series(150, 400) i ON CONFLICT DO NOTHING`,
	`VACUUM FREEZE u`,
	`UPDATE g SET note = coalesce(note, '') || ' longer now' WHERE id % 11 = 0`,
	`UPDATE g SET flag = NOT flag WHERE id % 13 = 0`,
	`SELECT count(*) FROM (SELECT * FROM u WHERE id < 50 FOR UPDATE) s`,
	`SELECT count(*) FROM (SELECT * FROM u WHERE id BETWEEN 50 AND 80 FOR KEY SHARE) s`,
	`DELETE FROM u WHERE id % 5 = 0`,
	`CREATE TABLE c (id int) WITH (autovacuum_enabled = off)`,
	`COPY c FROM PROGRAM 'seq 1 20000'`,
	`VACUUM c`,
}

// TestGoRedo: every heap and index page rebuilt with the records goredo
// supports applied in Go is byte for byte the page a redo process makes
// of the same records, at a mid-workload LSN and at the end.
func TestGoRedo(t *testing.T) {
	ctx := context.Background()
	c := pgharness.New(t, pagecheck.ImportOptions()...)
	store, start := pagecheck.ImportInitdb(t, ctx, c)
	c.Start(t)
	c.RunPgbench(t, "-i", "-s", "1", "-q")
	for _, q := range goRedoWorkload {
		c.Exec(t, q)
	}
	mid := c.InsertWALLSN(t)
	c.RunPgbench(t, "-n", "-c", "2", "-t", "300")
	c.Exec(t, `VACUUM`)
	c.Stop(t)
	end := walcheck.LatestCheckpoint(t, c)
	in, err := ingest.New(ctx, store, store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	last := pagecheck.IngestWAL(t, ctx, c, in, start, end)

	withGo := daemons.NewRedoPool(t, daemons.RedoOptions(t, 1))
	opts := daemons.RedoOptions(t, 1)
	opts.NoGoRedo = true
	processOnly := daemons.NewRedoPool(t, opts)

	began := time.Now()
	pages, goRecords, vmPages := 0, 0, 0
	shapes := map[string]int{}
	for _, k := range store.Keys() {
		if !k.IsRelBlock() || (k.Rel().Fork != key.ForkMain && k.Rel().Fork != key.ForkVM) {
			continue // goredo does heap, index and visibility-map pages
		}
		for _, at := range []lsn.LSN{mid, last} {
			r, err := store.Get(ctx, k, at)
			if err != nil {
				continue // not there yet
			}
			n := supportedRecords(t, r, shapes)
			if n == 0 {
				continue
			}
			want, err := processOnly.Reconstruct(ctx, r)
			if err != nil {
				t.Fatalf("%s at %s by redo processes: %v", k, at, err)
			}
			got, err := withGo.Reconstruct(ctx, r)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("differs at byte %d", pagecheck.FirstDiff(got, want))
			}
			if err != nil {
				t.Errorf("%s at %s with Go heap redo: %v", k, at, err)
				firstDifference(t, ctx, withGo, processOnly, r)
				t.FailNow()
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s at %s: Go heap redo differs from the redo process at byte %d (of %d records, %d applied in Go)",
					k, at, pagecheck.FirstDiff(got, want), len(r.Records), n)
			}
			pages++
			goRecords += n
			if k.Rel().Fork == key.ForkVM {
				vmPages++
			}
		}
	}
	t.Logf("%d pages equal (%d of them visibility-map pages), %d records applied in Go (%v), in %v", pages, vmPages, goRecords, shapes, time.Since(began).Round(time.Millisecond))
	if vmPages == 0 {
		t.Error("no visibility-map page had records applied in Go")
	}
	if pages < 1000 {
		t.Fatalf("only %d pages had heap records applied in Go; the workload should give thousands", pages)
	}
	for _, s := range []string{"Heap/0x0", "Heap/0x80", "Heap/0x10", "Heap/0x20", "Heap/0xa0", "Heap/0x40", "Heap/0x50", "Heap/0x60",
		"Heap2/0x10", "Heap2/0x20", "Heap2/0x50", "Heap2/0xd0", "Heap2/0x40", "Btree/0x0"} {
		if shapes[s] == 0 {
			t.Errorf("no %s record applied in Go: the workload no longer writes that shape", s)
		}
	}
}

// supportedRecords counts the records of r a rebuild applies that goredo
// applies, and adds them to shapes by resource manager and info
// ("Heap2/0xd0": MULTI_INSERT+INIT).
func supportedRecords(t *testing.T, r value.Reconstruction, shapes map[string]int) int {
	t.Helper()
	recs, err := pagecheck.RecordsToApply(r)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if goredo.Supported(&rec.Record, rec.Block) {
			n++
			shapes[fmt.Sprintf("%s/%#x", walrecord.RmgrName(rec.Header.RmID), rec.RmInfo())]++
		}
	}
	return n
}

// firstDifference finds the first of r's records after which the page
// rebuilt with Go heap redo differs from the redo process's, and logs it.
func firstDifference(t *testing.T, ctx context.Context, withGo, processOnly *redo.Pool, r value.Reconstruction) {
	t.Helper()
	for i := range r.Records {
		part := r
		part.Records = r.Records[:i+1]
		part.LSN = r.Records[i].LSN
		want, err := processOnly.Reconstruct(ctx, part)
		if err != nil {
			t.Logf("record %d at %s: redo process: %v", i, part.LSN, err)
			return
		}
		got, err := withGo.Reconstruct(ctx, part)
		if err != nil || !bytes.Equal(got, want) {
			rec, derr := walrecord.Decode(r.Records[i].Record.Raw, part.LSN, part.LSN)
			desc := fmt.Sprint(derr)
			if derr == nil {
				desc = fmt.Sprintf("%s/%#x main % x blocks %+v", walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), rec.MainData, rec.Blocks)
			}
			diff := -1
			if err == nil {
				diff = pagecheck.FirstDiff(got, want)
			}
			t.Logf("first difference after record %d of %d at %s (%s): err %v, byte %d", i, len(r.Records), part.LSN, desc, err, diff)
			if diff >= 0 {
				lo := max(0, diff-32)
				t.Logf("go:  % x", got[lo:min(len(got), diff+64)])
				t.Logf("pg:  % x", want[lo:min(len(want), diff+64)])
			}
			return
		}
	}
}
