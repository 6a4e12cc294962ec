package pgharness

import (
	"fmt"
	"strings"
	"testing"
)

// DumpAll is pg_dumpall of every database (with a fixed \restrict key,
// which is random otherwise), without the setval lines of sequences: a
// sequence WAL-logs 32 values ahead (SEQ_LOG_VALS), so a server started
// from WAL-rebuilt pages continues past the primary's last value, as after
// a crash. Two dumps are compared with DumpDiff.
func (c *Cluster) DumpAll(t testing.TB) string {
	t.Helper()
	out, err := c.Command("pg_dumpall", "--no-role-passwords", "--restrict-key=strata").Output()
	if err != nil {
		t.Fatalf("pg_dumpall: %v", err)
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if !strings.HasPrefix(line, "SELECT pg_catalog.setval(") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// DumpDiff shows the first differing lines of two dumps.
func DumpDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
