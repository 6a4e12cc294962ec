// Command gen regenerates libs/wal/testdata from a real PostgreSQL 15:
//
//	go run ./libs/wal/testdata/gen            (from /work/main, as root or as an ordinary user)
//
// It initdb's a throw-away cluster under /tmp, runs a workload chosen to hit
// every framing case (records of many sizes, ~8 KiB heap tuples and
// full-page images spanning pages, 100 KB logical messages spanning many
// pages and a segment boundary, pg_switch_wal, checkpoints), stops the
// server, and stores gzip'ed slices of the WAL segments plus pg_waldump's
// list of records as the oracle. Running as root, PostgreSQL is run as the
// "postgres" user through runuser, because it refuses to run as root.
//
// What is stored (see manifest.json, written by this program):
//
//	a.wal.gz  segment A from its start to just past its XLOG_SWITCH record
//	          (the rest of A is padding the decoder skips unparsed; tests pad it with zeros)
//	b.wal.gz  the start of segment B, cut in the middle of a 1 MB filler record
//	c.wal.gz  from a record boundary late in segment B, across the B/C boundary
//	          (inside a 100 KB record) to two pages past the end of WAL in C
//	records.txt  "LSN xl_tot_len rmgr desc" for every record pg_waldump printed in those ranges
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"strata.dev/libs/lsn"
)

const (
	segSize = lsn.DefaultSegmentSize
	tli     = 1
)

type piece struct {
	File  string  `json:"file"`
	Start lsn.LSN `json:"start"`
	End   lsn.LSN `json:"end"`
	Note  string  `json:"note"`
}

type stream struct {
	Name     string   `json:"name"`
	Start    lsn.LSN  `json:"start"`
	Pieces   []string `json:"pieces"`
	EndOfWAL lsn.LSN  `json:"end_of_wal,omitempty"` // where decoding must stop with end-of-WAL; 0: stream just ends
	Note     string   `json:"note"`
}

type manifest struct {
	Comment      string   `json:"comment"`
	PGVersionNum uint32   `json:"pg_version_num"`
	SystemID     string   `json:"system_id"`
	SegmentSize  uint64   `json:"segment_size"`
	Pieces       []piece  `json:"pieces"`
	Streams      []stream `json:"streams"`
	WaldumpEnd   lsn.LSN  `json:"waldump_end"`
	Records      string   `json:"records"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

type cluster struct {
	bin, dir, data string
	port           int
	asPostgres     bool
}

func (c *cluster) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if c.asPostgres {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (c *cluster) run(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := c.cmd(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (c *cluster) sql(q string) (string, error) {
	out, err := c.run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", c.dir, "-p", strconv.Itoa(c.port), "-U", "postgres", "-d", "postgres", "-c", q)
	return strings.TrimSpace(out), err
}

func (c *cluster) lsnOf(q string) (lsn.LSN, error) {
	out, err := c.sql(q)
	if err != nil {
		return 0, err
	}
	return lsn.Parse(out)
}

func run() error {
	outDir := "libs/wal/testdata"
	if _, err := os.Stat(outDir); err != nil {
		return fmt.Errorf("run from the repository root (/work/main): %w", err)
	}
	c := &cluster{bin: "/usr/lib/postgresql/15/bin", asPostgres: os.Geteuid() == 0}
	if b := os.Getenv("STRATA_PG_BINDIR"); b != "" {
		c.bin = b
	}
	dir, err := os.MkdirTemp("/tmp", "strata-walgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if c.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	c.dir, c.data = dir, filepath.Join(dir, "data")
	if c.port, err = freePort(); err != nil {
		return err
	}

	if _, err := c.run("initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-N", "--wal-segsize=16"); err != nil {
		return err
	}
	opts := fmt.Sprintf("-c port=%d -c listen_addresses='' -c unix_socket_directories=%s -c fsync=off "+
		"-c wal_recycle=off -c wal_keep_size=4GB -c max_wal_size=8GB -c checkpoint_timeout=1h "+
		"-c autovacuum=off -c full_page_writes=on -c wal_compression=off", c.port, dir)
	if _, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(dir, "log"), "-w", "-o", opts, "start"); err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
		}
	}()

	for _, q := range []string{
		"CREATE TABLE t (id int, v text)",
		"ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL", // toasted without compression
		"CREATE TABLE p (id int, v text)",
		"ALTER TABLE p ALTER COLUMN v SET STORAGE PLAIN", // ~8 KB tuples stay inline
		"SELECT pg_switch_wal()",
	} {
		if _, err := c.sql(q); err != nil {
			return err
		}
	}
	segA, err := c.lsnOf("SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		return err
	}
	segA = segA.SegmentStart(segSize)

	// Workload 1, in segment A, ending with XLOG_SWITCH.
	for _, q := range []string{
		"INSERT INTO t SELECT g, repeat(md5(g::text), g % 60 + 1) FROM generate_series(1, 600) g",
		"INSERT INTO p VALUES (1, repeat('a', 7000)), (2, repeat('b', 8100))",
		"INSERT INTO t VALUES (100000, repeat(md5('x'), 1000))", // 32 KB, out of line
		"CHECKPOINT",
		"UPDATE t SET id = id + 1 WHERE id % 7 = 0", // full-page images
		"UPDATE p SET id = id + 10",
		"SELECT pg_logical_emit_message(false, 'strata', repeat('m', 100000))",
		"SELECT pg_logical_emit_message(true, 'strata', repeat('n', 20000))",
		"SELECT pg_switch_wal()",
	} {
		if _, err := c.sql(q); err != nil {
			return err
		}
	}

	// Workload 2 at the start of segment B, then filler up to near its end.
	segB := segA + segSize
	for _, q := range []string{
		"INSERT INTO t SELECT g, repeat('q', g * 37) FROM generate_series(1, 40) g",
		"DELETE FROM t WHERE id < 5",
	} {
		if _, err := c.sql(q); err != nil {
			return err
		}
	}
	w2end, err := c.lsnOf("SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		return err
	}
	if w2end.SegmentStart(segSize) != segB {
		return fmt.Errorf("workload 2 ended at %s, outside segment B %s", w2end, segB)
	}
	segC := segB + segSize
	var spanStart lsn.LSN
	for {
		cur, err := c.lsnOf("SELECT pg_current_wal_insert_lsn()")
		if err != nil {
			return err
		}
		left := segC.Sub(cur)
		if cur >= segC {
			return fmt.Errorf("filler overshot segment C: at %s", cur)
		}
		if left <= 60000 {
			spanStart = cur
			break
		}
		n := min(left-50000, 1_000_000)
		if _, err := c.sql(fmt.Sprintf("SELECT pg_logical_emit_message(false, 'filler', repeat('f', %d))", n)); err != nil {
			return err
		}
	}
	// Workload 3: a record across the B/C boundary, then a bit of everything.
	for _, q := range []string{
		"SELECT pg_logical_emit_message(false, 'strata', repeat('s', 100000))",
		"INSERT INTO t SELECT g, repeat(md5(g::text), g) FROM generate_series(1, 100) g",
		"INSERT INTO p VALUES (3, repeat('c', 8120))",
		"CHECKPOINT",
		"UPDATE t SET id = -id WHERE id % 5 = 0",
	} {
		if _, err := c.sql(q); err != nil {
			return err
		}
	}
	versionNum, err := c.sql("SHOW server_version_num")
	if err != nil {
		return err
	}
	if _, err := c.run("pg_ctl", "-D", c.data, "-m", "fast", "-w", "stop"); err != nil {
		return err
	}
	stopped = true

	sysid, err := systemID(c)
	if err != nil {
		return err
	}
	recs, eow, err := waldump(c, segA)
	if err != nil {
		return err
	}
	if eow.SegmentStart(segSize) != segC {
		return fmt.Errorf("end of WAL %s is not in segment C %s", eow, segC)
	}

	found := false
	for _, r := range recs {
		found = found || r.start == spanStart
	}
	if !found {
		return fmt.Errorf("%s, where the spanning record was inserted, is not a record start", spanStart)
	}

	// Cut the pieces.
	var switchEnd lsn.LSN
	for _, r := range recs {
		if r.start.SegmentStart(segSize) == segA && r.rmgr == "XLOG" && r.desc == "SWITCH" {
			switchEnd = r.start + lsn.LSN(r.totLen)
		}
	}
	if switchEnd == 0 {
		return fmt.Errorf("no XLOG_SWITCH in segment A %s", segA)
	}
	pieces := []piece{
		{"a.wal.gz", segA, (switchEnd + lsn.PageSize).PageStart(), "segment A from its start to the end of the page holding the end of its XLOG_SWITCH"},
		{"b.wal.gz", segB, w2end + 20000, "start of segment B, cut inside the first filler record"},
		{"c.wal.gz", spanStart, (eow + 2*lsn.PageSize).PageStart(), "from a record boundary late in segment B across the B/C boundary to two pages past the end of WAL"},
	}
	for _, p := range pieces {
		if err := savePiece(c, outDir, p); err != nil {
			return err
		}
	}
	var lines []string
	for _, r := range recs {
		for _, p := range pieces {
			if r.start >= p.Start && r.start < p.End {
				lines = append(lines, fmt.Sprintf("%s %d %s %s", r.start, r.totLen, r.rmgr, r.desc))
				break
			}
		}
	}
	if err := os.WriteFile(filepath.Join(outDir, "records.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	vnum, _ := strconv.ParseUint(versionNum, 10, 32)
	m := manifest{
		Comment:      "Generated by `go run ./libs/wal/testdata/gen` from a real PostgreSQL; see that file. Gaps between pieces of a stream lie inside XLOG_SWITCH padding and are zero-filled by the tests.",
		PGVersionNum: uint32(vnum),
		SystemID:     sysid,
		SegmentSize:  segSize,
		Pieces:       pieces,
		Streams: []stream{
			{Name: "switch", Start: segA, Pieces: []string{"a.wal.gz", "b.wal.gz"},
				Note: "from a segment start through XLOG_SWITCH into the next segment; ends inside a record"},
			{Name: "span", Start: spanStart, Pieces: []string{"c.wal.gz"}, EndOfWAL: eow,
				Note: "starts mid-segment at a record boundary, crosses a segment boundary inside a record, ends in zeros"},
		},
		WaldumpEnd: eow,
		Records:    "records.txt",
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "manifest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("segments A=%s B=%s C=%s, %d records, end of WAL %s\n", segA, segB, segC, len(lines), eow)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func systemID(c *cluster) (string, error) {
	out, err := c.run("pg_controldata", "-D", c.data)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Database system identifier" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no system identifier in pg_controldata output")
}

type dumped struct {
	start      lsn.LSN
	totLen     uint32
	rmgr, desc string
}

var (
	reRecord = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (\S+)`)
	reEnd    = regexp.MustCompile(`invalid record length at ([0-9A-F]+/[0-9A-F]+): wanted 24, got 0`)
)

// waldump lists the records from start to the end of WAL, and where it ends.
func waldump(c *cluster, start lsn.LSN) ([]dumped, lsn.LSN, error) {
	var stdout, stderr bytes.Buffer
	cmd := c.cmd("pg_waldump", "-p", filepath.Join(c.data, "pg_wal"), "-s", start.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // it always exits 1 at the end of WAL
	m := reEnd.FindStringSubmatch(stderr.String())
	if m == nil {
		return nil, 0, fmt.Errorf("pg_waldump did not end at zeros: %s", stderr.String())
	}
	eow := lsn.MustParse(m[1])
	var recs []dumped
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		m := reRecord.FindStringSubmatch(sc.Text())
		if m == nil {
			return nil, 0, fmt.Errorf("unparsed pg_waldump line %q", sc.Text())
		}
		n, _ := strconv.ParseUint(m[2], 10, 32)
		recs = append(recs, dumped{start: lsn.MustParse(m[3]), totLen: uint32(n), rmgr: m[1], desc: strings.TrimSuffix(m[4], ",")})
	}
	return recs, eow, sc.Err()
}

// savePiece gzips the bytes [p.Start, p.End) of one segment file.
func savePiece(c *cluster, outDir string, p piece) error {
	seg := p.Start.SegmentNumber(segSize)
	if (p.End - 1).SegmentNumber(segSize) != seg {
		// A piece may cross into the next segment: read both files.
		first, err := readRange(c, p.Start, (p.Start + segSize).SegmentStart(segSize))
		if err != nil {
			return err
		}
		second, err := readRange(c, (p.Start + segSize).SegmentStart(segSize), p.End)
		if err != nil {
			return err
		}
		return writeGzip(filepath.Join(outDir, p.File), append(first, second...))
	}
	b, err := readRange(c, p.Start, p.End)
	if err != nil {
		return err
	}
	return writeGzip(filepath.Join(outDir, p.File), b)
}

func readRange(c *cluster, from, to lsn.LSN) ([]byte, error) {
	name := fmt.Sprintf("%08X%08X%08X", tli, uint64(from)/segSize/256, uint64(from)/segSize%256)
	b, err := os.ReadFile(filepath.Join(c.data, "pg_wal", name))
	if err != nil {
		return nil, err
	}
	off := from.SegmentOffset(segSize)
	return b[off : off+to.Sub(from)], nil
}

func writeGzip(path string, b []byte) error {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
