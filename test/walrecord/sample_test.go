package walrecord_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"strata.dev/libs/walrecord"
)

// With STRATA_WALRECORD_TESTDATA=<dir> (libs/walrecord/testdata),
// TestAgainstPgWaldump also writes a sample of the records it checked, so
// that libs/walrecord's own tests and fuzz seeds have real records without
// a PostgreSQL:
//
//	records.bin.gz  per record: start u64, end u64, length u32 (LE), the record
//	expect.txt      pg_waldump's view of each (see libs/walrecord/realwal_test.go)
//
// The page= hashes are of the rebuilt pages this test verified (against the
// data file, the same page under another method, or pd_lower/pd_upper).
const sampleEnv = "STRATA_WALRECORD_TESTDATA"

// Caps keep the sample small.
const (
	perKind       = 2     // records per (rmgr, info) pair
	perImageKind  = 5     // records per (method, apply) image kind
	perCase       = 4     // origins, top-level xids, long main data, many blocks
	copyKeys      = 3     // template1 pages kept from every phase
	maxSampleSize = 20000 // bytes of one record
)

type sampler struct {
	dir      string
	recs     bytes.Buffer
	expect   strings.Builder
	n        int
	seen     map[string]int
	copyKeys map[string]bool
}

func newSampler(t *testing.T) *sampler {
	dir := os.Getenv(sampleEnv)
	if dir == "" {
		return nil
	}
	t.Logf("writing a sample of the records to %s", dir)
	return &sampler{dir: dir, seen: map[string]int{}, copyKeys: map[string]bool{}}
}

var commitOrigin = regexp.MustCompile(`origin: node (\d+),`)

// consider adds the record if it is of a kind the sample lacks. pages are
// the rebuilt images by block index; why says which were checked against
// what (for the disk or copy oracles), "" otherwise.
func (s *sampler) consider(r *walrecord.Record, d *dumpRecord, copyKey string, disk bool, pages [][]byte) {
	if s == nil || len(r.Raw) > maxSampleSize {
		return
	}
	take := false
	quota := func(key string, n int) {
		if s.seen[key] < n {
			s.seen[key]++
			take = true
		}
	}
	quota(fmt.Sprintf("kind %d/%#x", r.Header.RmID, r.RmInfo()), perKind)
	for i := range r.Blocks {
		if b := &r.Blocks[i]; b.HasImage {
			quota(fmt.Sprintf("image %v/%v/%v", b.Image.Compression(), b.Image.Apply(), b.Image.HoleLength > 0), perImageKind)
		}
	}
	if r.HasOrigin {
		quota("origin", perCase)
	}
	if r.ToplevelXID != 0 {
		quota("toplevel", perCase)
	}
	if len(r.MainData) > 255 {
		quota("long main data", perCase)
	}
	if len(r.Blocks) > 3 {
		quota("many blocks", perCase)
	}
	if copyKey != "" && (s.copyKeys[copyKey] || len(s.copyKeys) < copyKeys) {
		s.copyKeys[copyKey] = true
		take = true
	}
	take = take || disk
	if !take {
		return
	}
	s.n++
	var hdr [20]byte
	binary.LittleEndian.PutUint64(hdr[0:], uint64(r.StartLSN))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(r.EndLSN))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(len(r.Raw)))
	s.recs.Write(hdr[:])
	s.recs.Write(r.Raw)

	// The record line and block lines hold pg_waldump's fields, not ours.
	fmt.Fprintf(&s.expect, "%s %s rec=%d tot=%d tx=%d prev=%s", pgLSN(d.lsn), d.rmgr, d.recLen, d.totLen, d.xid, pgLSN(d.prev))
	if m := commitOrigin.FindStringSubmatch(d.desc); m != nil && d.rmgr == "Transaction" {
		fmt.Fprintf(&s.expect, " origin=%s", m[1])
	}
	desc := strings.ReplaceAll(d.desc, "\n", " ")
	if len(desc) > 100 {
		desc = desc[:100] + "..."
	}
	fmt.Fprintf(&s.expect, " | %s\n", desc)
	for i, b := range d.blocks {
		fmt.Fprintf(&s.expect, "\t#%d %d/%d/%d %s %d", b.id, b.spc, b.db, b.rel, b.fork, b.blk)
		if b.fpw {
			kind := "fpw"
			if !b.apply {
				kind = "fpw-verify"
			}
			fmt.Fprintf(&s.expect, " %s hole=%d+%d", kind, b.holeOffset, b.holeLength)
			if b.method != "" {
				fmt.Fprintf(&s.expect, " %s saved=%d", b.method, b.saved)
			}
			if i < len(pages) && pages[i] != nil {
				sum := sha256.Sum256(pages[i])
				fmt.Fprintf(&s.expect, " page=%s", hex.EncodeToString(sum[:8]))
			}
		}
		s.expect.WriteByte('\n')
	}
}

func (s *sampler) write(t *testing.T) {
	if s == nil {
		return
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(s.recs.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	head := "# pg_waldump --bkp-details of the records in records.bin.gz, written by test/walrecord (" + sampleEnv + ").\n"
	for name, b := range map[string][]byte{"records.bin.gz": gz.Bytes(), "expect.txt": []byte(head + s.expect.String())} {
		if err := os.WriteFile(filepath.Join(s.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("sampled %d records (%d bytes gzip'ed)", s.n, gz.Len())
}
