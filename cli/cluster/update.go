package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockName is the lock file Update holds while it reads, changes and
// writes the cluster file.
const lockName = FileName + ".lock"

// Update loads dir's cluster file, applies fn and saves the result, holding
// a lock for the whole read-modify-write, so that two strata commands that
// change the file at once (a branch being named while a compute starts)
// do not lose each other's change. fn sees the file as it is now, not as
// the caller loaded it earlier. If fn fails nothing is written.
func Update(ctx context.Context, dir string, fn func(*File) error) error {
	unlock, err := lockFile(ctx, filepath.Join(dir, lockName))
	if err != nil {
		return err
	}
	defer unlock()
	f, err := Load(dir)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	if err := f.Validate(); err != nil {
		return err
	}
	return f.Save(dir)
}

// lockFile takes an exclusive flock on path, polling until ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
