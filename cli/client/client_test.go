package client

import (
	"testing"

	"strata.dev/cli/cluster"
)

// A timeline is named by strata.toml; an unnamed one, or a string that is
// no id, has no name, and TimelineName falls back to the id.
func TestTimelineNames(t *testing.T) {
	const main, other = "11111111111111111111111111111111", "22222222222222222222222222222222"
	c := &Cluster{File: &cluster.File{Timelines: map[string]string{"main": main}}}
	for _, tc := range []struct{ tl, name, display string }{
		{main, "main", "main"},
		{other, "", other},
		{"not-an-id", "", "not-an-id"},
	} {
		if got := c.NameOf(tc.tl); got != tc.name {
			t.Errorf("NameOf(%s) = %q, want %q", tc.tl, got, tc.name)
		}
		if got := c.TimelineName(tc.tl); got != tc.display {
			t.Errorf("TimelineName(%s) = %q, want %q", tc.tl, got, tc.display)
		}
	}
}
