package pgharness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Names of the unprivileged accounts tried, in order, when the test runs as
// root. The first is the one the Debian packages create.
const (
	debianServerUser = "postgres"
	strataServerUser = "strata"
)

// User is the identity PostgreSQL binaries run as (see the package comment).
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	// Switch is true when the test runs as root and children must change
	// identity to this user.
	Switch bool
}

// ServerUser returns the identity PostgreSQL binaries run as: the current user
// unless the test runs as root, then "postgres", or "strata" which it creates
// when neither exists.
func ServerUser(t testing.TB) User {
	t.Helper()
	u, err := serverUser()
	if err != nil {
		t.Fatalf("pgharness: %v", err)
	}
	return u
}

func serverUser() (User, error) {
	if os.Geteuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			return User{}, fmt.Errorf("look up current user: %w", err)
		}
		return userFrom(cur, false)
	}
	for _, name := range []string{debianServerUser, strataServerUser} {
		u, err := user.Lookup(name)
		if err == nil {
			return userFrom(u, true)
		}
		if !errors.As(err, new(user.UnknownUserError)) {
			return User{}, fmt.Errorf("look up user %q: %w", name, err)
		}
	}
	u, err := createSystemUser(strataServerUser)
	if err != nil {
		return User{}, err
	}
	return userFrom(u, true)
}

// useraddLock serialises user creation between goroutines and test
// binaries: concurrent useradd runs can each rewrite /etc/passwd from what
// they read and lose the other's entry, leaving a uid without a name. It is
// a fixed path, not under TMPDIR, so that every test process agrees on it.
const useraddLock = "/tmp/strata-pgharness-useradd.lock"

// createSystemUser creates the system user name unless it exists by the time
// it holds useraddLock.
func createSystemUser(name string) (*user.User, error) {
	f, err := os.OpenFile(useraddLock, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create system user %q: %w", name, err)
	}
	defer f.Close() // releases the lock
	err = poll(time.Minute, func() error {
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	})
	if err != nil {
		return nil, fmt.Errorf("create system user %q: lock %s: %w", name, useraddLock, err)
	}
	if u, err := user.Lookup(name); err == nil {
		return u, nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
		"--user-group", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("create system user %q: useradd: %w: %s", name, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("create system user %q: %w", name, err)
	}
	return u, nil
}

func userFrom(u *user.User, switchTo bool) (User, error) {
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

// Apply makes cmd run as u. It leaves cmd alone when no switch is needed.
func (u User) Apply(cmd *exec.Cmd) {
	if !u.Switch {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// Chown gives path to u. It does nothing when no switch is needed: then the
// test's own files already belong to u.
func (u User) Chown(path string) error {
	if !u.Switch {
		return nil
	}
	if err := os.Lchown(path, int(u.UID), int(u.GID)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.Name, err)
	}
	return nil
}

// canTraverse reports whether u can reach entries under dir, i.e. has search
// permission on dir and all its ancestors. Root's TMPDIR may be private.
func (u User) canTraverse(dir string) bool {
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
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		var bit os.FileMode = 0o001
		switch {
		case st.Uid == u.UID:
			bit = 0o100
		case u.inGroup(st.Gid):
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
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
