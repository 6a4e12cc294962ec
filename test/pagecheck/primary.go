package pagecheck

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"strata.dev/pageserver/key"
	"strata.dev/test/pgharness"
)

// PrimarySQL is what the primary reports over SQL before it stops.
type PrimarySQL struct {
	DBs      map[uint32]string  // pg_database: oid -> name
	Sizes    map[key.Rel]uint32 // pg_relation_size / 8192 of each fork of each relation with storage
	Unlogged map[key.Rel]bool   // main forks of unlogged relations (not WAL-logged)
	Prepared []uint32           // pg_prepared_xacts
}

// SnapshotSQL asks the running primary c for its databases, relation
// sizes and prepared transactions. Call it after the workload, just
// before stopping c.
func SnapshotSQL(t *testing.T, ctx context.Context, c *pgharness.Cluster) PrimarySQL {
	t.Helper()
	p := PrimarySQL{DBs: map[uint32]string{}, Sizes: map[key.Rel]uint32{}, Unlogged: map[key.Rel]bool{}}
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
		p.DBs[uint32(oid)] = name
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
		p.Prepared = append(p.Prepared, uint32(xid))
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
				p.Sizes[rel] = uint32(n / BlockSize)
				if persistence == "u" && fork == int(key.ForkMain) {
					p.Unlogged[rel] = true
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

// DiskForks lists the relation forks in the stopped primary's data
// directory with their sizes in blocks (what pg_relation_size reports).
func DiskForks(t *testing.T, dataDir string) map[key.Rel]uint32 {
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
			forks[rel] += uint32(info.Size() / BlockSize)
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

// relPath is the file of a relation fork's block in dataDir (1 GiB
// segments) and the block's offset in it.
func relPath(dataDir string, rel key.Rel, blk uint32) (string, int64) {
	name := strconv.FormatUint(uint64(rel.Rel), 10) + [...]string{"", "_fsm", "_vm", "_init"}[rel.Fork]
	if seg := blk / 131072; seg > 0 {
		name += "." + strconv.FormatUint(uint64(seg), 10)
	}
	dir := filepath.Join(dataDir, "base", strconv.FormatUint(uint64(rel.DB), 10))
	if rel.Spc == key.GlobalTablespace {
		dir = filepath.Join(dataDir, "global")
	}
	return filepath.Join(dir, name), int64(blk%131072) * BlockSize
}

// ReadPage reads one block of a relation fork from the data directory.
func ReadPage(t *testing.T, dataDir string, rel key.Rel, blk uint32) []byte {
	t.Helper()
	path, off := relPath(dataDir, rel, blk)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, BlockSize)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("%s block %d: %v", rel, blk, err)
	}
	return p
}
