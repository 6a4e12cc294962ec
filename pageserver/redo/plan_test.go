package redo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

var (
	target = key.RelBlock(key.Rel{Spc: 1663, DB: 5, Rel: 16384, Fork: key.ForkMain}, 7)
	other  = key.RelBlock(key.Rel{Spc: 1663, DB: 5, Rel: 16384, Fork: key.ForkMain}, 8)
)

// blockRef is one block reference of a test record.
type blockRef struct {
	k        key.Key
	willInit bool
	image    []byte // an uncompressed full-page image to apply, if set
}

// record builds a heap record (rmid 10) referencing blocks, with a valid
// CRC, as the store keeps it: a value.Postgres at its end LSN.
func record(at lsn.LSN, blocks ...blockRef) value.Versioned {
	le := binary.LittleEndian
	var hdrs, payload []byte
	for i, b := range blocks {
		flags := b.k.Rel().Fork
		if b.willInit {
			flags |= walrecord.BKPBLOCK_WILL_INIT
		}
		if b.image != nil {
			flags |= walrecord.BKPBLOCK_HAS_IMAGE
		}
		hdrs = append(hdrs, byte(i), flags, 0, 0) // no block data
		if b.image != nil {
			hdrs = le.AppendUint16(hdrs, pgpage.BlockSize)
			hdrs = le.AppendUint16(hdrs, 0)               // hole offset
			hdrs = append(hdrs, walrecord.BKPIMAGE_APPLY) // no hole, not compressed
			payload = append(payload, b.image...)
		}
		rel := b.k.Rel()
		hdrs = le.AppendUint32(hdrs, rel.Spc)
		hdrs = le.AppendUint32(hdrs, rel.DB)
		hdrs = le.AppendUint32(hdrs, rel.Rel)
		hdrs = le.AppendUint32(hdrs, b.k.Block())
	}
	main := []byte{1, 0, 0} // xl_heap_insert: offnum 1, flags 0
	hdrs = append(hdrs, walrecord.XLR_BLOCK_ID_DATA_SHORT, byte(len(main)))
	body := append(append(hdrs, payload...), main...)
	raw := wal.RecordHeader{TotLen: uint32(wal.RecordHeaderSize + len(body)), XID: 700, RmID: walrecord.RmHeap}.Append(nil)
	raw = append(raw, body...)
	le.PutUint32(raw[20:], wal.RecordCRC(raw))
	willInit := false
	for _, b := range blocks {
		if b.k == target && (b.willInit || b.image != nil) {
			willInit = true
		}
	}
	return value.Versioned{LSN: at, Record: value.NewPostgres(raw, willInit).Record}
}

func neonRecord(at lsn.LSN) value.Versioned {
	return value.Versioned{LSN: at, Record: value.Record{Kind: value.ClearVisibilityMapFlags}}
}

func page(fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, pgpage.BlockSize)
	binary.LittleEndian.PutUint16(p[14:], 100) // pd_upper: not a new page
	return p
}

// records counts the records the plan still applies.
func (p *plan) records() (n int) {
	for _, s := range p.steps {
		n += len(s.records)
	}
	return n
}

func TestPlanRuns(t *testing.T) {
	base := page(1)
	r := value.Reconstruction{Key: target, LSN: 500, HasImage: true, Image: base, Records: []value.Versioned{
		record(100, blockRef{k: target}), record(200, blockRef{k: target}, blockRef{k: other}),
		neonRecord(300), record(400, blockRef{k: target}),
	}}
	p, err := makePlan(r, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.base, base) {
		t.Error("base is not the image")
	}
	var shape []int
	for _, s := range p.steps {
		n := len(s.records)
		if s.kind != stepPostgres {
			n = -n
		}
		shape = append(shape, n)
	}
	if got := shape; len(got) != 3 || got[0] != 2 || got[1] != -1 || got[2] != 1 {
		t.Errorf("steps %v, want Postgres 2, Neon 1, Postgres 1", got)
	}

	// With goredo (these are heap inserts), the same runs are Go steps.
	if p, err = makePlan(r, true); err != nil {
		t.Fatal(err)
	}
	var kinds []stepKind
	for _, s := range p.steps {
		kinds = append(kinds, s.kind)
	}
	if !slices.Equal(kinds, []stepKind{stepGo, stepNeon, stepGo}) || p.records() != 4 {
		t.Errorf("steps of kinds %v applying %d records, want Go, Neon, Go applying 4", kinds, p.records())
	}
}

func TestPlanStartsFromTheLastFullPageImage(t *testing.T) {
	img := page(3)
	r := value.Reconstruction{Key: target, LSN: 500, Records: []value.Versioned{
		record(100, blockRef{k: target, willInit: true}),
		record(200, blockRef{k: target, image: img}),
		record(300, blockRef{k: target}, blockRef{k: other, image: page(4)}), // another block's image
		neonRecord(400),
	}}
	p, err := makePlan(r, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.base == nil || p.base[100] != 3 || binary.LittleEndian.Uint32(p.base[4:]) != 200 || binary.LittleEndian.Uint32(p.base[0:]) != 0 {
		t.Fatalf("base is not the image of the record at 200 with pd_lsn 0/C8: % x", p.base[:8])
	}
	if p.records() != 2 || p.steps[0].kind != stepPostgres || p.steps[0].records[0].LSN != 300 {
		t.Errorf("plan applies %d records from %v, want the two after the image", p.records(), p.steps)
	}

	// An image as the last change: nothing left for a process.
	r.Records = r.Records[:2]
	if p, err = makePlan(r, false); err != nil || len(p.steps) != 0 || p.base[100] != 3 {
		t.Errorf("image as last change: %d steps, %v", len(p.steps), err)
	}
}

func TestPlanSplitsLongRuns(t *testing.T) {
	// Every record on the page: one block in all, one step.
	r := value.Reconstruction{Key: target, LSN: 1 << 20, Records: []value.Versioned{record(1, blockRef{k: target, willInit: true})}}
	for i := 2; i <= 300; i++ {
		r.Records = append(r.Records, record(lsn.LSN(i), blockRef{k: target}))
	}
	if p, err := makePlan(r, false); err != nil || p.records() != 300 || len(p.steps) != 1 {
		t.Fatalf("300 records on one block: %d steps (%v), want 1", len(p.steps), err)
	}

	// Every record also on a block of its own: 3 heap units each (the
	// block, its FSM and VM pages).
	r.Records = r.Records[:1]
	for i := 2; i <= 300; i++ {
		r.Records = append(r.Records, record(lsn.LSN(i), blockRef{k: target}, blockRef{k: key.RelBlock(target.Rel(), uint32(1000+i))}))
	}
	p, err := makePlan(r, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.records() != 300 || len(p.steps) != 3 {
		t.Fatalf("%d records in %d steps, want 300 in 3 (budget %d)", p.records(), len(p.steps), maxBufferUnits)
	}
	for _, s := range p.steps {
		if s.kind != stepPostgres || len(s.records)*3 > maxBufferUnits {
			t.Errorf("step of %d records over the budget", len(s.records))
		}
	}

	// After a Neon record, 150 records on the page alone, then 150 with
	// a block of their own each: the first step takes the 150 (3 units
	// for the page) and 132 more (3 units each), the second the rest.
	// Each record's own blocks are counted, wherever it stands.
	r = value.Reconstruction{Key: target, LSN: 1 << 20, HasImage: true, Image: page(1), Records: []value.Versioned{neonRecord(1)}}
	for i := 2; i <= 301; i++ {
		rec := record(lsn.LSN(i), blockRef{k: target})
		if i > 151 {
			rec = record(lsn.LSN(i), blockRef{k: target}, blockRef{k: key.RelBlock(target.Rel(), uint32(1000+i))})
		}
		r.Records = append(r.Records, rec)
	}
	if p, err = makePlan(r, false); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, s := range p.steps {
		sizes = append(sizes, len(s.records))
	}
	if !slices.Equal(sizes, []int{1, 282, 18}) || p.steps[0].kind != stepNeon {
		t.Errorf("steps of %v records, want a Neon step of 1, then 282 and 18", sizes)
	}
}

func TestPlanRefusesBadRequests(t *testing.T) {
	corrupt := record(200, blockRef{k: target})
	corrupt.Record.Raw = bytes.Clone(corrupt.Record.Raw)
	corrupt.Record.Raw[len(corrupt.Record.Raw)-1] ^= 1
	slru := key.SlruBlock(key.Clog, 0, 0)
	for _, c := range []struct {
		name string
		r    value.Reconstruction
		want string
	}{
		{"nothing", value.Reconstruction{Key: target}, "no image and no records"},
		{"not initialised", value.Reconstruction{Key: target, Records: []value.Versioned{record(100, blockRef{k: target})}}, "does not initialise"},
		{"other page", value.Reconstruction{Key: target, HasImage: true, Image: page(1), Records: []value.Versioned{record(100, blockRef{k: other})}}, "does not reference block 7"},
		{"corrupt", value.Reconstruction{Key: target, HasImage: true, Image: page(1), Records: []value.Versioned{corrupt}}, "CRC"},
		{"slru", value.Reconstruction{Key: slru, HasImage: true, Image: page(1), Records: []value.Versioned{record(100, blockRef{k: target})}}, "not a relation block"},
	} {
		_, err := makePlan(c.r, false)
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidRequest with %q", c.name, err, c.want)
		}
	}
}

// FuzzMakePlan feeds arbitrary record bytes, as a corrupt store could hold
// them, to the planner: an error or a plan, never a panic.
func FuzzMakePlan(f *testing.F) {
	f.Add(record(100, blockRef{k: target}).Record.Raw, true)
	f.Add(record(100, blockRef{k: target, image: page(2)}).Record.Raw, false)
	f.Add(record(100, blockRef{k: other, willInit: true}).Record.Raw, true)
	f.Fuzz(func(t *testing.T, raw []byte, willInit bool) {
		// With a valid CRC, so that decoding gets exercised.
		if len(raw) >= wal.RecordHeaderSize {
			binary.LittleEndian.PutUint32(raw[0:], uint32(len(raw)))
			binary.LittleEndian.PutUint32(raw[20:], wal.RecordCRC(raw))
		}
		rec := value.Versioned{LSN: 100, Record: value.NewPostgres(raw, willInit).Record}
		for _, hasImage := range []bool{false, true} {
			r := value.Reconstruction{Key: target, LSN: 100, HasImage: hasImage, Records: []value.Versioned{rec, rec}}
			if hasImage {
				r.Image = page(1)
			}
			p, err := makePlan(r, false)
			if err == nil && p.base == nil && p.records() > 0 && !p.steps[0].records[0].Record.WillInit {
				t.Fatal("a plan with no base whose first record does not initialise the page")
			}
		}
	})
}
