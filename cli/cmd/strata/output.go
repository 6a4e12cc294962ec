package main

import (
	"encoding/json"
	"flag"
	"io"
)

// The listing commands (status, timeline list, compute list, local status)
// print a table, or with -o json one indented JSON document for scripts.

// outputFlag adds -o to fs: table (the default) or json.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "table", "output format: table or json")
}

// parseOutputArgs is parseArgs for a listing command, which takes no
// positional arguments; it checks -o too.
func parseOutputArgs(fs *flag.FlagSet, args []string, output *string) error {
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usageError(fs, "-o %q: want table or json", *output)
	}
	return nil
}

// writeOutput writes v as one indented JSON document when output is json,
// else with table.
func writeOutput(w io.Writer, output string, v any, table func(io.Writer) error) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return table(w)
}
