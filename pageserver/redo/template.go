package redo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The template cluster every redo process copies: made once by initdb, with
// the walredo_main() function created in it. Small on purpose (1 MiB WAL
// segments, no template databases) since every spawn copies it.
const (
	templateName = "template"
	libraryName  = "walredo.so"
	// templateMarker holds the PostgreSQL version the template was made
	// with; a template without it (a crash half-way) or for another
	// version is made again.
	templateMarker = "strata_walredo_template"
	redoDB         = "postgres"
)

// prepareDir makes the scratch directory, copies the library into it and
// makes the template if it is missing or stale. It returns the template's
// path.
func prepareDir(ctx context.Context, o *Options) (string, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return "", fmt.Errorf("redo: scratch directory: %w", err)
	}
	if err := chownTo(o.Dir, o.User); err != nil {
		return "", err
	}
	// Leftovers of processes of an earlier run (their shared memory went
	// with them: see removeSharedMemory).
	entries, err := os.ReadDir(o.Dir)
	if err != nil {
		return "", fmt.Errorf("redo: scratch directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), processDirPrefix) || strings.HasSuffix(e.Name(), ".tmp") {
			removeProcessDir(filepath.Join(o.Dir, e.Name()))
		}
	}

	lib := filepath.Join(o.Dir, libraryName)
	if err := copyFile(o.Library, lib, 0o644, o.User); err != nil {
		return "", fmt.Errorf("redo: copy the WAL redo library: %w", err)
	}

	version, err := postgresVersion(ctx, o.PGBinDir)
	if err != nil {
		return "", err
	}
	tmpl := filepath.Join(o.Dir, templateName)
	if have, err := os.ReadFile(filepath.Join(tmpl, templateMarker)); err == nil && string(have) == version {
		return tmpl, nil
	}
	o.Log.Info().Str("dir", tmpl).Msg("creating the WAL redo template cluster")
	if err := os.RemoveAll(tmpl); err != nil {
		return "", fmt.Errorf("redo: remove stale template: %w", err)
	}
	tmp := tmpl + ".tmp"
	if err := makeTemplate(ctx, o, tmp, lib); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, templateMarker), []byte(version), 0o600); err != nil {
		return "", fmt.Errorf("redo: template marker: %w", err)
	}
	if err := os.Rename(tmp, tmpl); err != nil {
		return "", fmt.Errorf("redo: template: %w", err)
	}
	return tmpl, nil
}

func makeTemplate(ctx context.Context, o *Options, dir, lib string) error {
	initdb := exec.CommandContext(ctx, filepath.Join(o.PGBinDir, "initdb"),
		"-D", dir, "--no-sync", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--wal-segsize=1")
	if out, err := runAs(initdb, o.User); err != nil {
		return fmt.Errorf("redo: initdb of the template: %w\n%s", err, lastLines(out, 10))
	}
	// The template databases are never connected to; every spawn would copy them.
	for _, db := range []string{"1", "4"} {
		if err := os.RemoveAll(filepath.Join(dir, "base", db)); err != nil {
			return fmt.Errorf("redo: trim template: %w", err)
		}
	}
	create := exec.CommandContext(ctx, filepath.Join(o.PGBinDir, "postgres"), "--single", "-D", dir, redoDB)
	create.Stdin = strings.NewReader(fmt.Sprintf("CREATE FUNCTION walredo_main() RETURNS void AS '%s' LANGUAGE C STRICT;\n",
		strings.ReplaceAll(lib, "'", "''")))
	out, err := runAs(create, o.User)
	if err == nil && bytes.Contains(out, []byte("ERROR:")) {
		err = fmt.Errorf("CREATE FUNCTION failed")
	}
	if err != nil {
		return fmt.Errorf("redo: create walredo_main() in the template: %w\n%s", err, lastLines(out, 10))
	}
	return nil
}

// postgresVersion is `postgres --version`, checked to be 15.
func postgresVersion(ctx context.Context, binDir string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("redo: %s/postgres --version: %w", binDir, err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.Contains(v, " 15.") {
		return "", fmt.Errorf("redo: %s is not PostgreSQL 15 (%q)", binDir, v)
	}
	return v, nil
}

// runAs runs cmd as u with an empty environment and returns its combined
// output.
func runAs(cmd *exec.Cmd, u *syscall.Credential) ([]byte, error) {
	cmd.Env = redoEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u, Pdeathsig: syscall.SIGKILL}
	return cmd.CombinedOutput()
}

// redoEnv is the environment of every child: nothing but what the dynamic
// linker may need.
func redoEnv() []string {
	var env []string
	if v, ok := os.LookupEnv("LD_LIBRARY_PATH"); ok {
		env = append(env, "LD_LIBRARY_PATH="+v)
	}
	return env
}

func chownTo(path string, u *syscall.Credential) error {
	if u == nil {
		return nil
	}
	if err := os.Lchown(path, int(u.Uid), int(u.Gid)); err != nil {
		return fmt.Errorf("redo: give %s to the redo user: %w", path, err)
	}
	return nil
}

// copyTree copies the template to dst (which must not exist), owned by u.
func copyTree(src, dst string, u *syscall.Credential) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			return chownTo(target, u)
		case d.Type().IsRegular():
			return copyFile(path, target, info.Mode().Perm(), u)
		}
		return nil // initdb makes no links or special files
	})
}

func copyFile(src, dst string, perm fs.FileMode, u *syscall.Credential) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return chownTo(dst, u)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
