package daemon

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockDatadir takes an exclusive lock on <datadir>/<name>.pid, which then
// holds the process id, so that two daemons never share a data directory.
// The lock lasts until the returned function is called or the process ends.
func LockDatadir(datadir, name string) (unlock func(), err error) {
	path := filepath.Join(datadir, name+".pid")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another %s (lock on %s): %w", datadir, name, path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}
