package walgen_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
)

// pgBinDir is where PostgreSQL 15's programs are (STRATA_PG_BINDIR overrides).
func pgBinDir() string {
	if d := os.Getenv("STRATA_PG_BINDIR"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// waldumpLine is one record line of pg_waldump's default output, e.g.
// "rmgr: XLOG len (rec/tot): 24/ 24, tx: 0, lsn: 0/01000028, prev 0/00000000, desc: SWITCH".
var waldumpLine = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev ([0-9A-F]+/[0-9A-F]+), desc: (.*)$`)

type dumped struct {
	rmgr   string
	totLen uint32
	start  lsn.LSN
	prev   lsn.LSN
	desc   string
}

// runWaldump runs pg_waldump over the segment files in dir from start to
// end and returns the records it listed and its stderr.
func runWaldump(t *testing.T, dir string, start, end lsn.LSN) ([]dumped, string) {
	t.Helper()
	waldump := filepath.Join(pgBinDir(), "pg_waldump")
	if _, err := os.Stat(waldump); err != nil {
		t.Skipf("no pg_waldump: %v", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(waldump, "-p", dir, "-s", start.String(), "-e", end.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_waldump -s %s -e %s: %v\n%s", start, end, err, stderr.String())
	}
	var out []dumped
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		m := waldumpLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("unparsed pg_waldump line %.200q", sc.Text())
		}
		tot, _ := strconv.ParseUint(m[3], 10, 32)
		out = append(out, dumped{rmgr: m[1], totLen: uint32(tot), start: lsn.MustParse(m[5]), prev: lsn.MustParse(m[6]), desc: strings.TrimSpace(m[7])})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, stderr.String()
}

// writeSegments stores data, which starts at a segment start, as segment
// files named the way PostgreSQL names them.
func writeSegments(t *testing.T, dir string, start lsn.LSN, segSize uint64, data []byte) {
	t.Helper()
	for off := uint64(0); off < uint64(len(data)); off += segSize {
		seg := make([]byte, segSize)
		copy(seg, data[off:])
		name := wal.SegmentFileName(1, (start + lsn.LSN(off)).SegmentNumber(segSize), segSize)
		if err := os.WriteFile(filepath.Join(dir, name), seg, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWaldump: PostgreSQL's own reader accepts whole generated segments,
// records spanning pages and segments included, and sees every record where
// the generator put it, with the same length and xl_prev.
func TestWaldump(t *testing.T) {
	for _, segSize := range []uint64{mib, 16 * mib} {
		t.Run(fmt.Sprintf("%dMiB", segSize/mib), func(t *testing.T) {
			start := lsn.SegmentLSN(3, 0, segSize)
			g, err := walgen.New(start, walgen.Options{SegSize: segSize})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(segSize, 2))
			type made struct {
				walgen.Record
				kind    string
				payload int
			}
			var recs []made
			msg := func(n int) { recs = append(recs, made{g.LogicalMessage(n), "msg", n}) }
			noop := func(n int) { recs = append(recs, made{g.Noop(n), "noop", 0}) }
			segEnd := start + lsn.LSN(segSize)
			for g.LSN() < segEnd-3*lsn.PageSize {
				switch k := r.IntN(10); {
				case k < 6:
					msg(r.IntN(400))
				case k < 9:
					noop(26 + r.IntN(3000))
				default:
					noop(lsn.PageSize + r.IntN(3*lsn.PageSize)) // spans pages
				}
			}
			noop(6 * lsn.PageSize) // crosses into the next segment
			msg(100)
			if segSize == mib {
				noop(int(segSize + segSize/2)) // longer than a segment
			}
			msg(5)
			recs = append(recs, made{g.Switch(), "switch", 0})
			end := g.LSN()
			dir := t.TempDir()
			writeSegments(t, dir, start, segSize, g.Bytes())

			got, stderr := runWaldump(t, dir, start, end)
			if len(got) != len(recs) {
				t.Fatalf("pg_waldump listed %d records, generated %d\n%s", len(got), len(recs), stderr)
			}
			prev := lsn.LSN(0)
			for i, w := range recs {
				d := got[i]
				if d.start != w.Start || d.totLen != w.TotLen || d.prev != prev {
					t.Fatalf("record %d: pg_waldump %s len %d prev %s; generated %s len %d prev %s",
						i, d.start, d.totLen, d.prev, w.Start, w.TotLen, prev)
				}
				prev = w.Start
				var ok bool
				switch w.kind {
				case "msg":
					ok = d.rmgr == "LogicalMessage" &&
						strings.HasPrefix(d.desc, fmt.Sprintf(`MESSAGE non-transactional, prefix "%s"; payload (%d bytes)`, walgen.MessagePrefix, w.payload))
				case "noop":
					ok = d.rmgr == "XLOG" && d.desc == "NOOP"
				case "switch":
					ok = d.rmgr == "XLOG" && d.desc == "SWITCH"
				}
				if !ok {
					t.Fatalf("record %d at %s (%s): pg_waldump says %s %.100q", i, w.Start, w.kind, d.rmgr, d.desc)
				}
			}
		})
	}
}
