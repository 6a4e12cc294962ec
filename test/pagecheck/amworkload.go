package pagecheck

import (
	"context"
	"errors"
	"os"
	"testing"

	"strata.dev/pageserver/key"
	"strata.dev/test/pgharness"
)

// AMSchema is the schema AMWorkload creates its objects in.
const AMSchema = "am"

// AMLabels are the labels AMRels gives the workload's relation forks:
// every one should have pages in the store after AMWorkload.
func AMLabels() []string {
	return []string{"heap", "toast", "sequence", "btree", "hash", "gin", "gist", "spgist", "brin", "bloom"}
}

// AMWorkload writes WAL of every built-in index access method and of the
// heap on c (started, with ClusterOptions), in the "postgres" database,
// schema AMSchema: one table indexed by btree (unique and with
// duplicates), hash, gin (fastupdate on and off), gist, spgist (quad tree
// and radix tree), brin and contrib bloom (generic WAL), a table of
// TOASTed values, compressed and not, and a sequence.
//
// CREATE INDEX mostly writes whole-page images, so every index is
// modified after it is built: inserts, HOT and non-HOT updates, deletes of
// a key range and VACUUM (index vacuum, page deletion, the GIN pending
// list flushed, BRIN ranges summarized). Checkpoints between the phases
// make the first change of a page after them carry an image, and later
// changes records only, so both kinds of page are in the store.
func AMWorkload(t *testing.T, ctx context.Context, c *pgharness.Cluster) {
	t.Helper()
	for _, sql := range []string{
		"CREATE SCHEMA " + AMSchema,
		"CREATE EXTENSION bloom",
		// fillfactor < 100 leaves room for HOT updates; note is in no index.
		`CREATE TABLE am.items (id int PRIMARY KEY, n int, ia int[], tags tsvector,
			b box, p point, label text, note text) WITH (fillfactor = 70)`,
		// Built empty, the hash index grows by bucket splits.
		"CREATE INDEX items_n ON am.items USING hash (n)", // 200 rows per value: overflow pages
		`INSERT INTO am.items SELECT g, g % 100,
			ARRAY[0, g % 100, g % 37, g],                               -- 0 in every row: a posting tree
			to_tsvector('simple', 'all w' || g % 50 || ' x' || g % 7),  -- "all": a posting tree
			box(point(g % 200, g / 200), point(g % 200 + 1, g / 200 + 1)),
			point(g % 200, g / 200), 'label' || g, 'n'
			FROM generate_series(1, 20000) g`,
		"CREATE INDEX items_label ON am.items (label)",
		"CREATE INDEX items_n_btree ON am.items (n)", // duplicates: posting lists
		"CREATE INDEX items_ia ON am.items USING gin (ia) WITH (fastupdate = on)",
		"CREATE INDEX items_tags ON am.items USING gin (tags) WITH (fastupdate = off)",
		"CREATE INDEX items_b ON am.items USING gist (b)",
		"CREATE INDEX items_p ON am.items USING spgist (p)",
		"CREATE INDEX items_label_radix ON am.items USING spgist (label)",
		"CREATE INDEX items_brin ON am.items USING brin (id, label) WITH (pages_per_range = 1)",
		"CREATE INDEX items_bloom ON am.items USING bloom (n, label) WITH (length = 80)",

		// Values over 2 KB: semi-repeated ones compress (pglz) but stay
		// over the threshold, random hex does not compress.
		"CREATE TABLE am.docs (id int PRIMARY KEY, body text)",
		`INSERT INTO am.docs SELECT d, CASE WHEN d % 2 = 0
			THEN (SELECT string_agg(repeat(md5(d || '-' || g), 4), '') FROM generate_series(1, 100) g)
			ELSE (SELECT string_agg(md5(random()::text || d || g), '') FROM generate_series(1, 200) g) END
			FROM generate_series(1, 200) d`,
		"CREATE SEQUENCE am.ids",
		"SELECT nextval('am.ids') FROM generate_series(1, 100)",
		"CHECKPOINT",

		// After the builds: inserts through every index (GIN fastupdate
		// into its pending list, posting-tree leaf splits), non-HOT and
		// HOT updates, TOAST replaced and deleted.
		`INSERT INTO am.items SELECT g, g % 100, ARRAY[0, g % 100, g % 37, g],
			to_tsvector('simple', 'all w' || g % 50 || ' x' || g % 7),
			box(point(g % 200, g / 200), point(g % 200 + 1, g / 200 + 1)),
			point(g % 200, g / 200), 'label' || g, 'n'
			FROM generate_series(20001, 25000) g`,
		"UPDATE am.items SET n = n + 1, ia = ia || 1000000, label = label || 'u' WHERE id % 10 = 1",
		"UPDATE am.items SET note = 'hot' || id WHERE id % 3 = 0",
		"UPDATE am.docs SET body = body || md5(id::text) WHERE id % 4 = 0",
		"DELETE FROM am.docs WHERE id % 5 = 0",
		"SELECT nextval('am.ids') FROM generate_series(1, 100)",
		// A key range goes: whole index pages empty out and are deleted.
		"DELETE FROM am.items WHERE id BETWEEN 2001 AND 8000",
		"VACUUM am.items",
		"VACUUM am.docs",
		"CHECKPOINT",

		// After the checkpoint: records on pages that have images.
		`INSERT INTO am.items SELECT g, g % 100, ARRAY[0, g % 100, g],
			to_tsvector('simple', 'all w' || g % 50),
			box(point(g % 200, g / 200), point(g % 200 + 1, g / 200 + 1)),
			point(g % 200, g / 200), 'label' || g, 'n'
			FROM generate_series(25001, 27000) g`,
		"UPDATE am.items SET note = 'hot2' WHERE id % 7 = 0",
		"DELETE FROM am.items WHERE id % 11 = 0",
		"VACUUM am.items",
		"UPDATE am.docs SET body = body || 'x' WHERE id % 3 = 0",
		"SELECT nextval('am.ids') FROM generate_series(1, 40)",
	} {
		c.Exec(t, sql)
	}
}

// AMRels lists, from the running primary c, every relation fork of what
// AMWorkload created and of its TOAST tables and their indexes, with its
// label: "heap", "toast", "sequence" or the index's access method name.
// Forks: main, and vm of tables that have one.
func AMRels(t *testing.T, ctx context.Context, c *pgharness.Cluster) map[key.Rel]string {
	t.Helper()
	const query = `
		WITH objs AS (
			SELECT c.oid, c.reltoastrelid FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1
		), toast AS (
			SELECT reltoastrelid AS oid FROM objs WHERE reltoastrelid <> 0
		), toastidx AS (
			SELECT indexrelid AS oid FROM pg_index WHERE indrelid IN (SELECT oid FROM toast)
		)
		SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::int8,
		       pg_relation_filenode(c.oid)::int8, c.relkind::text, coalesce(a.amname::text, '')
		FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam
		WHERE c.oid IN (SELECT oid FROM objs UNION ALL SELECT oid FROM toast UNION ALL SELECT oid FROM toastidx)
		  AND pg_relation_filenode(c.oid) IS NOT NULL`
	conn := c.MustConnect(t)
	rows, err := conn.Query(ctx, query, AMSchema)
	if err != nil {
		t.Fatalf("list the workload's relations: %v", err)
	}
	defer rows.Close()
	rels := map[key.Rel]string{}
	for rows.Next() {
		var db, node int64
		var kind, am string
		if err := rows.Scan(&db, &node, &kind, &am); err != nil {
			t.Fatal(err)
		}
		main := key.Rel{Spc: key.DefaultTablespace, DB: uint32(db), Rel: uint32(node), Fork: key.ForkMain}
		label := am
		switch kind {
		case "r", "m":
			label = "heap"
		case "t":
			label = "toast"
		case "S":
			label = "sequence"
		case "i":
		default:
			t.Fatalf("relation %d of unexpected kind %q", node, kind)
		}
		rels[main] = label
		if kind == "i" || kind == "S" {
			continue
		}
		vm := main
		vm.Fork = key.ForkVM
		path, _ := relPath(c.DataDir(), vm, 0)
		if _, err := os.Stat(path); err == nil {
			rels[vm] = label
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("list the workload's relations: %v", err)
	}
	return rels
}
