package neonredo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

var heapRel = key.Rel{Spc: key.DefaultTablespace, DB: 5, Rel: 16384}

func vmKey(blk uint32) key.Key {
	r := heapRel
	r.Fork = key.ForkVM
	return key.RelBlock(r, blk)
}

// initPage is an initialised page (pd_upper != 0) filled with fill.
func initPage(fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, BlockSize)
	binary.LittleEndian.PutUint64(p[0:], 0)
	binary.LittleEndian.PutUint16(p[14:], BlockSize)
	return p
}

func TestClearVisibilityMapFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vmBlk    uint32
		rec      value.Record
		wantByte int  // page byte changed
		wantVal  byte // its value after
	}{
		// Heap block h: VM block h/32672, byte 24 + (h%32672)/4, shift (h%4)*2.
		{"new heap 0, both bits", 0, value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 0, Flags: 3}, 24, 0xFC},
		{"new heap 5, both bits", 0, value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 5, Flags: 3}, 25, 0xF3},
		{"old heap 7, frozen only", 0, value.Record{Kind: value.ClearVisibilityMapFlags, HasOldHeapBlkno: true, OldHeapBlkno: 7, Flags: 2}, 25, 0x7F},
		{"second VM page", 1, value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 32672 + 9, Flags: 1}, 26, 0xFB},
		{"last heap block of a VM page", 0, value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 32671, Flags: 3}, 8191, 0x3F},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := initPage(0xFF)
			out, err := Apply(vmKey(tc.vmBlk), page, value.Versioned{LSN: 0x1234_5678, Record: tc.rec})
			if err != nil {
				t.Fatal(err)
			}
			want := initPage(0xFF)
			want[tc.wantByte] = tc.wantVal
			pgpage.SetLSN(want, lsn.LSN(0x1234_5678))
			if !bytes.Equal(out, want) {
				t.Errorf("page differs at %d", firstDiff(out, want))
			}
		})
	}
	// Both heap pages on the same VM page.
	page := initPage(0xFF)
	rec := value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 0, HasOldHeapBlkno: true, OldHeapBlkno: 3, Flags: 3}
	out, err := Apply(vmKey(0), page, value.Versioned{LSN: 8, Record: rec})
	if err != nil || out[24] != 0x3C {
		t.Fatalf("both: %x %v", out[24], err)
	}
	// A new (all-zero) page keeps LSN 0.
	zero := make([]byte, BlockSize)
	out, err = Apply(vmKey(0), zero, value.Versioned{LSN: 8, Record: rec})
	if err != nil || pgpage.LSN(out) != 0 {
		t.Fatalf("new page: lsn %x %v", pgpage.LSN(out), err)
	}
	// Wrong VM page, wrong fork.
	if _, err := Apply(vmKey(1), initPage(0xFF), value.Versioned{Record: rec}); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong VM page: %v", err)
	}
	if _, err := Apply(key.RelBlock(heapRel, 0), initPage(0xFF), value.Versioned{Record: rec}); !errors.Is(err, ErrInvalid) {
		t.Errorf("main fork: %v", err)
	}
	if _, err := Apply(vmKey(0), nil, value.Versioned{Record: rec}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no base: %v", err)
	}
}

func TestTruncateVisibilityMap(t *testing.T) {
	// Heap truncated to 13 blocks: trunc_byte 3, trunc_offs 2 (PS §2.6).
	page := initPage(0xFF)
	pgpage.SetLSN(page, lsn.LSN(77))
	out, err := Apply(vmKey(0), page, value.Versioned{LSN: 99, Record: value.Record{Kind: value.TruncateVisibilityMap, TruncByte: 3, TruncOffs: 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := initPage(0xFF)
	pgpage.SetLSN(want, lsn.LSN(77)) // LSN unchanged
	want[24+3] = 0x03
	clear(want[24+4:])
	if !bytes.Equal(out, want) {
		t.Errorf("page differs at %d", firstDiff(out, want))
	}
	if _, err := Apply(vmKey(0), initPage(0), value.Versioned{Record: value.Record{Kind: value.TruncateVisibilityMap, TruncByte: 8168}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("trunc_byte outside the map: %v", err)
	}
}

func TestClog(t *testing.T) {
	// xid 32768*33+5: page 33 = segment 1 block 1, byte 1, shift 2.
	xid := uint32(32768*33 + 5)
	k := key.SlruBlock(key.Clog, 1, 1)
	page := make([]byte, BlockSize)
	page[1] = 0b11_00_00_11
	out, err := Apply(k, page, value.Versioned{LSN: 5, Record: value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{xid, xid + 1}, Timestamp: 0x0102030405060708}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != ClogPageWithTimestamp || out[1] != 0b11_01_01_11 {
		t.Fatalf("len %d byte %08b", len(out), out[1])
	}
	if !bytes.Equal(out[BlockSize:], []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("timestamp tail % x", out[BlockSize:])
	}
	// A second commit replaces the tail; an abort keeps it.
	out, err = Apply(k, out, value.Versioned{LSN: 6, Record: value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{xid + 2}, Timestamp: 9}})
	if err != nil || len(out) != ClogPageWithTimestamp || binary.BigEndian.Uint64(out[BlockSize:]) != 9 || out[1] != 0b01_01_01_11 {
		t.Fatalf("second commit: len %d %v", len(out), err)
	}
	out, err = Apply(k, out, value.Versioned{LSN: 7, Record: value.Record{Kind: value.ClogSetAborted, Xids: []uint32{xid + 3}}})
	if err != nil || len(out) != ClogPageWithTimestamp || out[2] != 0b00_00_00_10 {
		t.Fatalf("abort: len %d byte %08b %v", len(out), out[2], err)
	}
	if _, err := Apply(k, make([]byte, BlockSize), value.Versioned{Record: value.Record{Kind: value.ClogSetAborted, Xids: []uint32{5}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("xid of another page: %v", err)
	}
	if _, err := Apply(key.SlruBlock(key.MultiXactOffsets, 1, 1), make([]byte, BlockSize), value.Versioned{Record: value.Record{Kind: value.ClogSetAborted, Xids: []uint32{xid}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("not a CLOG key: %v", err)
	}
}

func TestMultixact(t *testing.T) {
	// mid 2048*3+10: offsets page 3 (segment 0, block 3), byte 40.
	out, err := Apply(key.SlruBlock(key.MultiXactOffsets, 0, 3), make([]byte, BlockSize),
		value.Versioned{LSN: 1, Record: value.Record{Kind: value.MultixactOffsetCreate, Mid: 2048*3 + 10, Moff: 0xAABBCCDD}})
	if err != nil || binary.LittleEndian.Uint32(out[40:]) != 0xAABBCCDD {
		t.Fatalf("offset: %x %v", out[40:44], err)
	}
	// Members from offset 1636*2+6: members page 2, group 1 (offset 20),
	// members 2 and 3 of the group: flag shifts 16 and 24, xids at 32 and 36.
	page := bytes.Repeat([]byte{0xFF}, BlockSize)
	out, err = Apply(key.SlruBlock(key.MultiXactMembers, 0, 2), page, value.Versioned{LSN: 1, Record: value.Record{
		Kind: value.MultixactMembersCreate, Moff: 1636*2 + 6,
		Members: []value.MultiXactMember{{Xid: 1000, Status: 4}, {Xid: 1001, Status: 5}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(out[20:]); got != 0x0504FFFF {
		t.Errorf("flags word %08x", got)
	}
	if binary.LittleEndian.Uint32(out[32:]) != 1000 || binary.LittleEndian.Uint32(out[36:]) != 1001 {
		t.Errorf("xids % x", out[32:40])
	}
	// The last group of a page ends at byte 408*20+20 = 8180.
	out, err = Apply(key.SlruBlock(key.MultiXactMembers, 0, 0), make([]byte, BlockSize), value.Versioned{Record: value.Record{
		Kind: value.MultixactMembersCreate, Moff: 1635, Members: []value.MultiXactMember{{Xid: 7, Status: 1}}}})
	if err != nil || binary.LittleEndian.Uint32(out[8176:]) != 7 || out[8160+3] != 1 {
		t.Fatalf("last member: %v", err)
	}
	// A member past the page is an error (ingest splits by page).
	if _, err := Apply(key.SlruBlock(key.MultiXactMembers, 0, 0), make([]byte, BlockSize), value.Versioned{Record: value.Record{
		Kind: value.MultixactMembersCreate, Moff: 1635, Members: []value.MultiXactMember{{}, {}}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("member on the next page: %v", err)
	}
}

func TestApplyAllAndPostgres(t *testing.T) {
	base := initPage(0xFF)
	recs := []value.Versioned{
		{LSN: lsn.LSN(10), Record: value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, Flags: 3}},
		{LSN: lsn.LSN(20), Record: value.Record{Kind: value.AuxFile}},
	}
	out, err := ApplyAll(vmKey(0), base, recs)
	if err != nil || out[24] != 0xFC || base[24] != 0xFF || pgpage.LSN(out) != 10 {
		t.Fatalf("ApplyAll: %v", err)
	}
	if _, err := Apply(vmKey(0), base, value.Versioned{Record: value.Record{Kind: value.Postgres}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("postgres record: %v", err)
	}
	if Applicable(value.Record{Kind: value.Postgres}) || !Applicable(value.Record{Kind: value.ClogSetAborted}) {
		t.Error("Applicable")
	}
}

func TestReconstruct(t *testing.T) {
	vm := vmKey(0)
	clearHeap0 := value.Versioned{LSN: 10, Record: value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, Flags: 3}}
	clearHeap5 := value.Versioned{LSN: 20, Record: value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 5, Flags: 3}}
	postgres := value.Versioned{LSN: 30, Record: value.Record{Kind: value.Postgres, Raw: []byte{1}}}
	postgresInit := value.Versioned{LSN: 30, Record: value.Record{Kind: value.Postgres, WillInit: true, Raw: []byte{1}}}
	wrongVMPage := value.Versioned{LSN: 40, Record: value.Record{Kind: value.ClearVisibilityMapFlags, HasNewHeapBlkno: true, NewHeapBlkno: 32672, Flags: 3}}
	cleared := func(at lsn.LSN, bytes ...int) []byte {
		p := initPage(0xFF)
		for _, b := range bytes {
			p[b] = 0xFC
		}
		pgpage.SetLSN(p, at)
		return p
	}
	clogKey := key.SlruBlock(key.Clog, 0, 0)
	commit := value.Versioned{LSN: 50, Record: value.Record{Kind: value.ClogSetCommitted, Xids: []uint32{4}, Timestamp: 7}}
	clogPage := make([]byte, BlockSize)
	clogPage[1] = 0b01
	clogPage = binary.BigEndian.AppendUint64(clogPage, 7)

	for _, tc := range []struct {
		name    string
		r       value.Reconstruction
		want    []byte
		wantErr error
		recLSN  lsn.LSN // named by the error
	}{
		{"image only", value.Reconstruction{Key: vm, LSN: 5, HasImage: true, Image: initPage(0xFF), ImageLSN: 5}, initPage(0xFF), nil, 0},
		{"image and a record", value.Reconstruction{Key: vm, LSN: 15, HasImage: true, Image: initPage(0xFF), Records: []value.Versioned{clearHeap0}},
			cleared(10, 24), nil, 0},
		{"image and two records", value.Reconstruction{Key: vm, LSN: 25, HasImage: true, Image: initPage(0xFF), Records: []value.Versioned{clearHeap0, clearHeap5}},
			func() []byte { p := cleared(20, 24); p[25] = 0xF3; return p }(), nil, 0},
		{"CLOG commit", value.Reconstruction{Key: clogKey, LSN: 50, HasImage: true, Image: make([]byte, BlockSize), Records: []value.Versioned{commit}},
			clogPage, nil, 0},
		{"PostgreSQL record after a Neon record", value.Reconstruction{Key: vm, LSN: 35, HasImage: true, Image: initPage(0xFF), Records: []value.Versioned{clearHeap0, postgres}},
			nil, ErrNeedsRedo, 30},
		// Found before the invalid record that precedes it is applied.
		{"PostgreSQL record after an invalid one", value.Reconstruction{Key: vm, LSN: 45, HasImage: true, Image: initPage(0xFF), Records: []value.Versioned{wrongVMPage, postgres}},
			nil, ErrNeedsRedo, 30},
		{"PostgreSQL record initialising the page", value.Reconstruction{Key: vm, LSN: 30, Records: []value.Versioned{postgresInit}},
			nil, ErrNeedsRedo, 30},
		{"record of another page", value.Reconstruction{Key: vm, LSN: 45, HasImage: true, Image: initPage(0xFF), Records: []value.Versioned{clearHeap0, wrongVMPage}},
			nil, ErrInvalid, 40},
		{"no base image", value.Reconstruction{Key: vm, LSN: 15, Records: []value.Versioned{clearHeap0}},
			nil, ErrInvalid, 10},
		{"nothing", value.Reconstruction{Key: vm, LSN: 15}, nil, ErrInvalid, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var image []byte
			if tc.r.HasImage {
				image = bytes.Clone(tc.r.Image)
			}
			got, err := Reconstruct(tc.r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				msg := err.Error()
				for _, s := range []string{tc.r.Key.String(), "at " + tc.r.LSN.String()} {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q does not name %q", msg, s)
					}
				}
				if tc.recLSN != 0 && !strings.Contains(msg, "at "+tc.recLSN.String()) {
					t.Errorf("error %q does not name the record LSN %s", msg, tc.recLSN)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("page (%d bytes) differs from the %d wanted at %d", len(got), len(tc.want), firstDiff(got, tc.want))
			}
			if tc.r.HasImage && !bytes.Equal(tc.r.Image, image) {
				t.Error("the image was modified")
			}
			if tc.r.ImageOnly() && &got[0] != &tc.r.Image[0] {
				t.Error("an image-only reconstruction is a copy, not the image")
			}
		})
	}
}

// TestReconstructor: Reconstructor has the method set of
// pageserver/timeline.Reconstructor, written out here so that neonredo
// does not depend on timeline (which is what will use it). test/pagecheck
// checks it against the real interface.
func TestReconstructor(t *testing.T) {
	var r interface {
		Reconstruct(ctx context.Context, r value.Reconstruction) ([]byte, error)
	} = Reconstructor{}
	rec := value.Reconstruction{Key: vmKey(0), LSN: 30, HasImage: true, Image: initPage(0xFF),
		Records: []value.Versioned{{LSN: 30, Record: value.Record{Kind: value.Postgres}}}}
	if _, err := r.Reconstruct(context.Background(), rec); !errors.Is(err, ErrNeedsRedo) {
		t.Errorf("PostgreSQL record: %v", err)
	}
	rec.Records = nil
	if got, err := r.Reconstruct(context.Background(), rec); err != nil || !bytes.Equal(got, rec.Image) {
		t.Errorf("image only: %v", err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
