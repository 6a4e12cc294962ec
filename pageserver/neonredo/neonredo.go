// Package neonredo applies the pageserver's own records (PS §3) to a page
// in Go: visibility-map bit clears and truncations, CLOG status updates and
// multixact offsets and members. These are the records ingest writes for
// changes that PostgreSQL's WAL describes without a block reference to the
// page changed; they need no WAL-redo process.
//
// Unlike Neon's apply_neon.rs, which asserts, every inconsistency (a record
// applied to the wrong kind of key or to a page it does not map to, a page
// of the wrong size, no base page) is an error wrapping ErrInvalid.
//
// Apply changes the page it is given in place and returns it (a CLOG page
// may come back 8 bytes longer, see ClogSetCommitted); pass a copy of any
// page that is shared.
//
// Reconstruct rebuilds a value read from a timeline when none of its
// records needs PostgreSQL; a value that does fails with ErrNeedsRedo.
package neonredo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

// ErrInvalid is wrapped by every error: the record cannot apply to the
// page.
var ErrInvalid = errors.New("invalid neon WAL redo request")

// ErrNeedsRedo is wrapped when a value has a record only PostgreSQL can
// apply (value.Postgres kind).
var ErrNeedsRedo = errors.New("page needs PostgreSQL WAL redo")

// Page geometry (PS §1.4).
const (
	BlockSize               = 8192
	pageHeaderSize          = pgpage.HeaderSize
	slruPagesPerSegment     = 32
	clogXactsPerPage        = BlockSize * 4                  // 32768
	multiXactOffsetsPerPage = BlockSize / 4                  // 2048
	multiXactGroupSize      = 20                             // 4 flag bytes + 4 xids
	multiXactGroupsPerPage  = BlockSize / multiXactGroupSize // 409
	multiXactMembersPerPage = multiXactGroupsPerPage * 4     // 1636

	clogCommitted = 1
	clogAborted   = 2

	// ClogPageWithTimestamp is the length of a CLOG page that carries the
	// commit timestamp of its last ClogSetCommitted (PS §3): the page,
	// then the timestamp as an i64 BE. Serve only the first BlockSize
	// bytes to PostgreSQL.
	ClogPageWithTimestamp = BlockSize + 8
)

// Applicable reports whether Apply handles r (everything but Postgres
// records, which need the WAL-redo process).
func Applicable(r value.Record) bool { return r.Kind != value.Postgres }

// Apply applies one record to page, the value of k just below rec.LSN.
func Apply(k key.Key, page []byte, rec value.Versioned) ([]byte, error) {
	r := &rec.Record
	if page == nil && r.Kind != value.AuxFile {
		return nil, invalid(k, rec, "no base image")
	}
	switch r.Kind {
	case value.ClearVisibilityMapFlags:
		return clearVM(k, page, rec)
	case value.TruncateVisibilityMap:
		return truncateVM(k, page, rec)
	case value.ClogSetCommitted:
		return setClog(k, page, rec, clogCommitted)
	case value.ClogSetAborted:
		return setClog(k, page, rec, clogAborted)
	case value.MultixactOffsetCreate:
		return multixactOffset(k, page, rec)
	case value.MultixactMembersCreate:
		return multixactMembers(k, page, rec)
	case value.AuxFile:
		return page, nil // legacy: nothing to do
	case value.Postgres:
		return nil, invalid(k, rec, "a PostgreSQL record needs the WAL-redo process")
	}
	return nil, invalid(k, rec, "unknown record kind %s", r.Kind)
}

// ApplyAll applies records in order to a copy of base.
func ApplyAll(k key.Key, base []byte, recs []value.Versioned) ([]byte, error) {
	page := append([]byte(nil), base...)
	if base == nil {
		page = nil
	}
	for _, rec := range recs {
		var err error
		if page, err = Apply(k, page, rec); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// Reconstruct rebuilds r's value when no PostgreSQL redo is needed: r's
// image (if any) plus Neon records applied in Go (ApplyAll). An image-only
// reconstruction returns the image itself, not a copy: do not modify it.
func Reconstruct(r value.Reconstruction) ([]byte, error) {
	if r.ImageOnly() {
		return r.Image, nil
	}
	if !r.HasImage && len(r.Records) == 0 {
		return nil, fmt.Errorf("reconstruct %s at %s: %w: no image and no records", r.Key, r.LSN, ErrInvalid)
	}
	// Look for a PostgreSQL record before applying anything, so that such
	// a value always fails with ErrNeedsRedo, whatever precedes it.
	for _, rec := range r.Records {
		if !Applicable(rec.Record) {
			return nil, fmt.Errorf("reconstruct %s at %s: record at %s: %w", r.Key, r.LSN, rec.LSN, ErrNeedsRedo)
		}
	}
	var base []byte
	if r.HasImage {
		base = r.Image
	}
	page, err := ApplyAll(r.Key, base, r.Records)
	if err != nil {
		// err names the record's kind and LSN.
		return nil, fmt.Errorf("reconstruct %s at %s: %w", r.Key, r.LSN, err)
	}
	return page, nil
}

// Reconstructor implements pageserver/timeline.Reconstructor with
// Reconstruct, until the WAL-redo process pool exists: a value with a
// PostgreSQL record fails with ErrNeedsRedo.
type Reconstructor struct{}

// Reconstruct is Reconstruct; ctx is unused (nothing here blocks).
func (Reconstructor) Reconstruct(_ context.Context, r value.Reconstruction) ([]byte, error) {
	return Reconstruct(r)
}

func invalid(k key.Key, rec value.Versioned, format string, args ...any) error {
	return fmt.Errorf("%w: %s on %s at %s: %s", ErrInvalid, rec.Record.Kind, k, rec.LSN, fmt.Sprintf(format, args...))
}

func isVMBlock(k key.Key) bool { return k.IsRelBlock() && k.Rel().Fork == key.ForkVM }

func clearVM(k key.Key, page []byte, rec value.Versioned) ([]byte, error) {
	r := &rec.Record
	if !isVMBlock(k) {
		return nil, invalid(k, rec, "not a visibility map block")
	}
	if len(page) != BlockSize {
		return nil, invalid(k, rec, "page of %d bytes", len(page))
	}
	clear := func(heapBlk uint32) error {
		block, mapByte, shift := pgpage.VMBits(heapBlk)
		if block != k.Block() {
			return invalid(k, rec, "heap block %d is on visibility map block %d", heapBlk, block)
		}
		page[pgpage.HeaderSize+mapByte] &^= r.Flags << shift
		return nil
	}
	if r.HasNewHeapBlkno {
		if err := clear(r.NewHeapBlkno); err != nil {
			return nil, err
		}
	}
	if r.HasOldHeapBlkno {
		if err := clear(r.OldHeapBlkno); err != nil {
			return nil, err
		}
	}
	// As visibilitymap_clear's redo does through the buffer: a page that
	// was never initialised keeps LSN 0.
	if !pgpage.IsNew(page) {
		pgpage.SetLSN(page, rec.LSN)
	}
	return page, nil
}

func truncateVM(k key.Key, page []byte, rec value.Versioned) ([]byte, error) {
	r := &rec.Record
	if !isVMBlock(k) {
		return nil, invalid(k, rec, "not a visibility map block")
	}
	if len(page) != BlockSize {
		return nil, invalid(k, rec, "page of %d bytes", len(page))
	}
	m := page[pageHeaderSize:]
	if r.TruncByte >= uint64(len(m)) || r.TruncOffs >= 8 {
		return nil, invalid(k, rec, "trunc_byte %d trunc_offs %d outside the map", r.TruncByte, r.TruncOffs)
	}
	clear(m[r.TruncByte+1:])
	m[r.TruncByte] &= byte(1)<<r.TruncOffs - 1
	return page, nil
}

// slruPage checks that k is a page of the given SLRU and returns its page
// number within the SLRU.
func slruPage(k key.Key, kind key.SlruKind) (uint32, bool) {
	if !k.IsSlruBlock() {
		return 0, false
	}
	got, seg := k.Slru()
	if got != kind || k.Block() >= slruPagesPerSegment {
		return 0, false
	}
	return seg*slruPagesPerSegment + k.Block(), true
}

func setClog(k key.Key, page []byte, rec value.Versioned, status byte) ([]byte, error) {
	r := &rec.Record
	pageno, ok := slruPage(k, key.Clog)
	if !ok {
		return nil, invalid(k, rec, "not a CLOG page")
	}
	if len(page) != BlockSize && len(page) != ClogPageWithTimestamp {
		return nil, invalid(k, rec, "CLOG page of %d bytes", len(page))
	}
	for _, xid := range r.Xids {
		if xid/clogXactsPerPage != pageno {
			return nil, invalid(k, rec, "xid %d is on CLOG page %d", xid, xid/clogXactsPerPage)
		}
		byteNo := xid % clogXactsPerPage / 4
		shift := xid % 4 * 2
		page[byteNo] = page[byteNo]&^(3<<shift) | status<<shift
	}
	if r.Kind == value.ClogSetCommitted {
		page = binary.BigEndian.AppendUint64(page[:BlockSize], uint64(r.Timestamp))
	}
	return page, nil
}

func multixactOffset(k key.Key, page []byte, rec value.Versioned) ([]byte, error) {
	r := &rec.Record
	pageno, ok := slruPage(k, key.MultiXactOffsets)
	if !ok {
		return nil, invalid(k, rec, "not a multixact offsets page")
	}
	if len(page) != BlockSize {
		return nil, invalid(k, rec, "page of %d bytes", len(page))
	}
	if r.Mid/multiXactOffsetsPerPage != pageno {
		return nil, invalid(k, rec, "multixact %d is on offsets page %d", r.Mid, r.Mid/multiXactOffsetsPerPage)
	}
	binary.LittleEndian.PutUint32(page[r.Mid%multiXactOffsetsPerPage*4:], r.Moff)
	return page, nil
}

func multixactMembers(k key.Key, page []byte, rec value.Versioned) ([]byte, error) {
	r := &rec.Record
	pageno, ok := slruPage(k, key.MultiXactMembers)
	if !ok {
		return nil, invalid(k, rec, "not a multixact members page")
	}
	if len(page) != BlockSize {
		return nil, invalid(k, rec, "page of %d bytes", len(page))
	}
	for i, m := range r.Members {
		off := r.Moff + uint32(i) // member offsets wrap around
		if off/multiXactMembersPerPage != pageno {
			return nil, invalid(k, rec, "member offset %d is on members page %d", off, off/multiXactMembersPerPage)
		}
		if m.Status > 0xFF {
			return nil, invalid(k, rec, "member status %d does not fit its 8 bits", m.Status)
		}
		flagsOff := off / 4 % multiXactGroupsPerPage * multiXactGroupSize
		shift := off % 4 * 8
		flags := binary.LittleEndian.Uint32(page[flagsOff:])
		flags = flags&^(0xFF<<shift) | m.Status<<shift
		binary.LittleEndian.PutUint32(page[flagsOff:], flags)
		binary.LittleEndian.PutUint32(page[flagsOff+4+off%4*4:], m.Xid)
	}
	return page, nil
}
