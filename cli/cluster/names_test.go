package cluster

import (
	"errors"
	"strings"
	"testing"

	"strata.dev/libs/id"
)

func TestValidateTimelineName(t *testing.T) {
	for _, ok := range []string{"main", "a", "before_drop", "pitr-2026-11-25", "0", strings.Repeat("x", MaxNameLen)} {
		if err := ValidateTimelineName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "empty"},
		{"Main", `'M' is not allowed`},
		{"a b", `' ' is not allowed`},
		{"a/b", `'/' is not allowed`},
		{"../x", `'.' is not allowed`},
		{"brånch", `'å' is not allowed`},
		{strings.Repeat("x", MaxNameLen+1), "at most 63"},
		{"0123456789abcdef0123456789abcdef", "looks like a timeline id"},
	} {
		err := ValidateTimelineName(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestAddTimeline(t *testing.T) {
	f := &File{}
	a, b := id.Generate(), id.Generate()
	if err := f.AddTimeline("main", a); err != nil {
		t.Fatal(err)
	}
	if err := f.AddTimeline("main", b); !errors.Is(err, ErrNameTaken) {
		t.Errorf("taken name: %v, want ErrNameTaken", err)
	}
	if err := f.AddTimeline("other", a); err == nil || !strings.Contains(err.Error(), `already named "main"`) {
		t.Errorf("second name for one timeline: %v", err)
	}
	if err := f.AddTimeline("Bad", b); err == nil {
		t.Error("invalid name accepted")
	}
	if got, err := f.Timeline("main"); err != nil || got != a {
		t.Errorf("Timeline(main) = %v, %v", got, err)
	}
}
