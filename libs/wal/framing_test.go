package wal

import (
	"bytes"
	"errors"
	"testing"

	"strata.dev/libs/lsn"
)

func TestSegmentFileName(t *testing.T) {
	for _, tc := range []struct {
		tli     uint32
		segno   uint64
		segSize uint64
		want    string
	}{
		{1, lsn.MustParse("0/16B9188").SegmentNumber(lsn.DefaultSegmentSize), lsn.DefaultSegmentSize, "000000010000000000000001"},
		{1, 0x2FF, lsn.DefaultSegmentSize, "0000000100000002000000FF"},
		{0xABCDEF01, 0x1234, 1 << 30, "ABCDEF010000048D00000000"},
		{2, 4096 + 5, 1 << 20, "000000020000000100000005"},
	} {
		got := SegmentFileName(tc.tli, tc.segno, tc.segSize)
		if got != tc.want {
			t.Errorf("SegmentFileName(%d, %#x, %d) = %s; want %s", tc.tli, tc.segno, tc.segSize, got, tc.want)
		}
		for _, suffix := range []string{"", ".partial"} {
			tli, segno, partial, err := ParseSegmentFileName(tc.want+suffix, tc.segSize)
			if err != nil || tli != tc.tli || segno != tc.segno || partial != (suffix != "") {
				t.Errorf("Parse(%s) = %d, %#x, %v, %v", tc.want+suffix, tli, segno, partial, err)
			}
			if !IsSegmentFileName(tc.want + suffix) {
				t.Errorf("IsSegmentFileName(%s) = false", tc.want+suffix)
			}
		}
	}
}

func TestParseSegmentFileNameRejects(t *testing.T) {
	for _, name := range []string{
		"", "00000001000000000000000", "0000000100000000000000010", "00000001000000000000000a",
		"00000001000000000000000G", "000000010000000000000001.partia", "000000010000000000000001.PARTIAL",
		"000000010000000000000001.partial.partial", "000000010000000000000001.history", "waltmp",
		"000000010000000000000100", // segment part 256 is out of range for 16 MiB segments
	} {
		if _, _, _, err := ParseSegmentFileName(name, lsn.DefaultSegmentSize); !errors.Is(err, ErrNotSegmentName) {
			t.Errorf("Parse(%q) error = %v; want ErrNotSegmentName", name, err)
		}
	}
	if IsSegmentFileName("00000001000000000000000a") || IsSegmentFileName("safekeeper.control") {
		t.Error("IsSegmentFileName accepted a non-segment")
	}
	if _, _, _, err := ParseSegmentFileName("000000010000000000000001", 3<<20); err == nil {
		t.Error("Parse accepted a 3 MiB segment size")
	}
}

func TestPageMagic(t *testing.T) {
	for v, want := range map[uint32]uint16{14: 0xD10D, 15: 0xD110, 150004: 0xD110, 150018: 0xD110, 16: 0xD113, 160002: 0xD113, 17: 0xD116, 140010: 0xD10D} {
		if got, err := PageMagic(v); err != nil || got != want {
			t.Errorf("PageMagic(%d) = %04X, %v; want %04X", v, got, err, want)
		}
	}
	for _, v := range []uint32{0, 13, 18, 90600, 130000, 180000} {
		if _, err := PageMagic(v); err == nil {
			t.Errorf("PageMagic(%d) succeeded", v)
		}
	}
}

func TestPageHeaderRoundTrip(t *testing.T) {
	short := PageHeader{Magic: 0xD110, Info: XLP_FIRST_IS_CONTRECORD | XLP_BKP_REMOVABLE, TLI: 1, PageAddr: 0x16B8000, RemLen: 0x1234}
	b := short.Append(nil)
	want := []byte{0x10, 0xD1, 0x05, 0, 1, 0, 0, 0, 0x00, 0x80, 0x6B, 0x01, 0, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("short header = % x\nwant           % x", b, want)
	}
	long := PageHeader{Magic: 0xD110, Info: XLP_LONG_HEADER, TLI: 1, PageAddr: 0x1000000, SysID: 0x0102030405060708, SegSize: 16 << 20, XLogBlcksz: 8192}
	lb := long.Append(nil)
	if len(lb) != LongPageHeaderSize || long.Size() != LongPageHeaderSize || short.Size() != ShortPageHeaderSize {
		t.Fatalf("sizes %d %d %d", len(lb), long.Size(), short.Size())
	}
	for _, h := range []PageHeader{short, long} {
		got, err := DecodePageHeader(h.Append(nil))
		if err != nil || got != h {
			t.Errorf("decode(encode(%+v)) = %+v, %v", h, got, err)
		}
	}
	if _, err := DecodePageHeader(lb[:30]); err == nil {
		t.Error("30-byte long header decoded")
	}
	if _, err := DecodePageHeader(b[:23]); err == nil {
		t.Error("23-byte header decoded")
	}
}

func TestRecordHeaderAndCRC(t *testing.T) {
	rec := makeRecord(RM_XLOG_ID, 0x20, 77, 0x16B9150, noopPayload(300))
	h, err := DecodeRecordHeader(rec)
	if err != nil {
		t.Fatal(err)
	}
	if h.TotLen != uint32(len(rec)) || h.XID != 77 || h.Prev != 0x16B9150 || h.Info != 0x20 || h.RmID != 0 || h.IsSwitch() {
		t.Fatalf("header %+v", h)
	}
	if !bytes.Equal(h.Append(nil), rec[:RecordHeaderSize]) {
		t.Fatal("Append does not reproduce the header")
	}
	if RecordCRC(rec) != h.CRC {
		t.Fatalf("RecordCRC %08X, stored %08X", RecordCRC(rec), h.CRC)
	}
	if err := ValidateRecord(rec); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(rec)
	bad[100] ^= 1
	if err := ValidateRecord(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped body byte: %v", err)
	}
	if err := ValidateRecord(rec[:len(rec)-1]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short record: %v", err)
	}
	if err := ValidateRecord(rec[:10]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("10 bytes: %v", err)
	}
	if RecordCRC(rec[:10]) != 0 {
		t.Error("RecordCRC of a fragment is not 0")
	}
	if _, err := DecodeRecordHeader(rec[:23]); err == nil {
		t.Error("23-byte record header decoded")
	}
	for _, tc := range []struct {
		rmid, info uint8
		want       bool
	}{{0, 0x40, true}, {0, 0x41, true}, {0, 0x42, true}, {0, 0x50, false}, {0, 0x20, false}, {1, 0x40, false}} {
		if got := (RecordHeader{RmID: tc.rmid, Info: tc.info}).IsSwitch(); got != tc.want {
			t.Errorf("IsSwitch(rmid %d, info %#x) = %v", tc.rmid, tc.info, got)
		}
	}
}

func TestValidateSegmentSize(t *testing.T) {
	for _, s := range []uint64{1 << 20, 16 << 20, 1 << 30} {
		if err := ValidateSegmentSize(s); err != nil {
			t.Errorf("%d: %v", s, err)
		}
	}
	for _, s := range []uint64{0, 1 << 19, 2 << 30, 3 << 20, 8192} {
		if err := ValidateSegmentSize(s); err == nil {
			t.Errorf("%d accepted", s)
		}
	}
}

func TestSkipPageHeader(t *testing.T) {
	const seg = 16 << 20
	for _, tc := range []struct{ in, want lsn.LSN }{
		{0x1_0000_0000, 0x1_0000_0028}, // a segment's first page: long header
		{0x1_0000_2000, 0x1_0000_2018}, // another page: short header
		{0x1_0000_2018, 0x1_0000_2018},
		{0x1_0000_2F40, 0x1_0000_2F40},
	} {
		if got := SkipPageHeader(tc.in, seg); got != tc.want {
			t.Errorf("SkipPageHeader(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
