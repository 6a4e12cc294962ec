package walstore

import (
	"os"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal/walgen"
)

func TestProbeTruncateBuffered(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SegSize: 1 << 20, PgVersion: 15, NoSync: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, _ := walgen.New(0x100000, walgen.Options{SegSize: 1 << 20})
	g.LogicalMessage(100)
	r := g.LogicalMessage(200)
	data := g.Bytes()
	if err := s.Write(0x100000, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(r.End); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dir + "/000000010000000000000001.partial")
	t.Logf("write %v flush %v; file has nonzero at start: %v", s.WriteLSN(), s.FlushRecordLSN(), b[0] != 0)
	_ = lsn.LSN(0)
}
