package main

import (
	"bytes"
	"fmt"
	"testing"
)

func TestTakeDir(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		dir     string
		rest    string
		wantErr bool
	}{
		{args: []string{"up"}, dir: "start", rest: "[up]"},
		{args: []string{"up", "--dir", "/x"}, dir: "/x", rest: "[up]"},
		{args: []string{"up", "-dir=/y", "--pg-option", "a=b"}, dir: "/y", rest: "[up --pg-option a=b]"},
		{args: []string{"--dir", "/a", "up", "--dir=/b"}, dir: "/b", rest: "[up]"},
		{args: []string{"start", "--", "--dir", "/z"}, dir: "start", rest: "[start -- --dir /z]"},
		{args: []string{"up", "--dir"}, wantErr: true},
		{args: []string{"up", "--directory", "/q"}, dir: "start", rest: "[up --directory /q]"},
	} {
		dir := "start"
		rest, err := takeDir(tc.args, &dir)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v", tc.args, err)
			continue
		}
		if !tc.wantErr && (dir != tc.dir || fmt.Sprint(rest) != tc.rest) {
			t.Errorf("%q: dir %q, rest %v; want %q, %s", tc.args, dir, rest, tc.dir, tc.rest)
		}
	}
}

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"--help"}, &out, &errOut); code != 0 || !bytes.Contains(out.Bytes(), []byte("strata local up")) {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := run(t.Context(), []string{"no-such-command"}, &out, &errOut); code != 2 || !bytes.Contains(errOut.Bytes(), []byte(`unknown command "no-such-command"`)) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"status", "--dir"}, &out, &errOut); code != 2 {
		t.Errorf("--dir without a value: exit %d, stderr %q", code, errOut.String())
	}
}

// A subcommand's --help goes to standard output (exit 0); a bad flag's
// message and the usage go to standard error (exit 2).
func TestSubcommandHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"--dir", t.TempDir(), "timeline", "branch", "--help"}, &out, &errOut); code != 0 ||
		!bytes.Contains(out.Bytes(), []byte("Usage: strata timeline branch")) || errOut.Len() != 0 {
		t.Errorf("--help: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), []string{"--dir", t.TempDir(), "timeline", "branch", "--bogus"}, &out, &errOut); code != 2 ||
		out.Len() != 0 || !bytes.Contains(errOut.Bytes(), []byte("-bogus")) || !bytes.Contains(errOut.Bytes(), []byte("Usage:")) {
		t.Errorf("bad flag: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
