// Package pguser is the identity PostgreSQL runs as. initdb and postgres
// refuse to run as root, so a process running as root starts them (and the
// pageserver, whose WAL redo runs PostgreSQL) as an unprivileged system
// account, created with useradd if missing, as the Debian packages would;
// otherwise they run as the process's own user. The strata CLI and the test
// harness both decide it here, so they agree on who owns the files.
package pguser

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// User is who PostgreSQL runs as.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	// Switch is true when the caller runs as root and children must change
	// identity to this user.
	Switch bool
}

// Server returns who PostgreSQL runs as: the current user, or when running
// as root the first of accounts that exists, or else the last of them,
// created as a system user.
func Server(accounts ...string) (User, error) {
	if os.Geteuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			return User{}, fmt.Errorf("look up the current user: %w", err)
		}
		return from(cur, false)
	}
	if len(accounts) == 0 {
		return User{}, errors.New("running as root, and no account named for PostgreSQL (it refuses to run as root)")
	}
	for _, name := range accounts {
		u, err := user.Lookup(name)
		if err == nil {
			return from(u, true)
		}
		if !errors.As(err, new(user.UnknownUserError)) {
			return User{}, fmt.Errorf("look up user %q: %w", name, err)
		}
	}
	u, err := createSystemUser(accounts[len(accounts)-1])
	if err != nil {
		return User{}, err
	}
	return from(u, true)
}

// useraddLock serialises user creation between processes (test binaries
// run in parallel, and the CLI): concurrent useradd runs can each rewrite
// /etc/passwd from what they read and lose the other's entry, leaving a uid
// without a name. It is a fixed path, not under TMPDIR, so that every
// process agrees on it.
const useraddLock = "/tmp/strata-useradd.lock"

// lockWait bounds the wait for useraddLock: useradd takes well under a
// second, so a holder past this is stuck.
const lockWait = time.Minute

// createSystemUser creates the system user name unless it exists by the
// time it holds useraddLock.
func createSystemUser(name string) (*user.User, error) {
	f, err := os.OpenFile(useraddLock, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create system user %q: %w", name, err)
	}
	defer f.Close() // releases the lock
	if err := lock(f); err != nil {
		return nil, fmt.Errorf("create system user %q: lock %s: %w", name, useraddLock, err)
	}
	if u, err := user.Lookup(name); err == nil {
		return u, nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
		"--user-group", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("create system user %q for PostgreSQL (it refuses to run as root): useradd: %w: %s", name, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("create system user %q: %w", name, err)
	}
	return u, nil
}

// lock takes an exclusive flock on f, trying for up to lockWait with a
// backoff from 5 ms to 100 ms.
func lock(f *os.File) error {
	deadline := time.Now().Add(lockWait)
	wait := 5 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still held after %v: %w", lockWait, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func from(u *user.User, switchTo bool) (User, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("user %q: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("user %q: gid %q: %w", u.Username, u.Gid, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return User{}, fmt.Errorf("groups of user %q: %w", u.Username, err)
	}
	groups := make([]uint32, 0, len(gids))
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return User{}, fmt.Errorf("user %q: group id %q: %w", u.Username, g, err)
		}
		groups = append(groups, uint32(n))
	}
	return User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Groups: groups, Switch: switchTo}, nil
}

// Credential is what a child process runs with; nil when no switch is
// needed.
func (u User) Credential() *syscall.Credential {
	if !u.Switch {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// Apply makes cmd run as u. It leaves cmd alone when no switch is needed.
func (u User) Apply(cmd *exec.Cmd) {
	if !u.Switch {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = u.Credential()
}

// Chown gives path to u. It does nothing when no switch is needed: then
// the caller's own files already belong to u.
func (u User) Chown(path string) error {
	if !u.Switch {
		return nil
	}
	if err := os.Lchown(path, int(u.UID), int(u.GID)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.Name, err)
	}
	return nil
}

// ChownTree gives path and everything under it to u.
func (u User) ChownTree(path string) error {
	if !u.Switch {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return u.Chown(p)
	})
}

// CanTraverse reports whether u may reach entries under dir: search
// permission on dir and every ancestor. Root's home or temporary
// directory is often private.
func (u User) CanTraverse(dir string) bool {
	if !u.Switch {
		return true
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return false
		}
		if !u.may(fi, 0o1) {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// CanRead reports whether u may read the file at path (and reach it).
func (u User) CanRead(path string) bool {
	if !u.Switch {
		return true
	}
	fi, err := os.Stat(path)
	return err == nil && u.may(fi, 0o4) && u.CanTraverse(filepath.Dir(path))
}

// CanExec reports whether u may run the file at path (and reach it).
func (u User) CanExec(path string) bool {
	if !u.Switch {
		return true
	}
	fi, err := os.Stat(path)
	return err == nil && u.may(fi, 0o1) && u.CanTraverse(filepath.Dir(path))
}

// may checks permission bit (1 execute, 4 read) of fi for u.
func (u User) may(fi fs.FileInfo, bit fs.FileMode) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	switch {
	case st.Uid == u.UID:
		bit <<= 6
	case u.inGroup(st.Gid):
		bit <<= 3
	}
	return fi.Mode().Perm()&bit != 0
}

func (u User) inGroup(gid uint32) bool {
	if gid == u.GID {
		return true
	}
	for _, g := range u.Groups {
		if g == gid {
			return true
		}
	}
	return false
}
