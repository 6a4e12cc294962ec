package walproposer_test

import (
	"os"
	"testing"

	"strata.dev/test/daemons"
)

// TestMain removes the binaries daemons built or copied for this process.
func TestMain(m *testing.M) { os.Exit(daemons.RunTests(m)) }
