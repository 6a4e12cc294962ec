package basebackup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrepareDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "new", "data")
	created, err := prepareDir(fresh)
	if err != nil || !created {
		t.Fatalf("absent dir: created=%v, %v", created, err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with %v, want 0700", fi.Mode().Perm())
	}

	empty := filepath.Join(base, "empty")
	os.Mkdir(empty, 0o755)
	if created, err := prepareDir(empty); err != nil || created {
		t.Fatalf("empty dir: created=%v, %v", created, err)
	}
	if fi, _ := os.Stat(empty); fi.Mode().Perm() != 0o700 {
		t.Errorf("empty dir left at %v, want 0700", fi.Mode().Perm())
	}

	os.WriteFile(filepath.Join(empty, "PG_VERSION"), []byte("15\n"), 0o600)
	if _, err := prepareDir(empty); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("non-empty dir: %v", err)
	}
	file := filepath.Join(empty, "PG_VERSION")
	if _, err := prepareDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file: %v", err)
	}

	// A failed backup leaves an existing directory empty and removes one
	// it created.
	if err := removePartial(empty, false); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("removePartial left %v", entries)
	}
	if err := removePartial(fresh, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("removePartial kept the directory it created: %v", err)
	}
}

func TestProgressLines(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		done, estimate int64
		elapsed        time.Duration
		width          int
		want           string
	}{
		{12 * mib, 40 * mib, 2 * time.Second, 80, "[============>                           ]  12 MiB of ~40 MiB (30%), 6.0 MiB/s"},
		{50 * mib, 40 * mib, 10 * time.Second, 80, "[========================================]  50 MiB of ~40 MiB (100%), 5.0 MiB/s"},
		{40*mib - 1, 40 * mib, time.Second, 80, "(99%)"},
		{3 * mib, 0, time.Second, 80, "3.0 MiB, 3.0 MiB/s"},
		{0, 40 * mib, 0, 80, "0 B of ~40 MiB (0%), -"},
		{12 * mib, 40 * mib, 2 * time.Second, 20, "12 MiB of ~40 MiB (30%), 6.0 MiB/s"}, // too narrow for a bar
	} {
		got := barLine(tc.done, tc.estimate, tc.elapsed, tc.width)
		if !strings.Contains(got, tc.want) {
			t.Errorf("barLine(%d, %d, %v, %d) = %q, want %q in it", tc.done, tc.estimate, tc.elapsed, tc.width, got, tc.want)
		}
		if len(got) >= tc.width && tc.estimate > 0 && strings.HasPrefix(got, "[") {
			t.Errorf("barLine is %d columns wide, the terminal %d", len(got), tc.width)
		}
	}
}

func TestProgressPacing(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false, 0)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	p.Start(100 << 20)
	for i := 1; i <= 12; i++ { // 12 s, an update every second
		now = now.Add(time.Second)
		p.Update(int64(i) << 20)
	}
	p.Finish(12 << 20)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "basebackup: 5.0 MiB of ~100 MiB (5%)") {
		t.Errorf("a line every 5 s expected, got:\n%s", out.String())
	}

	out.Reset()
	p = NewProgress(&out, true, 100)
	p.now = func() time.Time { return now }
	p.Start(10 << 20)
	now = now.Add(time.Second)
	p.Update(5 << 20)
	p.Finish(10 << 20)
	if s := out.String(); !strings.HasPrefix(s, "\r[") || !strings.HasSuffix(s, "(100%), 10 MiB/s\x1b[K\n") {
		t.Errorf("terminal bar: %q", s)
	}

	// A failed download ends the bar's line, so the error has its own.
	out.Reset()
	p = NewProgress(&out, true, 100)
	p.now = func() time.Time { return now }
	p.Start(10 << 20)
	now = now.Add(time.Second)
	p.Update(5 << 20)
	p.Abort()
	if s := out.String(); !strings.HasSuffix(s, "(50%), 5.0 MiB/s\x1b[K\n") {
		t.Errorf("aborted bar: %q", s)
	}
}
