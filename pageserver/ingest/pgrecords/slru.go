package pgrecords

// SLRU geometry of PostgreSQL 15 with 8 KiB pages (PS §1.4).
const (
	SlruPagesPerSegment     = 32
	ClogXactsPerPage        = 32768 // CLOG_XACTS_PER_PAGE: 2 bits each
	MultiXactOffsetsPerPage = 2048  // MULTIXACT_OFFSETS_PER_PAGE: uint32 each
	MultiXactMembersPerPage = 1636  // MULTIXACT_MEMBERS_PER_PAGE: 409 groups of 4
	MaxMultiXactOffset      = 0xFFFFFFFF
	FirstMultiXactID        = 1
)

// RM_CLOG_ID record types (access/clog.h).
const (
	CLOG_ZEROPAGE = 0x00
	CLOG_TRUNCATE = 0x10
)

// ParseClogZeroPage parses CLOG_ZEROPAGE: the CLOG page number to zero.
func ParseClogZeroPage(data []byte) (int32, error) {
	return parsePageno("CLOG_ZEROPAGE", data)
}

func parsePageno(what string, data []byte) (int32, error) {
	r := newReader(what, data)
	r.exactly(4)
	return result(r, r.pageno("pageno"))
}

// ClogTruncate is xl_clog_truncate: CLOG segments before Pageno were
// removed; OldestXact and OldestXactDB are the new oldestXid horizon.
type ClogTruncate struct {
	Pageno       int32
	OldestXact   uint32
	OldestXactDB uint32
}

// ParseClogTruncate parses CLOG_TRUNCATE.
func ParseClogTruncate(data []byte) (ClogTruncate, error) {
	r := newReader("CLOG_TRUNCATE", data)
	r.exactly(12)
	t := ClogTruncate{Pageno: r.pageno("pageno"), OldestXact: r.u32("oldestXact"), OldestXactDB: r.u32("oldestXactDb")}
	return result(r, t)
}

// ClogPagePrecedes is CLOGPagePrecedes (PostgreSQL 15): whether every xid
// of page a precedes page b's, with the FirstNormalTransactionId+1 offset
// that keeps the comparison away from special xids.
func ClogPagePrecedes(a, b uint32) bool {
	xa := a*ClogXactsPerPage + FirstNormalTransactionID + 1
	xb := b*ClogXactsPerPage + FirstNormalTransactionID + 1
	return TransactionIDPrecedes(xa, xb) && TransactionIDPrecedes(xa, xb+ClogXactsPerPage-1)
}

// MultiXactOffsetPagePrecedes is MultiXactOffsetPagePrecedes.
func MultiXactOffsetPagePrecedes(a, b uint32) bool {
	ma := a*MultiXactOffsetsPerPage + FirstMultiXactID + 1
	mb := b*MultiXactOffsetsPerPage + FirstMultiXactID + 1
	return int32(ma-mb) < 0 && int32(ma-(mb+MultiXactOffsetsPerPage-1)) < 0
}

// SlruMayDeleteSegment is SlruMayDeleteSegment: a segment starting at page
// segPage may go when both its first and last page precede cutoffPage.
func SlruMayDeleteSegment(precedes func(a, b uint32) bool, segPage, cutoffPage uint32) bool {
	last := segPage + SlruPagesPerSegment - 1
	return precedes(segPage, cutoffPage) && precedes(last, cutoffPage)
}

// MultiXactMemberSegment is MXOffsetToMemberSegment: the members segment
// holding offset o.
func MultiXactMemberSegment(o uint32) uint32 {
	return o / MultiXactMembersPerPage / SlruPagesPerSegment
}

// RM_MULTIXACT_ID record types (access/multixact.h).
const (
	XLOG_MULTIXACT_ZERO_OFF_PAGE = 0x00
	XLOG_MULTIXACT_ZERO_MEM_PAGE = 0x10
	XLOG_MULTIXACT_CREATE_ID     = 0x20
	XLOG_MULTIXACT_TRUNCATE_ID   = 0x30
)

// ParseMultiXactZeroPage parses XLOG_MULTIXACT_ZERO_OFF_PAGE and
// XLOG_MULTIXACT_ZERO_MEM_PAGE: the page number to zero.
func ParseMultiXactZeroPage(data []byte) (int32, error) {
	return parsePageno("XLOG_MULTIXACT_ZERO_PAGE", data)
}

// MultiXactMember is one member of a multixact: an xid and its lock mode
// (MultiXactStatus, 0 ForKeyShare .. 5 Update).
type MultiXactMember struct {
	Xid    uint32
	Status uint32
}

// MultiXactCreate is xl_multixact_create: multixact Mid with its members
// stored from member offset Moff on.
type MultiXactCreate struct {
	Mid     uint32
	Moff    uint32
	Members []MultiXactMember
}

// ParseMultiXactCreate parses XLOG_MULTIXACT_CREATE_ID.
func ParseMultiXactCreate(data []byte) (MultiXactCreate, error) {
	r := newReader("XLOG_MULTIXACT_CREATE_ID", data)
	c := MultiXactCreate{Mid: r.u32("mid"), Moff: r.u32("moff")}
	n := r.count("nmembers", 8)
	c.Members = make([]MultiXactMember, n)
	for i := range c.Members {
		c.Members[i] = MultiXactMember{Xid: r.u32("xid"), Status: r.u32("status")}
	}
	r.end()
	return result(r, c)
}

// MultiXactTruncate is xl_multixact_truncate: multixacts
// [StartTruncOff, EndTruncOff) and members [StartTruncMemb, EndTruncMemb)
// were removed.
type MultiXactTruncate struct {
	OldestMultiDB  uint32
	StartTruncOff  uint32
	EndTruncOff    uint32
	StartTruncMemb uint32
	EndTruncMemb   uint32
}

// ParseMultiXactTruncate parses XLOG_MULTIXACT_TRUNCATE_ID.
func ParseMultiXactTruncate(data []byte) (MultiXactTruncate, error) {
	r := newReader("XLOG_MULTIXACT_TRUNCATE_ID", data)
	r.exactly(20)
	t := MultiXactTruncate{OldestMultiDB: r.u32("oldestMultiDB"), StartTruncOff: r.u32("startTruncOff"),
		EndTruncOff: r.u32("endTruncOff"), StartTruncMemb: r.u32("startTruncMemb"), EndTruncMemb: r.u32("endTruncMemb")}
	return result(r, t)
}
