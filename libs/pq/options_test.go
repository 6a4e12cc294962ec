package pq_test

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"strata.dev/libs/pq"
)

func TestSplitOptions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   \t\n", nil},
		{"-c timeline_id=ab tenant_id=cd", []string{"-c", "timeline_id=ab", "tenant_id=cd"}},
		{"  -c   a=1\tb=2\n", []string{"-c", "a=1", "b=2"}},
		{"\va=1\fb=2\rc=3", []string{"a=1", "b=2", "c=3"}},
		{`a\ b c`, []string{`a\ b`, "c"}}, // escaped space joins, escape kept
		{`a\\ b`, []string{`a\\`, "b"}},   // escaped backslash does not escape the space
		{`a\\\ b`, []string{`a\\\ b`}},    // ... but a third one does
		{`\ lead`, []string{`\ lead`}},    // escape at the start of a word
		{`trail\`, []string{`trail\`}},    // lone trailing backslash kept
		{`x\`, []string{`x\`}},            //
		{"a\\\tb", []string{"a\\\tb"}},    // any whitespace can be escaped
		{`protocol={"type":"vanilla"}`, []string{`protocol={"type":"vanilla"}`}},
		{"é=ü x", []string{"é=ü", "x"}},    // UTF-8 passes through
		{"a\u00a0b", []string{"a\u00a0b"}}, // non-ASCII space is not a separator
	} {
		if got := pq.SplitOptions(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitOptions(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeOption(t *testing.T) {
	for in, want := range map[string]string{
		"plain":     "plain",
		`a\ b`:      "a b",
		`a\\`:       `a\`,
		`a\\\ b`:    `a\ b`,
		`trail\`:    "trail",
		`\x\y`:      "xy",
		"a\\\tb":    "a\tb",
		`\\\\`:      `\\`,
		"":          "",
		`tenant\=x`: "tenant=x",
	} {
		if got := pq.UnescapeOption(in); got != want {
			t.Errorf("UnescapeOption(%q) = %q, want %q", in, got, want)
		}
	}
}

// pgSplitOpts is PostgreSQL's pg_split_opts transcribed literally: it removes
// escapes. SplitOptions followed by UnescapeOption must agree with it.
func pgSplitOpts(s string) []string {
	var out []string
	i := 0
	for i < len(s) {
		for i < len(s) && strings.IndexByte(" \t\n\v\f\r", s[i]) >= 0 {
			i++
		}
		if i == len(s) {
			break
		}
		var b strings.Builder
		esc := false
		for ; i < len(s); i++ {
			c := s[i]
			if strings.IndexByte(" \t\n\v\f\r", c) >= 0 && !esc {
				break
			}
			if !esc && c == '\\' {
				esc = true
			} else {
				esc = false
				b.WriteByte(c)
			}
		}
		out = append(out, b.String())
	}
	return out
}

func FuzzSplitOptions(f *testing.F) {
	for _, s := range []string{"", "-c timeline_id=ab tenant_id=cd", `a\ b c`, `a\\ b`, `x\`, "\\\t\\\n", `\\\\ \ `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words := pq.SplitOptions(s)
		var unescaped []string
		for _, w := range words {
			if w == "" {
				t.Fatalf("SplitOptions(%q) has an empty word: %q", s, words)
			}
			if !strings.Contains(s, w) {
				t.Fatalf("SplitOptions(%q): word %q is not a substring", s, w)
			}
			unescaped = append(unescaped, pq.UnescapeOption(w))
		}
		if want := pgSplitOpts(s); !reflect.DeepEqual(unescaped, want) {
			t.Fatalf("unescaped SplitOptions(%q) = %q, pg_split_opts gives %q", s, unescaped, want)
		}
	})
}

func TestErrorWrapping(t *testing.T) {
	e := pq.Errorf(pq.CodeInternalError, "read segment: %w", io.ErrUnexpectedEOF)
	if e.Error() != "read segment: unexpected EOF" || e.Code != pq.CodeInternalError {
		t.Fatalf("Errorf = %+v", e)
	}
	if !errors.Is(e, io.ErrUnexpectedEOF) {
		t.Fatal("errors.Is does not see through Errorf's %w")
	}
	var pe *pq.Error
	if !errors.As(errors.Join(errors.New("ctx"), e), &pe) || pe.Code != pq.CodeInternalError {
		t.Fatal("errors.As does not find a wrapped *Error")
	}
	if pq.Errorf(pq.CodeSyntaxError, "no wrap").Unwrap() != nil {
		t.Fatal("Unwrap without %w should be nil")
	}
}
