package ingest

// Import of a shut-down data directory as a timeline's initial state
// (PS §8.1): every file that lives in the key space, stored as images at
// the LSN of the directory's shutdown checkpoint record. WAL ingest then
// continues with that checkpoint record itself.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/value"
)

const (
	relSegSize = 131072 // RELSEG_SIZE: blocks per relation segment file
	blockSize  = walrecord.BlockSize
)

var relFileName = regexp.MustCompile(`^([0-9]+)(_fsm|_vm|_init)?(\.([0-9]+))?$`)

// importer accumulates what the walk finds.
type importer struct {
	store   Store
	at      lsn.LSN
	entries []value.Entry
	bytes   int

	dbs      value.DBDir
	relDirs  map[value.DBKey]value.RelDir
	relSizes map[key.Rel]uint32
	slruDirs map[key.SlruKind]value.U32Set
	twoPhase value.U32Set
}

// importChunk is the size of the entries committed at once.
const importChunk = 8 << 20

// Import stores the data directory fsys into an empty Store at the LSN
// WAL replay of that directory starts from, which it returns; ingest the
// WAL from that LSN on. fsys is either a cleanly shut-down PostgreSQL 15
// cluster (e.g. right after initdb), imported at its shutdown checkpoint
// record, or an online base backup (pg_basebackup, with its backup_label),
// imported at the backup's start LSN: the WAL from there repairs the pages
// the backup copied while they changed, as PostgreSQL's own recovery would.
// Files outside the key space (pg_wal, configuration, statistics ...) are
// left out; a user tablespace is an error. Two-phase state files are
// stored without their trailing CRC, as PREPARE records store them.
func Import(ctx context.Context, store Store, fsys fs.FS) (lsn.LSN, error) {
	control, at, err := readControl(fsys)
	if err != nil {
		return 0, fmt.Errorf("import: %w", err)
	}
	return at, importAt(ctx, store, fsys, at, control)
}

// ImportLSN is the LSN Import would store fsys at (see Import).
func ImportLSN(fsys fs.FS) (lsn.LSN, error) {
	_, at, err := readControl(fsys)
	return at, err
}

// readControl reads pg_control and the LSN replay of fsys starts from.
func readControl(fsys fs.FS) (pgcontrol.Control, lsn.LSN, error) {
	control, err := fs.ReadFile(fsys, "global/pg_control")
	if err != nil {
		return pgcontrol.Control{}, 0, err
	}
	ctl, err := pgcontrol.Parse(control)
	if err != nil {
		return pgcontrol.Control{}, 0, err
	}
	cp, err := pgrecords.DecodeCheckPoint(ctl.CheckPointCopy(pgrecords.CheckPointSize))
	if err != nil {
		return pgcontrol.Control{}, 0, fmt.Errorf("pg_control: %w", err)
	}
	at, err := replayStart(fsys, ctl, cp)
	return ctl, at, err
}

func importAt(ctx context.Context, store Store, fsys fs.FS, at lsn.LSN, control pgcontrol.Control) error {
	im := &importer{
		store: store, at: at,
		dbs:      value.DBDir{},
		relDirs:  make(map[value.DBKey]value.RelDir),
		relSizes: make(map[key.Rel]uint32),
		slruDirs: map[key.SlruKind]value.U32Set{key.Clog: {}, key.MultiXactMembers: {}, key.MultiXactOffsets: {}},
		twoPhase: value.U32Set{},
	}
	im.put(key.ControlFile(), control.Bytes())
	im.put(key.Checkpoint(), control.CheckPointCopy(pgrecords.CheckPointSize))

	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			switch p {
			case "pg_wal":
				return fs.SkipDir
			case "pg_tblspc":
				if ents, err := fs.ReadDir(fsys, p); err != nil || len(ents) > 0 {
					return errors.Join(err, errors.New("user tablespaces (pg_tblspc) are not supported"))
				}
			}
			return nil
		}
		return im.file(fsys, p)
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := im.finish(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

func (im *importer) put(k key.Key, b []byte) {
	im.entries = append(im.entries, value.Entry{Key: k, LSN: im.at, Value: value.NewImage(b)})
	im.bytes += len(b) + key.Size
}

func (im *importer) commitIfFull() error {
	if im.bytes < importChunk {
		return nil
	}
	return im.commit()
}

func (im *importer) commit() error {
	if err := im.store.Commit(im.entries, im.at, 0); err != nil {
		return err
	}
	im.entries, im.bytes = im.entries[:0], 0
	return nil
}

// file dispatches one file by its path (PS §8.1).
func (im *importer) file(fsys fs.FS, p string) error {
	dir, name := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case p == "global/pg_control":
		return nil // done first
	case dir == "global":
		return im.relFile(fsys, p, name, key.GlobalTablespace, 0)
	case strings.HasPrefix(dir, "base/") && !strings.Contains(dir[len("base/"):], "/"):
		db, err := strconv.ParseUint(dir[len("base/"):], 10, 32)
		if err != nil {
			return nil // not a database directory
		}
		return im.relFile(fsys, p, name, key.DefaultTablespace, uint32(db))
	case dir == "pg_xact":
		return im.slruFile(fsys, p, name, key.Clog)
	case dir == "pg_multixact/offsets":
		return im.slruFile(fsys, p, name, key.MultiXactOffsets)
	case dir == "pg_multixact/members":
		return im.slruFile(fsys, p, name, key.MultiXactMembers)
	case dir == "pg_twophase":
		return im.twoPhaseFile(fsys, p, name)
	}
	return nil
}

func (im *importer) relFile(fsys fs.FS, p, name string, spc, db uint32) error {
	if name == "pg_filenode.map" {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		im.dbs[value.DBKey{Spc: spc, DB: db}] = true
		im.put(key.RelMap(spc, db), b)
		return im.commitIfFull()
	}
	m := relFileName.FindStringSubmatch(name)
	if m == nil {
		return nil // PG_VERSION, pg_internal.init, temporary relations ...
	}
	relnode, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil || relnode == 0 {
		return nil
	}
	fork := map[string]uint8{"": key.ForkMain, "_fsm": key.ForkFSM, "_vm": key.ForkVM, "_init": key.ForkInit}[m[2]]
	var segno uint64
	if m[4] != "" {
		if segno, err = strconv.ParseUint(m[4], 10, 32); err != nil {
			return nil
		}
	}
	rel, err := checkRel(spc, db, uint32(relnode), fork)
	if err != nil {
		return err
	}
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return err
	}
	if len(b)%blockSize != 0 || len(b)/blockSize > relSegSize {
		return fmt.Errorf("%s: %d bytes is not a whole number of pages of one segment", p, len(b))
	}
	dbk := value.DBKey{Spc: spc, DB: db}
	if _, ok := im.dbs[dbk]; !ok {
		im.dbs[dbk] = false
	}
	if im.relDirs[dbk] == nil {
		im.relDirs[dbk] = value.RelDir{}
	}
	im.relDirs[dbk][value.RelKey{Rel: rel.Rel, Fork: rel.Fork}] = struct{}{}
	first := uint64(segno) * relSegSize
	n := uint64(len(b) / blockSize)
	if first+n > invalidBlock {
		return fmt.Errorf("%s: blocks past the largest block number", p)
	}
	end := uint32(first + n)
	if cur, seen := im.relSizes[rel]; !seen || end > cur {
		im.relSizes[rel] = end
	}
	for i := range n {
		im.put(key.RelBlock(rel, uint32(first+i)), b[i*blockSize:(i+1)*blockSize:(i+1)*blockSize])
		if err := im.commitIfFull(); err != nil {
			return err
		}
	}
	return nil
}

func (im *importer) slruFile(fsys fs.FS, p, name string, kind key.SlruKind) error {
	segno, err := strconv.ParseUint(name, 16, 32)
	if err != nil {
		return nil
	}
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return err
	}
	if len(b)%blockSize != 0 || len(b)/blockSize > pgrecords.SlruPagesPerSegment {
		return fmt.Errorf("%s: %d bytes is not a whole number of SLRU pages of one segment", p, len(b))
	}
	im.slruDirs[kind][uint32(segno)] = struct{}{}
	n := len(b) / blockSize
	im.put(key.SlruSegSize(kind, uint32(segno)), value.EncodeSize(uint32(n)))
	for i := range n {
		im.put(key.SlruBlock(kind, uint32(segno), uint32(i)), b[i*blockSize:(i+1)*blockSize:(i+1)*blockSize])
	}
	return im.commitIfFull()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (im *importer) twoPhaseFile(fsys fs.FS, p, name string) error {
	xid, err := strconv.ParseUint(name, 16, 32)
	if err != nil || len(name) != 8 {
		return nil
	}
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return err
	}
	if len(b) < 4 {
		return fmt.Errorf("%s: %d bytes", p, len(b))
	}
	state, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(state, castagnoli) != sum {
		return fmt.Errorf("%s: CRC mismatch", p)
	}
	im.twoPhase[uint32(xid)] = struct{}{}
	im.put(key.TwoPhaseFile(uint32(xid)), state)
	return im.commitIfFull()
}

// replayStart is where WAL replay of the directory starts: the backup's
// start LSN if it has a backup_label, else the shutdown checkpoint record.
func replayStart(fsys fs.FS, ctl pgcontrol.Control, cp pgrecords.CheckPoint) (lsn.LSN, error) {
	label, err := fs.ReadFile(fsys, "backup_label")
	switch {
	case err == nil:
		return BackupStartLSN(label)
	case !errors.Is(err, fs.ErrNotExist):
		return 0, err
	}
	if st := ctl.State(); st != pgcontrol.StateShutdowned {
		return 0, fmt.Errorf("pg_control state %d and no backup_label: the cluster was not shut down cleanly", st)
	}
	at := ctl.CheckPoint()
	if cp.Redo != at {
		return 0, fmt.Errorf("checkpoint at %s has redo %s: not a shutdown checkpoint", at, cp.Redo)
	}
	return at, nil
}

// BackupStartLSN reads "START WAL LOCATION: X/Y (file ...)" from a
// backup_label file.
func BackupStartLSN(label []byte) (lsn.LSN, error) {
	for _, line := range strings.Split(string(label), "\n") {
		rest, ok := strings.CutPrefix(line, "START WAL LOCATION: ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, ' '); i >= 0 {
			rest = rest[:i]
		}
		l, err := lsn.Parse(rest)
		if err != nil || l == lsn.Invalid {
			return 0, fmt.Errorf("backup_label: bad START WAL LOCATION %q", rest)
		}
		return l, nil
	}
	return 0, errors.New("backup_label has no START WAL LOCATION line")
}

// finish stores the directories and sizes and commits the rest.
func (im *importer) finish() error {
	im.put(key.DBDir(), im.dbs.Encode())
	for dbk := range im.dbs {
		dir := im.relDirs[dbk]
		if dir == nil {
			dir = value.RelDir{}
		}
		im.put(key.RelDir(dbk.Spc, dbk.DB), dir.Encode())
	}
	for rel, n := range im.relSizes {
		im.put(key.RelSize(rel), value.EncodeSize(n))
	}
	for _, kind := range key.SlruKinds {
		im.put(key.SlruDir(kind), im.slruDirs[kind].Encode())
	}
	im.put(key.TwoPhaseDir(), im.twoPhase.Encode())
	return im.commit()
}
