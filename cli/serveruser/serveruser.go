// Package serveruser is the identity the pageserver and PostgreSQL run as.
// Both refuse to run as root (initdb and postgres check), so when the CLI
// runs as root they run as the "postgres" account, created if missing, as
// the Debian packages would; otherwise they run as the CLI's own user.
package serveruser

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
)

// Name is the account used when the CLI runs as root.
const Name = "postgres"

// User is who the server processes run as.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32
	// Switch is true when children must change identity to this user
	// (the CLI runs as root).
	Switch bool
}

// Lookup returns the server user: the current user, or when running as
// root the postgres account, which it creates if it does not exist.
func Lookup() (User, error) {
	if os.Geteuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			return User{}, fmt.Errorf("look up the current user: %w", err)
		}
		return from(cur, false)
	}
	u, err := user.Lookup(Name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, uerr := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", "--user-group", Name).CombinedOutput()
		if uerr != nil {
			return User{}, fmt.Errorf("create user %q for PostgreSQL and the pageserver (they refuse to run as root): useradd: %w: %s", Name, uerr, out)
		}
		u, err = user.Lookup(Name)
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user %q: %w", Name, err)
	}
	return from(u, true)
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

// Apply makes cmd run as u.
func (u User) Apply(cmd *exec.Cmd) {
	if !u.Switch {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = u.Credential()
}

// Chown gives path to u; nothing to do when no switch is needed.
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
