package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Every listing command refuses an -o it does not know before it reads
// anything: usage error, exit 2.
func TestOutputFlag(t *testing.T) {
	for _, cmd := range [][]string{{"status"}, {"timeline", "list"}, {"compute", "list"}, {"local", "status"}} {
		var out, errOut bytes.Buffer
		args := append([]string{"--dir", t.TempDir()}, append(cmd, "-o", "yaml")...)
		code := run(t.Context(), args, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), `-o "yaml": want table or json`) {
			t.Errorf("%s -o yaml: exit %d, stderr %q", strings.Join(cmd, " "), code, errOut.String())
		}
	}
}

func TestWriteOutput(t *testing.T) {
	v := map[string][]int{"a": {}}
	table := func(w io.Writer) error {
		_, err := io.WriteString(w, "TABLE\n")
		return err
	}
	for format, want := range map[string]string{"json": "{\n  \"a\": []\n}\n", "table": "TABLE\n"} {
		var buf bytes.Buffer
		if err := writeOutput(&buf, format, v, table); err != nil || buf.String() != want {
			t.Errorf("%s: %q, %v; want %q", format, buf.String(), err, want)
		}
	}
}
