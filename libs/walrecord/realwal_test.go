package walrecord

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"strata.dev/libs/lsn"
)

// testdata holds records sampled from a real PostgreSQL 15 by the acceptance
// test (test/walrecord; STRATA_WALRECORD_TESTDATA=<this dir> regenerates
// them): every resource manager and info value it saw, images under every
// wal_compression method, applied and for verification only, records with
// a replication origin and a top-level xid. expect.txt is pg_waldump's view
// of each, plus hashes of the rebuilt pages that test verified.

type realRecord struct {
	start, end lsn.LSN
	raw        []byte
	want       expectRecord
}

type expectRecord struct {
	line                string
	lsn, prev           lsn.LSN
	rmgr                string
	recLen, totLen, xid uint32
	origin              int // -1 if pg_waldump shows none
	blocks              []expectBlock
}

type expectBlock struct {
	line         string
	id           uint8
	rel          RelFileNode
	fork         string
	blk          uint32
	fpw, apply   bool
	off, holeLen uint16
	method       string
	saved        uint32
	page         string // sha256 prefix of the rebuilt page, if recorded
}

var (
	expectRecordLine = regexp.MustCompile(`^(\S+) (\S+) rec=(\d+) tot=(\d+) tx=(\d+) prev=(\S+)(?: origin=(\d+))? \| `)
	expectBlockLine  = regexp.MustCompile(`^\t#(\d+) (\d+)/(\d+)/(\d+) (\S+) (\d+)(?: (fpw|fpw-verify) hole=(\d+)\+(\d+)(?: (\S+) saved=(\d+))?(?: page=([0-9a-f]+))?)?$`)
)

func loadRealRecords(tb testing.TB) []realRecord {
	tb.Helper()
	f, err := os.Open("testdata/records.bin.gz")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	all, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	var recs []realRecord
	for len(all) > 0 {
		if len(all) < 20 {
			tb.Fatalf("records.bin.gz: %d trailing bytes", len(all))
		}
		n := int(binary.LittleEndian.Uint32(all[16:]))
		recs = append(recs, realRecord{
			start: lsn.LSN(binary.LittleEndian.Uint64(all)),
			end:   lsn.LSN(binary.LittleEndian.Uint64(all[8:])),
			raw:   all[20 : 20+n],
		})
		all = all[20+n:]
	}

	ef, err := os.Open("testdata/expect.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer ef.Close()
	sc := bufio.NewScanner(ef)
	i := -1
	num := func(s string) uint32 {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			tb.Fatalf("expect.txt: %v", err)
		}
		return uint32(v)
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if m := expectRecordLine.FindStringSubmatch(line); m != nil {
			i++
			if i >= len(recs) {
				tb.Fatalf("expect.txt lists more records than records.bin.gz (%d)", len(recs))
			}
			w := expectRecord{line: line, lsn: lsn.MustParse(m[1]), rmgr: m[2], recLen: num(m[3]), totLen: num(m[4]),
				xid: num(m[5]), prev: lsn.MustParse(m[6]), origin: -1}
			if m[7] != "" {
				w.origin = int(num(m[7]))
			}
			recs[i].want = w
			continue
		}
		m := expectBlockLine.FindStringSubmatch(line)
		if m == nil || i < 0 {
			tb.Fatalf("expect.txt: bad line %q", line)
		}
		b := expectBlock{line: line, id: uint8(num(m[1])), rel: RelFileNode{num(m[2]), num(m[3]), num(m[4])},
			fork: m[5], blk: num(m[6]), fpw: m[7] != "", apply: m[7] == "fpw", method: m[10], page: m[12]}
		if b.fpw {
			b.off, b.holeLen = uint16(num(m[8])), uint16(num(m[9]))
		}
		if b.method != "" {
			b.saved = num(m[11])
		}
		recs[i].want.blocks = append(recs[i].want.blocks, b)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if i+1 != len(recs) {
		tb.Fatalf("expect.txt lists %d records, records.bin.gz has %d", i+1, len(recs))
	}
	return recs
}

var forkName = [...]string{"main", "fsm", "vm", "init"}

// TestRealRecords decodes records written by a real PostgreSQL 15 and
// compares them with pg_waldump's view.
func TestRealRecords(t *testing.T) {
	recs := loadRealRecords(t)
	kinds := map[string]int{}
	var r Record
	var page []byte
	for _, rr := range recs {
		w := rr.want
		if err := DecodeInto(&r, rr.raw, rr.start, rr.end); err != nil {
			t.Fatalf("%v\npg_waldump: %s", err, w.line)
		}
		h := r.Header
		if r.StartLSN != w.lsn || RmgrName(h.RmID) != w.rmgr || h.TotLen != w.totLen || h.TotLen-r.FPILen() != w.recLen ||
			h.XID != w.xid || h.Prev != w.prev || len(r.Blocks) != len(w.blocks) {
			t.Fatalf("record at %s: %s len %d/%d tx %d prev %s, %d blocks\npg_waldump: %s",
				r.StartLSN, RmgrName(h.RmID), h.TotLen-r.FPILen(), h.TotLen, h.XID, h.Prev, len(r.Blocks), w.line)
		}
		if w.origin >= 0 && (!r.HasOrigin || int(r.Origin) != w.origin) {
			t.Fatalf("record at %s: origin %v %d\npg_waldump: %s", r.StartLSN, r.HasOrigin, r.Origin, w.line)
		}
		if r.HasOrigin {
			kinds["origin"]++
		}
		if r.ToplevelXID != 0 {
			kinds["toplevel xid"]++
		}
		for i, wb := range w.blocks {
			b := &r.Blocks[i]
			if b.ID != wb.id || b.Rel != wb.rel || int(b.Fork) >= len(forkName) || forkName[b.Fork] != wb.fork ||
				b.Blkno != wb.blk || b.HasImage != wb.fpw {
				t.Fatalf("record at %s block %d: %+v\npg_waldump: %s", r.StartLSN, i, b, wb.line)
			}
			if !b.HasImage {
				continue
			}
			im := &b.Image
			method := ""
			saved := uint32(0)
			if c := im.Compression(); c != CompressionNone {
				method, saved = c.String(), uint32(BlockSize-int(im.HoleLength)-len(im.Bytes))
			}
			if im.Apply() != wb.apply || im.HoleOffset != wb.off || im.HoleLength != wb.holeLen || method != wb.method || saved != wb.saved {
				t.Fatalf("record at %s block %d: image apply %v hole %d+%d %s saved %d\npg_waldump: %s",
					r.StartLSN, i, im.Apply(), im.HoleOffset, im.HoleLength, method, saved, wb.line)
			}
			var err error
			if page, err = im.Page(page); err != nil {
				t.Fatalf("record at %s block %d: %v", r.StartLSN, i, err)
			}
			if wb.page != "" {
				sum := sha256.Sum256(page)
				if got := hex.EncodeToString(sum[:len(wb.page)/2]); got != wb.page {
					t.Fatalf("record at %s block %d (%s): page hash %s, want %s", r.StartLSN, i, method, got, wb.page)
				}
				kinds["page "+im.Compression().String()]++
			}
			kinds[fmt.Sprintf("image %v apply=%v", im.Compression(), im.Apply())]++
		}
	}
	for _, k := range []string{"origin", "toplevel xid", "page none", "page pglz", "page lz4", "page zstd",
		"image lz4 apply=false", "image none apply=false"} {
		if kinds[k] == 0 {
			t.Errorf("testdata lacks %q", k)
		}
	}
	t.Logf("%d records: %v", len(recs), kinds)
}

// TestRealRecordsTruncated: every real record cut short or extended by a
// byte, with xl_tot_len adjusted, is rejected or decodes within bounds.
func TestRealRecordsTruncated(t *testing.T) {
	for _, rr := range loadRealRecords(t) {
		for _, n := range []int{len(rr.raw) - 1, len(rr.raw) + 1} {
			b := make([]byte, n)
			copy(b, rr.raw)
			binary.LittleEndian.PutUint32(b, uint32(n))
			r, err := Decode(b, rr.start, rr.end)
			if err == nil {
				checkInvariants(t, &r, b)
			}
		}
	}
}

// checkInvariants holds for every record Decode accepts.
func checkInvariants(t testing.TB, r *Record, raw []byte) {
	t.Helper()
	total := 24
	within := func(s []byte) {
		if len(s) == 0 {
			return
		}
		if !bytesWithin(s, raw) {
			t.Fatalf("record at %s: a slice does not alias the record", r.StartLSN)
		}
		total += len(s)
	}
	prev := -1
	for i := range r.Blocks {
		b := &r.Blocks[i]
		if int(b.ID) <= prev || b.ID > XLR_MAX_BLOCK_ID || b.Fork > BKPBLOCK_FORK_MASK {
			t.Fatalf("record at %s: block %d after %d", r.StartLSN, b.ID, prev)
		}
		prev = int(b.ID)
		if b.HasData != (len(b.Data) > 0) || (!b.HasImage && b.Image.Bytes != nil) {
			t.Fatalf("record at %s: block %d flags and slices disagree", r.StartLSN, b.ID)
		}
		within(b.Image.Bytes)
		within(b.Data)
	}
	within(r.MainData)
	if total > len(raw) {
		t.Fatalf("record at %s: %d bytes of parts in %d", r.StartLSN, total, len(raw))
	}
	if len(r.MainData) > 0 && !bytes.Equal(r.MainData, raw[len(raw)-len(r.MainData):]) {
		t.Fatalf("record at %s: main data is not the record's tail", r.StartLSN)
	}
}

func bytesWithin(s, raw []byte) bool {
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(s))), uintptr(unsafe.Pointer(unsafe.SliceData(raw)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(raw))
}
