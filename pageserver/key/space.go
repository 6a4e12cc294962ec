package key

import "fmt"

// The first field of each kind of key (PS §1.2).
const (
	prefixRel       = 0x00
	prefixSlru      = 0x01
	prefixTwoPhase  = 0x02
	prefixControl   = 0x03
	prefixAuxFile   = 0x62
	prefixReplOrig  = 0x63
	prefixMetaStart = 0x60 // sparse (metadata) keys: [0x60, 0x7F)
	prefixMetaEnd   = 0x7F
)

// sizeBlock is Field6 of a size key: after the last possible block.
const sizeBlock = 0xFFFFFFFF

// Fork numbers of a relation.
const (
	ForkMain uint8 = 0
	ForkFSM  uint8 = 1
	ForkVM   uint8 = 2
	ForkInit uint8 = 3
)

// Tablespace OIDs of the default and global tablespaces.
const (
	DefaultTablespace = 1663
	GlobalTablespace  = 1664
)

// Rel names one fork of a relation.
type Rel struct {
	Spc, DB, Rel uint32
	Fork         uint8
}

func (r Rel) String() string {
	return fmt.Sprintf("%d/%d/%d.%d", r.Spc, r.DB, r.Rel, r.Fork)
}

// RelBlock is the key of block blk of r.
func RelBlock(r Rel, blk uint32) Key { return Key{prefixRel, r.Spc, r.DB, r.Rel, r.Fork, blk} }

// RelSize is the key of r's size in blocks (u32 LE).
func RelSize(r Rel) Key { return Key{prefixRel, r.Spc, r.DB, r.Rel, r.Fork, sizeBlock} }

// RelRange covers every key of r: its blocks and its size.
func RelRange(r Rel) Range { return Range{RelBlock(r, 0), RelSize(r).Next()} }

// DBRange covers every relation key of a database, its directory and relmap.
func DBRange(spc, db uint32) Range {
	return Range{Key{prefixRel, spc, db, 0, 0, 0}, Key{prefixRel, spc, db + 1, 0, 0, 0}}
}

// DBDir is the key of the list of databases.
func DBDir() Key { return Key{} }

// RelMap is the key of a database's pg_filenode.map.
func RelMap(spc, db uint32) Key { return Key{prefixRel, spc, db, 0, 0, 0} }

// RelDir is the key of the list of a database's relation forks.
func RelDir(spc, db uint32) Key { return Key{prefixRel, spc, db, 0, 0, 1} }

// SlruKind is one of the SLRUs the pageserver keeps.
type SlruKind uint8

// The SLRUs, numbered as in the key.
const (
	Clog             SlruKind = 0
	MultiXactMembers SlruKind = 1
	MultiXactOffsets SlruKind = 2
)

// SlruKinds lists every SLRU.
var SlruKinds = [...]SlruKind{Clog, MultiXactMembers, MultiXactOffsets}

func (k SlruKind) String() string {
	switch k {
	case Clog:
		return "pg_xact"
	case MultiXactMembers:
		return "pg_multixact/members"
	case MultiXactOffsets:
		return "pg_multixact/offsets"
	}
	return fmt.Sprintf("slru(%d)", uint8(k))
}

// SlruDir is the key of the list of an SLRU's segments.
func SlruDir(k SlruKind) Key { return Key{prefixSlru, uint32(k), 0, 0, 0, 0} }

// SlruBlock is the key of page blk (0..31) of segment segno.
func SlruBlock(k SlruKind, segno, blk uint32) Key {
	return Key{prefixSlru, uint32(k), 1, segno, 0, blk}
}

// SlruSegSize is the key of a segment's size in pages (u32 LE).
func SlruSegSize(k SlruKind, segno uint32) Key {
	return Key{prefixSlru, uint32(k), 1, segno, 0, sizeBlock}
}

// SlruSegRange covers every key of one segment.
func SlruSegRange(k SlruKind, segno uint32) Range {
	return Range{SlruBlock(k, segno, 0), SlruSegSize(k, segno).Next()}
}

// TwoPhaseDir is the key of the list of prepared transactions.
func TwoPhaseDir() Key { return Key{prefixTwoPhase, 0, 0, 0, 0, 0} }

// TwoPhaseFile is the key of a prepared transaction's state (32-bit xids,
// as in PostgreSQL 15).
func TwoPhaseFile(xid uint32) Key { return Key{prefixTwoPhase, 0, 0, 0, 0, xid} }

// ControlFile is the key of global/pg_control.
func ControlFile() Key { return Key{prefixControl, 0, 0, 0, 0, 0} }

// Checkpoint is the key of the 88-byte CheckPoint the pageserver maintains.
func Checkpoint() Key { return Key{prefixControl, 0, 0, 0, 0, 1} }

// auxFilesV1 is Neon's legacy aux-file key: never written, never inherited.
func auxFilesV1() Key { return Key{prefixControl, 0, 0, 0, 0, 2} }

// ReplOrigin is the key of a replication origin's remote LSN.
func ReplOrigin(id uint16) Key { return Key{prefixReplOrig, 0, 0, 0, 0, uint32(id)} }

// IsRelBlock reports whether k is a relation block.
func (k Key) IsRelBlock() bool {
	return k.Field1 == prefixRel && k.Field4 != 0 && k.Field6 != sizeBlock
}

// IsRelSize reports whether k is a relation size.
func (k Key) IsRelSize() bool { return k.Field1 == prefixRel && k.Field6 == sizeBlock }

// IsSlruBlock reports whether k is an SLRU page.
func (k Key) IsSlruBlock() bool {
	return k.Field1 == prefixSlru && k.Field3 == 1 && k.Field6 != sizeBlock
}

// IsData reports whether k is a page (relation or SLRU); every other key is
// metadata.
func (k Key) IsData() bool { return k.IsRelBlock() || k.IsSlruBlock() }

// IsSparse reports whether k is in the sparse metadata range, where a
// missing key is absent rather than an error and an empty value is a
// tombstone.
func (k Key) IsSparse() bool { return k.Field1 >= prefixMetaStart && k.Field1 < prefixMetaEnd }

// IsInherited reports whether a branch reads k from its ancestor when it
// has no version of its own (PS §1.2): everything but aux files and
// replication origins.
func (k Key) IsInherited() bool {
	if k == auxFilesV1() {
		return false
	}
	return k.Field1 < prefixAuxFile || k.Field1 >= prefixReplOrig+1
}

// Rel is the relation fork of a relation block or size key.
func (k Key) Rel() Rel { return Rel{Spc: k.Field2, DB: k.Field3, Rel: k.Field4, Fork: k.Field5} }

// Block is the block number of a relation or SLRU block key.
func (k Key) Block() uint32 { return k.Field6 }

// Slru is the kind and segment of an SLRU block or size key.
func (k Key) Slru() (SlruKind, uint32) { return SlruKind(k.Field2), k.Field4 }
