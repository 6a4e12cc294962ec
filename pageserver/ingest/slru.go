package ingest

// CLOG and multixact records (PS §2.6): zero pages extend the SLRUs,
// commits and multixact creations become Neon records on their pages,
// truncations drop whole segments.

import (
	"context"
	"fmt"

	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

func (in *Ingester) clog(ctx context.Context, info uint8, data []byte) error {
	switch info {
	case pgrecords.CLOG_ZEROPAGE:
		p, err := pgrecords.ParseClogZeroPage(data)
		if err != nil {
			return err
		}
		return in.putSlruPage(ctx, key.Clog, uint32(p), in.zeroPage)
	case pgrecords.CLOG_TRUNCATE:
		t, err := pgrecords.ParseClogTruncate(data)
		if err != nil {
			return err
		}
		return in.clogTruncate(ctx, &t)
	}
	return fmt.Errorf("unknown CLOG record 0x%02X", info)
}

// clogTruncate is clog_redo's truncation: the oldestXid horizon moves to
// the record's (PostgreSQL logs the checkpoint with it only later, but a
// basebackup can be taken at any LSN), and every CLOG segment wholly
// before the cutoff page goes, unless the page of nextXid precedes the
// cutoff (SimpleLruTruncate's "apparent wraparound" check).
func (in *Ingester) clogTruncate(ctx context.Context, t *pgrecords.ClogTruncate) error {
	in.checkpoint.OldestXid, in.checkpoint.OldestXidDB = t.OldestXact, t.OldestXactDB
	in.checkpointMod = true
	cutoff := uint32(t.Pageno)
	latest := uint32(in.checkpoint.NextXid) / pgrecords.ClogXactsPerPage
	if pgrecords.ClogPagePrecedes(latest, cutoff) {
		return nil
	}
	return in.dropSlruSegments(ctx, key.Clog, func(seg uint32) bool {
		return pgrecords.SlruMayDeleteSegment(pgrecords.ClogPagePrecedes, seg*pgrecords.SlruPagesPerSegment, cutoff)
	})
}

func (in *Ingester) multixact(ctx context.Context, info uint8, data []byte) error {
	switch info {
	case pgrecords.XLOG_MULTIXACT_ZERO_OFF_PAGE, pgrecords.XLOG_MULTIXACT_ZERO_MEM_PAGE:
		p, err := pgrecords.ParseMultiXactZeroPage(data)
		if err != nil {
			return err
		}
		kind := key.MultiXactOffsets
		if info == pgrecords.XLOG_MULTIXACT_ZERO_MEM_PAGE {
			kind = key.MultiXactMembers
		}
		return in.putSlruPage(ctx, kind, uint32(p), in.zeroPage)
	case pgrecords.XLOG_MULTIXACT_CREATE_ID:
		c, err := pgrecords.ParseMultiXactCreate(data)
		if err != nil {
			return err
		}
		return in.multixactCreate(ctx, &c)
	case pgrecords.XLOG_MULTIXACT_TRUNCATE_ID:
		t, err := pgrecords.ParseMultiXactTruncate(data)
		if err != nil {
			return err
		}
		return in.multixactTruncate(ctx, &t)
	}
	return fmt.Errorf("unknown multixact record 0x%02X", info)
}

// multixactCreate records the offset of the multixact and its members,
// split by members page (offsets wrap around at 2^32), and moves
// nextMulti, nextMultiOffset and nextXid past them (multixact_redo).
//
// PostgreSQL 15.15 and later (RecordNewMultiXact) also store the next
// multixact's offset, moff + nmembers (never 0), so that the newest
// multixact's length can be read back; and during recovery they zero the
// next offsets page if WAL from an older minor version never did. Neon's
// MultixactOffsetCreate sets one entry, so when both entries are on one
// page the own entry goes one byte below the record's end LSN (putEarly).
func (in *Ingester) multixactCreate(ctx context.Context, c *pgrecords.MultiXactCreate) error {
	next := c.Mid + 1
	if next < pgrecords.FirstMultiXactID {
		next = pgrecords.FirstMultiXactID
	}
	nextOff := c.Moff + uint32(len(c.Members))
	if nextOff == 0 {
		nextOff = 1
	}
	page, nextPage := c.Mid/pgrecords.MultiXactOffsetsPerPage, next/pgrecords.MultiXactOffsetsPerPage
	own := value.Record{Kind: value.MultixactOffsetCreate, Mid: c.Mid, Moff: c.Moff}
	following := value.Record{Kind: value.MultixactOffsetCreate, Mid: next, Moff: nextOff}
	if page == nextPage {
		if err := in.putEarly(slruKey(key.MultiXactOffsets, page), value.NewRecord(own)); err != nil {
			return err
		}
	} else {
		if err := in.putSlruRecord(key.MultiXactOffsets, page, own); err != nil {
			return err
		}
		exists, err := in.slruPageExists(ctx, key.MultiXactOffsets, nextPage)
		if err != nil {
			return err
		}
		if !exists {
			if err := in.extendSlru(ctx, key.MultiXactOffsets, nextPage); err != nil {
				return err
			}
			if err := in.putEarly(slruKey(key.MultiXactOffsets, nextPage), value.NewImage(in.zeroPage)); err != nil {
				return err
			}
		}
	}
	if err := in.putSlruRecord(key.MultiXactOffsets, nextPage, following); err != nil {
		return err
	}

	off := c.Moff
	for rest := c.Members; len(rest) > 0; {
		n := min(len(rest), int(pgrecords.MultiXactMembersPerPage-off%pgrecords.MultiXactMembersPerPage))
		members := make([]value.MultiXactMember, n)
		for i, m := range rest[:n] {
			members[i] = value.MultiXactMember{Xid: m.Xid, Status: m.Status}
			in.advanceXid(m.Xid)
		}
		r := value.Record{Kind: value.MultixactMembersCreate, Moff: off, Members: members}
		if err := in.putSlruRecord(key.MultiXactMembers, off/pgrecords.MultiXactMembersPerPage, r); err != nil {
			return err
		}
		rest = rest[n:]
		off += uint32(n)
	}
	if in.checkpoint.AdvanceNextMulti(c.Mid+1, off) {
		in.checkpointMod = true
	}
	return nil
}

// multixactTruncate is multixact_redo's truncation: the oldestMulti
// horizon moves, members segments [start, end) go (wrapping after the
// last one), and offsets segments wholly before the page of the multixact
// preceding endTruncOff go (PerformOffsetsTruncation; Neon leaves offsets
// alone).
func (in *Ingester) multixactTruncate(ctx context.Context, t *pgrecords.MultiXactTruncate) error {
	in.checkpoint.OldestMulti, in.checkpoint.OldestMultiDB = t.EndTruncOff, t.OldestMultiDB
	in.checkpointMod = true

	// PerformMembersTruncation walks from start to end, wrapping after
	// the last segment; the same segments, tested directly.
	start := pgrecords.MultiXactMemberSegment(t.StartTruncMemb)
	end := pgrecords.MultiXactMemberSegment(t.EndTruncMemb)
	err := in.dropSlruSegments(ctx, key.MultiXactMembers, func(seg uint32) bool {
		if start <= end {
			return start <= seg && seg < end
		}
		return seg >= start || seg < end
	})
	if err != nil {
		return err
	}

	prev := t.EndTruncOff - 1 // PreviousMultiXactId
	if t.EndTruncOff == pgrecords.FirstMultiXactID {
		prev = 0xFFFFFFFF
	}
	cutoff := prev / pgrecords.MultiXactOffsetsPerPage
	return in.dropSlruSegments(ctx, key.MultiXactOffsets, func(seg uint32) bool {
		return pgrecords.SlruMayDeleteSegment(pgrecords.MultiXactOffsetPagePrecedes, seg*pgrecords.SlruPagesPerSegment, cutoff)
	})
}
