package timeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/layer"
)

// fullDisk makes writes of files whose names contain match fail with
// ENOSPC while it is on.
type fullDisk struct {
	on    atomic.Bool
	match string
}

type fullFile struct {
	*os.File
	d *fullDisk
}

func (f fullFile) Write(b []byte) (int, error) {
	if f.d.on.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(b)
}

func (d *fullDisk) create(path string) (layer.File, error) {
	f, err := os.Create(path)
	if err != nil || !strings.Contains(filepath.Base(path), d.match) {
		return f, err
	}
	return fullFile{f, d}, nil
}

// TestDiskFull: a write error during a flush breaks the timeline: the error
// is logged and returned by Flush and every later Commit, reads go on from
// memory and disk, nothing half-written is left, and a restart comes back
// at the last good disk_consistent_lsn.
func TestDiskFull(t *testing.T) {
	for _, c := range []struct{ name, match string }{
		{"layer file", "__"},
		{"metadata", MetadataFile},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tlDir(t.TempDir(), 1)
			disk := &fullDisk{match: c.match}
			opts := testOptions(t, 1)
			opts.createFile = disk.create
			tl, err := Create(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { tl.Close() }()
			a, b := blk(1, 0), blk(1, 1)
			mustCommit(t, tl, 0x200, ent(a, 0x200, img("A")))
			mustFlush(t, tl)
			mustCommit(t, tl, 0x300, ent(a, 0x300, rec("1")), ent(b, 0x300, img("B")))

			disk.on.Store(true)
			err = tl.Flush(context.Background())
			if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Flush on a full disk: %v", err)
			}
			if !errors.Is(tl.Broken(), syscall.ENOSPC) || tl.DiskConsistentLSN() != 0x200 {
				t.Fatalf("broken %v, dcl %s", tl.Broken(), tl.DiskConsistentLSN())
			}
			disk.on.Store(false) // space is back, but the timeline stays broken
			for i := 0; i < 2; i++ {
				if err := tl.Commit(nil, 0x400, 0x300); err != tl.Broken() {
					t.Fatalf("Commit on a broken timeline: %v", err)
				}
			}
			if err := tl.WaitLSN(context.Background(), 0x400, time.Minute); !errors.Is(err, ErrBroken) {
				t.Fatalf("WaitLSN on a broken timeline: %v", err)
			}
			mustRead(t, tl, a, 0x300, "A1") // disk + memory
			mustRead(t, tl, b, 0x300, "B")
			mustRead(t, tl, a, 0x200, "A")
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), layer.TempSuffix) {
					t.Fatalf("left %s", e.Name())
				}
			}

			tl.Close()
			if tl, err = Open(dir, testOptions(t, 1)); err != nil {
				t.Fatal(err)
			}
			if last, _ := tl.LastRecordLSN(); last != 0x200 {
				t.Fatalf("restarted at %s, want 0/200", last)
			}
			mustRead(t, tl, a, 0x300, "A")
			for _, li := range tl.Layers() {
				if !li.InMemory && li.LSNs.End > 0x201 {
					t.Fatalf("layer %s of the failed flush survived the restart", li.Name)
				}
			}
			mustCommit(t, tl, 0x300, ent(a, 0x300, rec("1")), ent(b, 0x300, img("B")))
			mustFlush(t, tl)
			mustRead(t, tl, a, 0x300, "A1")
		})
	}
}

// TestLongImport: an import in many commits is not cut by freezes that the
// checkpoint distance would otherwise trigger.
func TestLongImport(t *testing.T) {
	opts := testOptions(t, 1)
	opts.CheckpointDistance = 1 << 10
	tl, err := Create(tlDir(t.TempDir(), 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	page := make([]byte, 8192)
	for i := uint32(0); i < 10; i++ {
		if err := tl.Commit(nil, 0x100, 0); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, tl, 0x100, ent(blk(1, i), 0x100, img(string(page))))
	}
	mustFlush(t, tl)
	for _, li := range tl.Layers() {
		if !li.InMemory && li.Kind != layer.KindImage {
			t.Fatalf("import flushed as %+v", li)
		}
	}
	mustCommit(t, tl, 0x200, ent(blk(1, 0), lsn.LSN(0x200), rec("x")))
	mustRead(t, tl, blk(1, 9), 0x200, string(page))
}
