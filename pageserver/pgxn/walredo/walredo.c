/*
 * walredo.c: a WAL-redo server for unmodified PostgreSQL 15.
 *
 * The pageserver runs `postgres --single` on a scratch copy of an initdb'd
 * directory, sends the line `SELECT walredo_main();` and waits for one 0x00
 * byte on stdout. From then on walredo_main() never returns: it reads the
 * B/P/A/G/H messages of the pageserver spec (PS §4.2) from fd 0 and writes
 * 8192-byte pages to fd 1, with raw read(2)/write(2).
 *
 *   'B' tag            begin a request for the target block `tag`
 *   'P' tag page       the target's base image
 *   'A' end_lsn record apply one XLogRecord (end_lsn: where it ends)
 *   'G' tag            return the target page, forget every buffer
 *   'H'                ping: return 8192 zero bytes
 *
 * Each message is `u8 type, u32 BE length (counting itself), payload`; a tag
 * is `u8 fork, u32 BE spcnode, dbnode, relnode, blkno`.
 *
 * Vanilla PostgreSQL has no hook to keep redo to the target block, so the
 * request runs real redo routines against the buffer pool and the scratch
 * directory's files, arranged so that nothing but the target is ever read or
 * written:
 *   - every fork a record references is made to look at least blkno+1
 *     blocks long (cached nblocks), so redo never extends a file; FSM and VM
 *     forks look huge, so heap redo's FSM/VM updates touch zero pages in
 *     memory only;
 *   - every other block a record references that the record neither
 *     restores from an image nor initialises is made a zero page in the
 *     buffer pool first: redo then finds a "new" page, reports it as
 *     invalid (only a WARNING with ignore_invalid_pages) and skips the
 *     block;
 *   - after 'G' every buffer of the relations touched is dropped, so nothing
 *     is written back and no page lingers into the next request.
 * The pageserver bounds the blocks a request references so that the pool
 * never has to evict a dirty buffer (an eviction would try to flush WAL past
 * the scratch cluster's end).
 *
 * Errors: any ERROR is reported on stderr and the process _exit()s, as a
 * normal exit would write a shutdown checkpoint. The pageserver sees EOF.
 */
#include "postgres.h"

#include <sys/ipc.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecovery.h"
#include "access/xlogutils.h"
#include "commands/tablespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/pg_shmem.h"
#include "storage/smgr.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(walredo_main);

#define TAG_LEN 17				/* fork u8, spc, db, rel, blkno u32 BE */
#define HUGE_FORK_BLOCKS 0x10000000 /* what FSM and VM forks look like */
#define MAX_TOUCHED 64			/* relations per request before an early drop */

typedef struct Tag
{
	RelFileNode rnode;
	ForkNumber	fork;
	BlockNumber blkno;
} Tag;

/* Input buffer: fd 0 is read in large chunks, messages parsed in place. */
static char *inbuf;
static size_t inbuf_cap;
static size_t inbuf_start;		/* first unread byte */
static size_t inbuf_end;		/* end of the bytes read */

/* The request being served. */
static Tag	target;
static bool have_base;			/* a 'P' came in this request */
static SMgrRelation touched[MAX_TOUCHED];
static int	ntouched;

static XLogReaderState *reader;
static char *decode_buf;
static size_t decode_buf_size;
static char *record_buf;		/* MAXALIGNed copy of the record */
static size_t record_buf_size;
static MemoryContext redo_context;

static void
write_all(const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(1, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			/* The pageserver is gone or killed us half-way: nothing to report to. */
			_exit(1);
		}
		buf += n;
		len -= n;
	}
}

/*
 * fill makes sure `need` unread bytes are in inbuf. It returns false on EOF
 * before the first of them (the pageserver closed stdin between messages);
 * EOF in the middle is an error.
 */
static bool
fill(size_t need)
{
	if (inbuf_end - inbuf_start >= need)
		return true;
	if (inbuf_start > 0)
	{
		memmove(inbuf, inbuf + inbuf_start, inbuf_end - inbuf_start);
		inbuf_end -= inbuf_start;
		inbuf_start = 0;
	}
	if (need > inbuf_cap)
	{
		while (inbuf_cap < need)
			inbuf_cap *= 2;
		inbuf = repalloc(inbuf, inbuf_cap);
	}
	while (inbuf_end < need)
	{
		ssize_t		n = read(0, inbuf + inbuf_end, inbuf_cap - inbuf_end);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("walredo: read from stdin: %m")));
		if (n == 0)
		{
			if (inbuf_end == 0)
				return false;
			ereport(ERROR, (errmsg("walredo: stdin closed in the middle of a message")));
		}
		inbuf_end += n;
	}
	return true;
}

static uint32
get_u32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh32(v);
}

static Tag
get_tag(const char *p)
{
	Tag			t;

	t.fork = (ForkNumber) (uint8) p[0];
	t.rnode.spcNode = get_u32(p + 1);
	t.rnode.dbNode = get_u32(p + 5);
	t.rnode.relNode = get_u32(p + 9);
	t.blkno = get_u32(p + 13);
	if (t.fork < 0 || t.fork > MAX_FORKNUM)
		ereport(ERROR, (errmsg("walredo: fork number %d out of range", t.fork)));
	return t;
}

static bool
tag_equal(const Tag *a, const Tag *b)
{
	return RelFileNodeEquals(a->rnode, b->rnode) && a->fork == b->fork && a->blkno == b->blkno;
}

static void
drop_touched_buffers(void)
{
	if (ntouched > 0)
		DropRelFileNodesAllBuffers(touched, ntouched);
	ntouched = 0;
}

/*
 * touch opens a relation a request references and prepares its files: reads
 * of a missing file ERROR, even where redo only wants zeros. It returns the
 * relation with its FSM and VM looking huge.
 */
static SMgrRelation
touch(RelFileNode rnode)
{
	SMgrRelation reln = smgropen(rnode, InvalidBackendId);
	int			i;

	for (i = 0; i < ntouched; i++)
		if (touched[i] == reln)
			return reln;
	if (ntouched == MAX_TOUCHED)
		ereport(ERROR, (errmsg("walredo: a request touches more than %d relations", MAX_TOUCHED)));
	touched[ntouched++] = reln;

	/* Created once per process: smgrcreate returns early for an open fork. */
	if (reln->md_num_open_segs[MAIN_FORKNUM] == 0)
	{
		TablespaceCreateDbspace(rnode.spcNode, rnode.dbNode, true);
		smgrcreate(reln, MAIN_FORKNUM, true);
		smgrcreate(reln, FSM_FORKNUM, true);
		smgrcreate(reln, VISIBILITYMAP_FORKNUM, true);
		smgrcreate(reln, INIT_FORKNUM, true);
	}
	reln->smgr_cached_nblocks[FSM_FORKNUM] = HUGE_FORK_BLOCKS;
	reln->smgr_cached_nblocks[VISIBILITYMAP_FORKNUM] = HUGE_FORK_BLOCKS;
	return reln;
}

/* make_room makes fork look at least blkno+1 blocks long. */
static void
make_room(SMgrRelation reln, ForkNumber fork, BlockNumber blkno)
{
	BlockNumber cached = reln->smgr_cached_nblocks[fork];

	if (cached == InvalidBlockNumber || cached <= blkno)
		reln->smgr_cached_nblocks[fork] = blkno + 1;
}

static void
begin_request(const char *payload)
{
	SMgrRelation reln;

	have_base = false;
	drop_touched_buffers();

	target = get_tag(payload);
	reln = touch(target.rnode);
	make_room(reln, target.fork, target.blkno);
}

static void
push_page(const char *payload)
{
	Tag			t = get_tag(payload);
	Buffer		buf;

	if (!tag_equal(&t, &target))
		ereport(ERROR, (errmsg("walredo: base image for a block other than the target")));
	if (have_base)
		ereport(ERROR, (errmsg("walredo: second base image in one request")));

	buf = ReadBufferWithoutRelcache(t.rnode, t.fork, t.blkno, RBM_ZERO_AND_LOCK, NULL, true);
	memcpy(BufferGetPage(buf), payload + TAG_LEN, BLCKSZ);
	MarkBufferDirty(buf);
	/*
	 * Not kept pinned: redo that takes a cleanup lock insists on being the
	 * only pin. The request's buffer budget keeps it from being evicted.
	 */
	UnlockReleaseBuffer(buf);
	have_base = true;
}

/*
 * prepare_blocks readies every block the decoded record references: forks
 * large enough, and a zero page in the pool for each block other than the
 * target that redo would otherwise read.
 */
static void
prepare_blocks(void)
{
	int			id;

	for (id = 0; id <= XLogRecMaxBlockId(reader); id++)
	{
		Tag			t;
		SMgrRelation reln;
		DecodedBkpBlock *blk;
		Buffer		buf;

		if (!XLogRecGetBlockTagExtended(reader, id, &t.rnode, &t.fork, &t.blkno, NULL))
			continue;
		reln = touch(t.rnode);
		make_room(reln, t.fork, t.blkno);
		if (tag_equal(&t, &target))
			continue;
		blk = &reader->record->blocks[id];
		if ((blk->has_image && blk->apply_image) || (blk->flags & BKPBLOCK_WILL_INIT))
			continue;		/* redo builds it in a buffer without reading */
		/*
		 * Zeroed even if the pool has it: an earlier record of the request
		 * may have initialised or restored it, and redo must not apply this
		 * record to such a scratch copy.
		 */
		buf = ReadBufferWithoutRelcache(t.rnode, t.fork, t.blkno, RBM_ZERO_AND_LOCK, NULL, true);
		MemSet(BufferGetPage(buf), 0, BLCKSZ);
		UnlockReleaseBuffer(buf);
	}
}

static void
apply_record(const char *payload, uint32 len)
{
	XLogRecPtr	end_lsn;
	XLogRecord *rec;
	uint32		rec_len = len - 8;
	char	   *decode_error = NULL;
	DecodedXLogRecord *decoded;
	size_t		need;
	MemoryContext old;

	if (len < 8 + SizeOfXLogRecord)
		ereport(ERROR, (errmsg("walredo: record message of %u bytes is too short", len)));
	end_lsn = ((uint64) get_u32(payload) << 32) | get_u32(payload + 4);

	/* Decoding reads the record through an XLogRecord pointer: align it. */
	if (rec_len > record_buf_size)
	{
		record_buf_size = Max(rec_len, record_buf_size * 2);
		record_buf = MemoryContextAlloc(TopMemoryContext, record_buf_size);
	}
	memcpy(record_buf, payload + 8, rec_len);
	rec = (XLogRecord *) record_buf;
	if (rec->xl_tot_len != rec_len)
		ereport(ERROR, (errmsg("walredo: record at %X/%X says it is %u bytes, the message carries %u",
							   LSN_FORMAT_ARGS(end_lsn), rec->xl_tot_len, rec_len)));
	if (!RmgrIdIsValid(rec->xl_rmid) || RmgrTable[rec->xl_rmid].rm_redo == NULL)
		ereport(ERROR, (errmsg("walredo: record at %X/%X has unknown resource manager %u",
							   LSN_FORMAT_ARGS(end_lsn), rec->xl_rmid)));

	need = DecodeXLogRecordRequiredSpace(rec_len);
	if (need > decode_buf_size)
	{
		decode_buf_size = Max(need, decode_buf_size * 2);
		decode_buf = MemoryContextAlloc(TopMemoryContext, decode_buf_size);
	}
	decoded = (DecodedXLogRecord *) decode_buf;
	/*
	 * The stored LSN is where the record ends: redo stamps pages with
	 * EndRecPtr and skips blocks whose LSN is already at or past it.
	 */
	XLogBeginRead(reader, end_lsn);
	if (!DecodeXLogRecord(reader, decoded, rec, end_lsn, &decode_error))
		ereport(ERROR, (errmsg("walredo: cannot decode record at %X/%X: %s",
							   LSN_FORMAT_ARGS(end_lsn), decode_error ? decode_error : "unknown error")));
	decoded->next_lsn = end_lsn;
	decoded->oversized = false;
	reader->record = decoded;
	reader->ReadRecPtr = end_lsn;
	reader->EndRecPtr = end_lsn;

	prepare_blocks();

	old = MemoryContextSwitchTo(redo_context);
	RmgrTable[rec->xl_rmid].rm_redo(reader);
	MemoryContextSwitchTo(old);
	MemoryContextReset(redo_context);
	reader->record = NULL;
}

static void
get_page(const char *payload)
{
	Tag			t = get_tag(payload);
	Buffer		buf;
	char		page[BLCKSZ];

	if (!tag_equal(&t, &target))
		ereport(ERROR, (errmsg("walredo: page requested is not the target")));

	buf = ReadBufferWithoutRelcache(t.rnode, t.fork, t.blkno, RBM_NORMAL, NULL, true);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(page, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);
	drop_touched_buffers();

	write_all(page, BLCKSZ);
}

/*
 * remove_shared_memory marks this backend's System V segment for removal
 * now: it stays usable until the process detaches, that is exits, however
 * it exits (the pageserver kills redo processes with SIGKILL).
 * UsedShmemSegID holds the segment's key, not its id.
 */
static void
remove_shared_memory(void)
{
	int			shmid = shmget((key_t) UsedShmemSegID, 0, 0);
	struct shmid_ds ds;

	if (shmid < 0 || shmctl(shmid, IPC_STAT, &ds) < 0)
		return;
	if (ds.shm_cpid == getpid())
		shmctl(shmid, IPC_RMID, NULL);
}

/*
 * exit_now runs before any other exit callback: a FATAL must not go on to
 * write a shutdown checkpoint of the scratch cluster.
 */
static void
exit_now(int code, Datum arg)
{
	_exit(code == 0 ? 0 : 1);
}

static void
init_redo(void)
{
	struct rlimit no_core = {0, 0};
	int			rmid;

	/* A crash is the pageserver's signal to retry, not a reason to dump core. */
	setrlimit(RLIMIT_CORE, &no_core);
	remove_shared_memory();
	before_shmem_exit(exit_now, 0);

	inbuf_cap = 64 * 1024;
	inbuf = MemoryContextAlloc(TopMemoryContext, inbuf_cap);
	/* Bytes stdio read past the SQL line (the parent should not send any). */
	if (stdin->_IO_read_end > stdin->_IO_read_ptr)
	{
		size_t		n = stdin->_IO_read_end - stdin->_IO_read_ptr;

		if (n > inbuf_cap)
		{
			inbuf_cap = n;
			inbuf = repalloc(inbuf, inbuf_cap);
		}
		memcpy(inbuf, stdin->_IO_read_ptr, n);
		stdin->_IO_read_ptr = stdin->_IO_read_end;
		inbuf_end = n;
	}

	decode_buf_size = 64 * 1024;
	decode_buf = MemoryContextAlloc(TopMemoryContext, decode_buf_size);
	record_buf_size = 64 * 1024;
	record_buf = MemoryContextAlloc(TopMemoryContext, record_buf_size);
	redo_context = AllocSetContextCreate(TopMemoryContext, "walredo", ALLOCSET_DEFAULT_SIZES);
	reader = XLogReaderAllocate(wal_segment_size, NULL, XL_ROUTINE(.page_read = NULL), NULL);
	if (reader == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("walredo: out of memory")));

	/*
	 * Redo routines expect a startup process: InRecovery makes reads past
	 * the end of a file return zeros and trusts cached fork sizes;
	 * reachedConsistency turns invalid-page reports into warnings (with
	 * ignore_invalid_pages) instead of a table that grows.
	 */
	InRecovery = true;
	reachedConsistency = true;
	for (rmid = 0; rmid <= RM_MAX_ID; rmid++)
		if (RmgrIdIsValid(rmid) && RmgrTable[rmid].rm_startup != NULL)
			RmgrTable[rmid].rm_startup();
}

static void
serve(void)
{
	for (;;)
	{
		char		type;
		uint32		len;
		const char *payload;
		static const char zero_page[BLCKSZ];

		if (!fill(5))
			_exit(0);			/* stdin closed: the pageserver is done with us */
		type = inbuf[inbuf_start];
		len = get_u32(inbuf + inbuf_start + 1);
		if (len < 4 || len > 64 * 1024 * 1024)
			ereport(ERROR, (errmsg("walredo: message '%c' of length %u", type, len)));
		if (!fill(1 + len))
			_exit(0);
		payload = inbuf + inbuf_start + 5;
		len -= 4;

		switch (type)
		{
			case 'B':
			case 'G':
				if (len != TAG_LEN)
					ereport(ERROR, (errmsg("walredo: message '%c' of %u bytes", type, len)));
				if (type == 'B')
					begin_request(payload);
				else
					get_page(payload);
				break;
			case 'P':
				if (len != TAG_LEN + BLCKSZ)
					ereport(ERROR, (errmsg("walredo: message 'P' of %u bytes", len)));
				push_page(payload);
				break;
			case 'A':
				apply_record(payload, len);
				break;
			case 'H':
				write_all(zero_page, BLCKSZ);
				break;
			default:
				ereport(ERROR, (errmsg("walredo: unknown message type 0x%02x", (unsigned char) type)));
		}
		inbuf_start += 5 + len;
		CHECK_FOR_INTERRUPTS();
	}
}

Datum
walredo_main(PG_FUNCTION_ARGS)
{
	PG_TRY();
	{
		init_redo();
		/* The banner and prompt are still in stdio's buffer: out with them, then the marker. */
		fflush(stdout);
		write_all("", 1);
		serve();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		_exit(1);
	}
	PG_END_TRY();
	pg_unreachable();
	PG_RETURN_VOID();
}
