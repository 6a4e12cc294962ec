// Package pgpage_test checks pgpage's data page checksum against a real
// PostgreSQL 15 cluster initialised with --data-checksums: every page the
// server wrote must carry the checksum pgpage computes, and PostgreSQL's own
// pg_checksums must accept a page whose checksum pgpage rewrote.
package pgpage_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"strata.dev/pageserver/pgpage"
	"strata.dev/test/pgharness"
)

// relSegBlocks is RELSEG_SIZE: blocks per 1 GiB relation segment file, so
// block numbers count on across segments.
const relSegBlocks = 131072

func TestChecksumsOfRealCluster(t *testing.T) {
	c := pgharness.New(t, pgharness.WithDataChecksums())
	c.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, name text, qty int)`)
	c.Exec(t, `INSERT INTO items SELECT g, 'item ' || md5(g::text), g % 97 FROM generate_series(1, 5000) g`)
	c.Exec(t, `CREATE INDEX items_name ON items (name)`)
	// Dead tuples, then VACUUM: pruned pages, and the free space map and
	// visibility map forks, whose pages are checksummed too.
	c.Exec(t, `DELETE FROM items WHERE id % 7 = 0`)
	c.Exec(t, `VACUUM items`)
	c.Exec(t, `CHECKPOINT`)

	var items string
	c.QueryRow(t, `SELECT pg_relation_filepath('items')`).Scan(&items)
	items = filepath.Join(c.DataDir(), items)
	c.Stop(t) // shutdown checkpoint: every page is on disk

	// Every relation file of every database, catalogs included.
	checked := map[string]int{}
	total, newPages := 0, 0
	for _, dir := range []string{"global", "base"} {
		err := filepath.WalkDir(filepath.Join(c.DataDir(), dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			firstBlk, ok := relationFile(d.Name())
			if !ok {
				return nil
			}
			n, nNew := checkFile(t, path, firstBlk)
			checked[path] = n
			total += n
			newPages += nNew
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, fork := range []string{items, items + "_fsm", items + "_vm"} {
		t.Logf("%s: %d pages checked", filepath.Base(fork), checked[fork])
	}
	if checked[items] < 20 {
		t.Fatalf("items has %d checked pages; the test wants a table of some size", checked[items])
	}
	if checked[items+"_fsm"] == 0 || checked[items+"_vm"] == 0 {
		t.Fatalf("items has no free space map or visibility map pages")
	}
	t.Logf("%d pages in %d relation files match PostgreSQL's checksums; %d new pages skipped", total, len(checked), newPages)

	// Change a byte in a heap page (block 5, so the block number matters)
	// and let pg_checksums find the stale checksum, then fix it with
	// SetChecksum and let pg_checksums accept it.
	const blkno = 5
	page := readBlock(t, items, blkno)
	page[pgpage.BlockSize-1] ^= 0x5a // last byte of the last tuple
	if pgpage.Checksum(page, blkno) == pgpage.StoredChecksum(page) {
		t.Fatalf("block %d: checksum unchanged by a changed byte", blkno)
	}
	writeBlock(t, items, blkno, page)
	out, err := pgChecksums(c)
	if err == nil {
		t.Fatalf("pg_checksums --check accepted a page with a stale checksum:\n%s", out)
	}
	// pg_checksums prints what it computed for the page: it must be ours.
	want := fmt.Sprintf(", block %d: calculated checksum %X but block contains %X",
		blkno, pgpage.Checksum(page, blkno), pgpage.StoredChecksum(page))
	if !strings.Contains(out, want) || !strings.Contains(out, "Bad checksums:  1\n") {
		t.Fatalf("pg_checksums --check: %v; want one bad checksum and %q in its output:\n%s", err, want, out)
	}
	if err := pgpage.SetChecksum(page, blkno); err != nil {
		t.Fatal(err)
	}
	writeBlock(t, items, blkno, page)
	out, err = pgChecksums(c)
	if err != nil {
		t.Fatalf("pg_checksums --check rejected the checksum SetChecksum wrote: %v\n%s", err, out)
	}
	// And it looked at the same files and pages as the walk above.
	summary := fmt.Sprintf("Files scanned:   %d\nBlocks scanned:  %d\nBad checksums:  0\n", len(checked), total+newPages)
	if !strings.Contains(out, summary) {
		t.Fatalf("pg_checksums --check output lacks %q:\n%s", summary, out)
	}
	t.Logf("pg_checksums --check after SetChecksum:\n%s", out)
}

// relationFile reports whether name is a relation segment file
// ("16384", "16384_fsm", "16384.1", ...) and the block number its first
// page has in the fork.
func relationFile(name string) (firstBlk uint32, ok bool) {
	base, segText, hasSeg := strings.Cut(name, ".")
	node, fork, _ := strings.Cut(base, "_")
	if node == "" || strings.Trim(node, "0123456789") != "" {
		return 0, false
	}
	switch fork {
	case "", "fsm", "vm", "init":
	default:
		return 0, false
	}
	if !hasSeg {
		return 0, true
	}
	seg, err := strconv.ParseUint(segText, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(seg) * relSegBlocks, true
}

// checkFile compares Checksum with the stored pd_checksum on every page of
// one relation segment file whose first page is block firstBlk, and returns
// how many pages it checked and how many were new (no checksum).
func checkFile(t *testing.T, path string, firstBlk uint32) (checked, newPages int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%pgpage.BlockSize != 0 {
		t.Fatalf("%s: %d bytes, not a whole number of pages", path, len(data))
	}
	for i := 0; i < len(data)/pgpage.BlockSize; i++ {
		page := data[i*pgpage.BlockSize : (i+1)*pgpage.BlockSize]
		blkno := firstBlk + uint32(i)
		if pgpage.IsNew(page) {
			newPages++
			continue
		}
		if got, want := pgpage.Checksum(page, blkno), pgpage.StoredChecksum(page); got != want {
			t.Errorf("%s block %d: Checksum = %#04x, PostgreSQL stored %#04x", path, blkno, got, want)
		}
		checked++
	}
	return checked, newPages
}

// readBlock and writeBlock work on the first segment, which holds every
// block of the small relations here.
func readBlock(t *testing.T, path string, blkno int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, pgpage.BlockSize)
	if _, err := f.ReadAt(page, blkno*pgpage.BlockSize); err != nil {
		t.Fatalf("%s: read block %d: %v", path, blkno, err)
	}
	return page
}

// writeBlock writes in place, so the file keeps its owner (the server user).
func writeBlock(t *testing.T, path string, blkno int64, page []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(page, blkno*pgpage.BlockSize); err != nil {
		f.Close()
		t.Fatalf("%s: write block %d: %v", path, blkno, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// pgChecksums runs pg_checksums --check on the stopped cluster as its owner
// and returns its combined output.
func pgChecksums(c *pgharness.Cluster) (string, error) {
	out, err := c.Command("pg_checksums", "--check", "-D", c.DataDir()).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return string(out), fmt.Errorf("run pg_checksums: %w", err)
	}
	return string(out), err
}
