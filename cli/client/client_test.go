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

func TestTimelineLess(t *testing.T) {
	type tl struct{ name, id string }
	// In order: named by name, then unnamed by id.
	order := []tl{{"a", "ff"}, {"b", "00"}, {"", "01"}, {"", "02"}}
	for i, a := range order {
		for j, b := range order {
			if got := TimelineLess(a.name, a.id, b.name, b.id); got != (i < j) {
				t.Errorf("TimelineLess(%v, %v) = %v", a, b, got)
			}
		}
	}
}
