package pgrecords

// RM_SMGR_ID record types (catalog/storage_xlog.h).
const (
	XLOG_SMGR_CREATE   = 0x10
	XLOG_SMGR_TRUNCATE = 0x20
)

// xl_smgr_truncate.flags.
const (
	SMGR_TRUNCATE_HEAP = 0x0001
	SMGR_TRUNCATE_VM   = 0x0002
	SMGR_TRUNCATE_FSM  = 0x0004
	SMGR_TRUNCATE_ALL  = SMGR_TRUNCATE_HEAP | SMGR_TRUNCATE_VM | SMGR_TRUNCATE_FSM
)

// MaxForkNum is MAX_FORKNUM: the init fork.
const MaxForkNum = 3

// SmgrCreate is xl_smgr_create: a relation fork's file was created.
type SmgrCreate struct {
	Rel  RelFileNode
	Fork int32 // ForkNumber
}

// ParseSmgrCreate parses XLOG_SMGR_CREATE.
func ParseSmgrCreate(data []byte) (SmgrCreate, error) {
	r := newReader("XLOG_SMGR_CREATE", data)
	r.exactly(16)
	c := SmgrCreate{Rel: r.relFileNode("rnode"), Fork: int32(r.u32("forkNum"))}
	if r.err == nil && (c.Fork < 0 || c.Fork > MaxForkNum) {
		r.fail("fork number %d", c.Fork)
	}
	return result(r, c)
}

// SmgrTruncate is xl_smgr_truncate: the relation's forks named by Flags
// were cut to what holds Blkno heap blocks.
type SmgrTruncate struct {
	Blkno uint32
	Rel   RelFileNode
	Flags uint32
}

// ParseSmgrTruncate parses XLOG_SMGR_TRUNCATE.
func ParseSmgrTruncate(data []byte) (SmgrTruncate, error) {
	r := newReader("XLOG_SMGR_TRUNCATE", data)
	r.exactly(20)
	t := SmgrTruncate{Blkno: r.u32("blkno"), Rel: r.relFileNode("rnode"), Flags: r.u32("flags")}
	return result(r, t)
}

// RM_DBASE_ID record types (commands/dbcommands_xlog.h), PostgreSQL 15.
const (
	XLOG_DBASE_CREATE_FILE_COPY = 0x00
	XLOG_DBASE_CREATE_WAL_LOG   = 0x10
	XLOG_DBASE_DROP             = 0x20
)

// DbaseCreateFileCopy is xl_dbase_create_file_copy_rec: a database made
// by copying another one's directory (CREATE DATABASE ... STRATEGY
// FILE_COPY).
type DbaseCreateFileCopy struct {
	DB, Tablespace       uint32
	SrcDB, SrcTablespace uint32
}

// ParseDbaseCreateFileCopy parses XLOG_DBASE_CREATE_FILE_COPY.
func ParseDbaseCreateFileCopy(data []byte) (DbaseCreateFileCopy, error) {
	r := newReader("XLOG_DBASE_CREATE_FILE_COPY", data)
	r.exactly(16)
	c := DbaseCreateFileCopy{DB: r.u32("db_id"), Tablespace: r.u32("tablespace_id"),
		SrcDB: r.u32("src_db_id"), SrcTablespace: r.u32("src_tablespace_id")}
	return result(r, c)
}

// DbaseCreateWalLog is xl_dbase_create_wal_log_rec: a database directory
// was created; its contents follow as ordinary WAL (STRATEGY WAL_LOG, the
// PostgreSQL 15 default).
type DbaseCreateWalLog struct{ DB, Tablespace uint32 }

// ParseDbaseCreateWalLog parses XLOG_DBASE_CREATE_WAL_LOG.
func ParseDbaseCreateWalLog(data []byte) (DbaseCreateWalLog, error) {
	r := newReader("XLOG_DBASE_CREATE_WAL_LOG", data)
	r.exactly(8)
	c := DbaseCreateWalLog{DB: r.u32("db_id"), Tablespace: r.u32("tablespace_id")}
	return result(r, c)
}

// DbaseDrop is xl_dbase_drop_rec: a database was dropped from every
// tablespace listed.
type DbaseDrop struct {
	DB          uint32
	Tablespaces []uint32
}

// ParseDbaseDrop parses XLOG_DBASE_DROP.
func ParseDbaseDrop(data []byte) (DbaseDrop, error) {
	r := newReader("XLOG_DBASE_DROP", data)
	d := DbaseDrop{DB: r.u32("db_id")}
	n := r.count("ntablespaces", 4)
	d.Tablespaces = make([]uint32, n)
	for i := range d.Tablespaces {
		d.Tablespaces[i] = r.u32("tablespace_id")
	}
	r.end()
	return result(r, d)
}

// RM_RELMAP_ID record type (utils/relmapper.h).
const XLOG_RELMAP_UPDATE = 0x00

// RelMapFileSize is sizeof(RelMapFile) in PostgreSQL 15.
const RelMapFileSize = 512

// RelmapUpdate is xl_relmap_update: the new pg_filenode.map of a database
// (DB 0 in the global tablespace for the shared map).
type RelmapUpdate struct {
	DB, Tablespace uint32
	Data           []byte // the whole map file
}

// ParseRelmapUpdate parses XLOG_RELMAP_UPDATE.
func ParseRelmapUpdate(data []byte) (RelmapUpdate, error) {
	r := newReader("XLOG_RELMAP_UPDATE", data)
	u := RelmapUpdate{DB: r.u32("dbid"), Tablespace: r.u32("tsid")}
	n := int32(r.u32("nbytes"))
	if r.err == nil && (n < 0 || int(n) != r.remaining()) {
		r.fail("nbytes %d, but %d bytes follow", n, r.remaining())
	}
	if r.err == nil && n != RelMapFileSize {
		r.fail("map file of %d bytes, want %d", n, RelMapFileSize)
	}
	u.Data = r.take(int(n), "data")
	return result(r, u)
}

// RM_TBLSPC_ID record types (commands/tablespace.h).
const (
	XLOG_TBLSPC_CREATE = 0x00
	XLOG_TBLSPC_DROP   = 0x10
)
