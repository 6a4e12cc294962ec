package timeline

// The timeline metadata file (PS §5.1): what a restart needs besides the
// layer files. It is small, fixed-size, checksummed, and replaced
// atomically (temp file, fsync, rename, fsync directory), so a reader sees
// either the old or the new version, never a mix.
//
//	magic "STRATATL" [8], version u16 = 1, reserved u16 = 0,
//	disk_consistent_lsn u64, prev_record_lsn u64 (0 = unknown),
//	ancestor_timeline [16] (zeros = none), ancestor_lsn u64,
//	initdb_lsn u64, pg_version u32, latest_gc_cutoff_lsn u64,
//	crc32c u32 of everything before it. Integers big-endian.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"strata.dev/libs/durable"
	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/layer"
)

// MetadataFile is the name of the metadata file in a timeline directory.
const MetadataFile = "metadata"

const metadataSize = 8 + 2 + 2 + 8 + 8 + 16 + 8 + 8 + 4 + 8 + 4

var metadataMagic = [8]byte{'S', 'T', 'R', 'A', 'T', 'A', 'T', 'L'}

// ErrCorruptMetadata is wrapped by errors about a damaged metadata file.
var ErrCorruptMetadata = errors.New("corrupt timeline metadata")

type metadata struct {
	diskConsistentLSN lsn.LSN
	prevRecordLSN     lsn.LSN
	ancestor          id.TimelineID
	ancestorLSN       lsn.LSN
	initDBLSN         lsn.LSN
	pgVersion         uint32
	gcCutoff          lsn.LSN
}

func (m *metadata) encode() []byte {
	be := binary.BigEndian
	b := make([]byte, 0, metadataSize)
	b = append(b, metadataMagic[:]...)
	b = be.AppendUint16(b, 1)
	b = be.AppendUint16(b, 0)
	b = be.AppendUint64(b, uint64(m.diskConsistentLSN))
	b = be.AppendUint64(b, uint64(m.prevRecordLSN))
	b = append(b, m.ancestor[:]...)
	b = be.AppendUint64(b, uint64(m.ancestorLSN))
	b = be.AppendUint64(b, uint64(m.initDBLSN))
	b = be.AppendUint32(b, m.pgVersion)
	b = be.AppendUint64(b, uint64(m.gcCutoff))
	return be.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func decodeMetadata(b []byte) (metadata, error) {
	be := binary.BigEndian
	var m metadata
	if len(b) != metadataSize {
		return m, fmt.Errorf("%w: %d bytes, want %d", ErrCorruptMetadata, len(b), metadataSize)
	}
	body := b[:metadataSize-4]
	if got, want := be.Uint32(b[len(body):]), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)); got != want {
		return m, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCorruptMetadata, got, want)
	}
	if [8]byte(b[:8]) != metadataMagic || be.Uint16(b[8:]) != 1 || be.Uint16(b[10:]) != 0 {
		return m, fmt.Errorf("%w: bad magic or version", ErrCorruptMetadata)
	}
	m.diskConsistentLSN = lsn.LSN(be.Uint64(b[12:]))
	m.prevRecordLSN = lsn.LSN(be.Uint64(b[20:]))
	copy(m.ancestor[:], b[28:44])
	m.ancestorLSN = lsn.LSN(be.Uint64(b[44:]))
	m.initDBLSN = lsn.LSN(be.Uint64(b[52:]))
	m.pgVersion = be.Uint32(b[60:])
	m.gcCutoff = lsn.LSN(be.Uint64(b[64:]))
	return m, nil
}

func readMetadata(dir string) (metadata, error) {
	path := filepath.Join(dir, MetadataFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return metadata{}, fmt.Errorf("read timeline metadata: %w", err)
	}
	m, err := decodeMetadata(b)
	if err != nil {
		return m, fmt.Errorf("read timeline metadata %s: %w", path, err)
	}
	return m, nil
}

// writeMetadata replaces the metadata file durably.
func writeMetadata(dir string, m metadata, create func(string) (layer.File, error)) error {
	path := filepath.Join(dir, MetadataFile)
	tmp := path + layer.TempSuffix
	f, err := create(tmp)
	if err != nil {
		return fmt.Errorf("create timeline metadata %s: %w", tmp, err)
	}
	_, err = f.Write(m.encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write timeline metadata %s: %w", path, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("write timeline metadata %s: %w", path, err)
	}
	return nil
}

// ReadAncestor reads the ancestor timeline and branch point recorded in
// the timeline directory dir (a zero id for a root timeline), so that a
// caller can open ancestors before their branches.
func ReadAncestor(dir string) (id.TimelineID, lsn.LSN, error) {
	m, err := readMetadata(dir)
	if err != nil {
		return id.TimelineID{}, 0, err
	}
	return m.ancestor, m.ancestorLSN, nil
}
