package control

// This file keeps a timeline's control file durable (SK §4.1, "write
// procedure"):
//
//  1. encode the state and write it to safekeeper.control.partial;
//  2. fsync that file;
//  3. rename it over safekeeper.control;
//  4. fsync the timeline directory, so the rename itself survives a crash.
//
// Invariants:
//   - safekeeper.control always holds one complete state, the old one or the
//     new one: it is only ever replaced by rename, never written in place.
//   - safekeeper.control.partial is scratch. Load never reads it, and the next
//     Persist truncates it, so one left by a crash is harmless.
//   - A state counts as persisted only when Persist returned nil. After an
//     error the file may hold the old or (if only the directory fsync failed)
//     the new state; the caller must keep treating its previous persisted
//     copy as current and retry, not adopt the new one.
//   - Persist is not safe to call concurrently for one directory: both calls
//     would write the same .partial file. The timeline serializes its writes.

import (
	"fmt"
	"os"
	"path/filepath"

	"strata.dev/libs/durable"
)

const (
	// FileName is the control file's name inside a timeline directory.
	FileName = "safekeeper.control"
	// PartialFileName is the scratch file a Persist writes before renaming.
	PartialFileName = "safekeeper.control.partial"
)

// Load reads and decodes dir/safekeeper.control. A missing file yields an
// error satisfying errors.Is(err, fs.ErrNotExist).
func Load(dir string) (*State, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load control file: %w", err)
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load control file %s: %w", path, err)
	}
	return s, nil
}

// Persist durably replaces dir/safekeeper.control with s. With noSync (the
// --no-sync flag, for tests) the two fsyncs are skipped, so the write is
// atomic against process crashes but not against power loss.
//
// On error s must not be considered persisted (see the invariants above).
func Persist(dir string, s *State, noSync bool) error {
	b, err := Encode(s)
	if err != nil {
		return fmt.Errorf("persist control file in %s: %w", dir, err)
	}
	partial := filepath.Join(dir, PartialFileName)
	if err := writeFile(partial, b, !noSync); err != nil {
		return fmt.Errorf("persist control file: %w", err)
	}
	if err := os.Rename(partial, filepath.Join(dir, FileName)); err != nil {
		return fmt.Errorf("persist control file: %w", err)
	}
	if !noSync {
		if err := durable.SyncDir(dir); err != nil {
			return fmt.Errorf("persist control file: %w", err)
		}
	}
	return nil
}

// writeFile creates or truncates path, writes b and optionally fsyncs it.
func writeFile(path string, b []byte, sync bool) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		// A failed close can be the first report of a failed write.
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}
