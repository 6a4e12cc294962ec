package walrecord_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"strata.dev/libs/lsn"
)

// pg_waldump --bkp-details output, as PostgreSQL 15's pg_waldump.c
// (XLogDumpDisplayRecord) and xlogdesc.c (XLogRecGetBlockRefInfo) print it:
//
//	rmgr: %-11s len (rec/tot): %6u/%6u, tx: %10u, lsn: %X/%08X, prev %X/%08X, desc: <rm_identify> <rm_desc>
//	\tblkref #%d: rel %u/%u/%u fork %s blk %u
//	\tblkref #%d: rel %u/%u/%u fork %s blk %u (FPW[ for WAL verification]); hole: offset: %u, length: %u[, compression saved: %u, method: %s]
//
// rec is tot minus the stored bytes of all images.

type dumpRecord struct {
	rmgr      string
	recLen    uint32
	totLen    uint32
	xid       uint32
	lsn, prev lsn.LSN
	desc      string
	blocks    []dumpBlock
	text      string // the lines as printed, for failure messages
}

type dumpBlock struct {
	id           uint8
	spc, db, rel uint32
	fork         string
	blk          uint32
	fpw          bool
	apply        bool   // FPW without "for WAL verification"
	holeOffset   uint16 // if fpw
	holeLength   uint16
	method       string // "" if the image is not compressed
	saved        uint32
}

var (
	recordLine = regexp.MustCompile(`^rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), prev ([0-9A-F]+/[0-9A-F]+), desc: (.*)$`)
	blockLine  = regexp.MustCompile(`^\tblkref #(\d+): rel (\d+)/(\d+)/(\d+) fork (\S+) blk (\d+)(.*)$`)
	fpwTail    = regexp.MustCompile(`^ \(FPW( for WAL verification)?\); hole: offset: (\d+), length: (\d+)(?:, compression saved: (\d+), method: (\S+))?$`)
)

// parseWaldump reads pg_waldump's output and calls f for each record. Lines
// it does not recognise are an error, except text continuing a record's
// description (some rm_desc functions print newlines) before its first
// block reference.
func parseWaldump(r io.Reader, f func(dumpRecord) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var cur *dumpRecord
	var text strings.Builder
	flush := func() error {
		if cur == nil {
			return nil
		}
		cur.text = text.String()
		text.Reset()
		err := f(*cur)
		cur = nil
		return err
	}
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if m := recordLine.FindStringSubmatch(line); m != nil {
			if err := flush(); err != nil {
				return err
			}
			cur = &dumpRecord{rmgr: m[1], desc: m[7]}
			var err error
			cur.recLen, err = parseU32(m[2], err)
			cur.totLen, err = parseU32(m[3], err)
			cur.xid, err = parseU32(m[4], err)
			cur.lsn, err = parseLSN(m[5], err)
			cur.prev, err = parseLSN(m[6], err)
			if err != nil {
				return fmt.Errorf("pg_waldump line %d %q: %v", lineNo, line, err)
			}
			text.WriteString(line + "\n")
			continue
		}
		if cur == nil {
			return fmt.Errorf("pg_waldump line %d %q: not a record line", lineNo, line)
		}
		text.WriteString(line + "\n")
		m := blockLine.FindStringSubmatch(line)
		if m == nil {
			if len(cur.blocks) > 0 || strings.HasPrefix(line, "\tblkref") {
				return fmt.Errorf("pg_waldump line %d %q: not a block reference", lineNo, line)
			}
			cur.desc += "\n" + line
			continue
		}
		var b dumpBlock
		var err error
		var id uint32
		id, err = parseU32(m[1], err)
		b.id = uint8(id)
		b.spc, err = parseU32(m[2], err)
		b.db, err = parseU32(m[3], err)
		b.rel, err = parseU32(m[4], err)
		b.fork = m[5]
		b.blk, err = parseU32(m[6], err)
		if tail := m[7]; tail != "" {
			fm := fpwTail.FindStringSubmatch(tail)
			if fm == nil {
				return fmt.Errorf("pg_waldump line %d %q: unrecognised block reference tail", lineNo, line)
			}
			b.fpw, b.apply = true, fm[1] == ""
			var off, n uint32
			off, err = parseU32(fm[2], err)
			n, err = parseU32(fm[3], err)
			b.holeOffset, b.holeLength = uint16(off), uint16(n)
			if fm[5] != "" {
				b.method = fm[5]
				b.saved, err = parseU32(fm[4], err)
			}
		}
		if err != nil || id > 32 {
			return fmt.Errorf("pg_waldump line %d %q: %v", lineNo, line, err)
		}
		cur.blocks = append(cur.blocks, b)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}

func parseU32(s string, err error) (uint32, error) {
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err
}

func parseLSN(s string, err error) (lsn.LSN, error) {
	if err != nil {
		return 0, err
	}
	return lsn.Parse(s)
}

// parseWaldumpBytes is parseWaldump over a buffer, collecting the records.
func parseWaldumpBytes(b []byte) ([]dumpRecord, error) {
	var recs []dumpRecord
	err := parseWaldump(bytes.NewReader(b), func(r dumpRecord) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}
