package pgcontrol

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

// sample is a minimal PostgreSQL 15 pg_control.
func sample(segSize uint32) []byte {
	raw := make([]byte, DataSize)
	le := binary.LittleEndian
	le.PutUint64(raw[OffSystemID:], 7)
	le.PutUint32(raw[OffVersion:], Version)
	le.PutUint32(raw[OffCatalogVersion:], CatalogVersion)
	le.PutUint32(raw[OffBlcksz:], BlockSize)
	le.PutUint32(raw[OffXLogBlcksz:], lsn.PageSize)
	le.PutUint32(raw[OffXLogSegSize:], segSize)
	le.PutUint32(raw[OffState:], 6) // in production
	le.PutUint64(raw[OffBackupStart:], 0x99)
	return raw
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		size uint32
		ok   bool
	}{{16 << 20, true}, {1 << 20, true}, {1 << 30, true}, {0, false}, {3 << 20, false}, {2 << 30, false}} {
		c, err := Parse(sample(tc.size))
		if (err == nil) != tc.ok || (tc.ok && c.SegmentSize() != uint64(tc.size)) {
			t.Errorf("segment size %d: %v", tc.size, err)
		}
	}
	if _, err := Parse(sample(16 << 20)[:100]); err == nil {
		t.Error("a short pg_control was accepted")
	}
	old := sample(16 << 20)
	binary.LittleEndian.PutUint32(old[OffVersion:], 1201)
	if _, err := Parse(old); !errors.Is(err, ErrUnsupported) {
		t.Errorf("PostgreSQL 14's pg_control: %v, want ErrUnsupported", err)
	}
	big := sample(16 << 20)
	binary.LittleEndian.PutUint32(big[OffBlcksz:], 32768)
	if _, err := Parse(big); !errors.Is(err, ErrUnsupported) {
		t.Errorf("32 KiB blocks: %v, want ErrUnsupported", err)
	}
}

func TestShutdownAt(t *testing.T) {
	c, err := Parse(sample(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	cp := []byte("checkpoint bytes")
	out := c.ShutdownAt(0x1_0000_0028, cp, time.Unix(1e9, 0))
	got, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case len(out) != FileSize:
		t.Errorf("%d bytes, want %d", len(out), FileSize)
	case got.State() != StateShutdowned || got.CheckPoint() != 0x1_0000_0028 || got.SystemID() != 7:
		t.Errorf("state %d, checkpoint %s, system id %d", got.State(), got.CheckPoint(), got.SystemID())
	case string(got.CheckPointCopy(len(cp))) != string(cp):
		t.Errorf("checkpoint copy %q", got.CheckPointCopy(len(cp)))
	case binary.LittleEndian.Uint64(out[OffBackupStart:]) != 0:
		t.Error("a backup start survived")
	case binary.LittleEndian.Uint32(out[OffCRC:]) != CRC(out):
		t.Error("wrong CRC")
	}
}
