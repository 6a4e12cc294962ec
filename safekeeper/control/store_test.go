package control

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPersistLoad(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		dir := t.TempDir()
		s := fullState()
		if err := Persist(dir, s, noSync); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(s) {
			t.Fatalf("noSync=%v: loaded\n%+v\nwant\n%+v", noSync, got, s)
		}

		// A second persist replaces the first and leaves no scratch file.
		s.CommitLSN += 0x100
		s.Mconf.Generation = 0
		if err := Persist(dir, s, noSync); err != nil {
			t.Fatal(err)
		}
		got, err = Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := s.Clone()
		want.Mconf.Members = nil
		want.CreationTS = time.Unix(0, 0)
		if !got.Equal(want) {
			t.Fatalf("noSync=%v: after second persist\n%+v\nwant\n%+v", noSync, got, want)
		}
		if _, err := os.Stat(filepath.Join(dir, PartialFileName)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("noSync=%v: %s left behind: %v", noSync, PartialFileName, err)
		}
	}
}

// Persist must write exactly what Encode produces.
func TestPersistWritesEncoding(t *testing.T) {
	dir := t.TempDir()
	s := fullState()
	if err := Persist(dir, s, true); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, want) {
		t.Fatal("file content differs from Encode")
	}
}

// A crash between writing the scratch file and the rename leaves
// safekeeper.control.partial behind; Load must ignore it and the next Persist
// must overwrite it.
func TestLeftoverPartialFile(t *testing.T) {
	dir := t.TempDir()
	s := fullState()
	if err := Persist(dir, s, true); err != nil {
		t.Fatal(err)
	}
	newer := s.Clone()
	newer.CommitLSN += 0x1000
	half, err := Encode(newer)
	if err != nil {
		t.Fatal(err)
	}
	// A torn, longer-than-needed scratch file from the crashed write.
	torn := append(half[:len(half)/2], bytes.Repeat([]byte{0xAB}, 4096)...)
	partial := filepath.Join(dir, PartialFileName)
	if err := os.WriteFile(partial, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(s) {
		t.Fatal("Load read something other than the last persisted state")
	}
	if err := Persist(dir, newer, true); err != nil {
		t.Fatal(err)
	}
	got, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(newer) {
		t.Fatal("Persist after a leftover scratch file did not take effect")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	// Only a scratch file exists: there is no control file yet.
	if err := os.WriteFile(filepath.Join(dir, PartialFileName), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("only a scratch file: %v, want fs.ErrNotExist", err)
	}
	if err := Persist(dir, fullState(), true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xFF
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrChecksum) {
		t.Errorf("corrupt file: %v, want ErrChecksum", err)
	}
}

func TestPersistErrorsKeepPreviousFile(t *testing.T) {
	if err := Persist(filepath.Join(t.TempDir(), "missing"), fullState(), false); err == nil {
		t.Error("Persist into a missing directory succeeded")
	}

	dir := t.TempDir()
	s := fullState()
	if err := Persist(dir, s, false); err != nil {
		t.Fatal(err)
	}
	bad := s.Clone()
	bad.CommitLSN++
	bad.CreationTS = time.Time{} // not encodable in format 10
	if err := Persist(dir, bad, false); err == nil {
		t.Fatal("Persist of an unencodable state succeeded")
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(s) {
		t.Fatal("a failed Persist changed the control file")
	}
}
