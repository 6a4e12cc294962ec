package timeline

import (
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
)

func TestParseAt(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   string
		want At
	}{
		{"", At{Kind: AtEnd}},
		{"  ", At{Kind: AtEnd}},
		{"0/16B3D08", At{Kind: AtLSN, LSN: lsn.MustParse("0/16B3D08")}},
		{"1/0", At{Kind: AtLSN, LSN: 1 << 32}},
		{"ffffffff/ffffffff", At{Kind: AtLSN, LSN: lsn.Max}},
		{"2026-11-25T10:04:05.123Z", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 10, 4, 5, 123e6, time.UTC)}},
		{"2026-11-25T10:04:05Z", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 10, 4, 5, 0, time.UTC)}},
		{"2026-11-25t10:04:05z", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 10, 4, 5, 0, time.UTC)}},
		{"2026-11-25T10:04:05+01:00", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 9, 4, 5, 0, time.UTC)}},
		{"2026-11-25T10:04:05.000001-02:30", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 12, 34, 5, 1000, time.UTC)}},
		{"2026-11-25 10:04:05", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 9, 4, 5, 0, time.UTC)}},
		{"2026-11-25 10:04:05.5", At{Kind: AtTime, Time: time.Date(2026, 11, 25, 9, 4, 5, 5e8, time.UTC)}},
		{"@1764065045", At{Kind: AtTime, Time: time.Unix(1764065045, 0)}},
		{"@1764065045.25", At{Kind: AtTime, Time: time.Unix(1764065045, 25e7)}},
		{"@1764065045.123456789", At{Kind: AtTime, Time: time.Unix(1764065045, 123456789)}},
		{"@0", At{Kind: AtTime, Time: time.Unix(0, 0)}},
	} {
		got, err := ParseAt(tc.in, berlin)
		if err != nil {
			t.Errorf("ParseAt(%q): %v", tc.in, err)
			continue
		}
		if got.Kind != tc.want.Kind || got.LSN != tc.want.LSN || !got.Time.Equal(tc.want.Time) {
			t.Errorf("ParseAt(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseAtErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0/", "is not an LSN"},
		{"/1", "is not an LSN"},
		{"0/XYZ", "is not an LSN"},
		{"100000000/0", "is not an LSN"},
		{"0/1/2", "is not an LSN"},
		{"yesterday", "want an LSN"},
		{"12345", "want an LSN"},
		{"2026-11-25", "want an LSN"},
		{"2026-13-25 10:04:05", "want an LSN"},
		{"2026-11-25 25:04:05", "want an LSN"},
		{"2026-11-25T10:04:05", "want an LSN"}, // RFC 3339 needs a zone
		{"2026-11-25T10:04:05+25:00", "want an LSN"},
		{"1969-12-31T23:59:59Z", "out of range"},
		{"@", "want @<unix seconds"},
		{"@-5", "want @<unix seconds"},
		{"@1.", "want @<unix seconds"},
		{"@.5", "want @<unix seconds"},
		{"@1e9", "want @<unix seconds"},
		{"@1.1234567891", "at most 9 digits"},
		{"@99999999999999999999", "out of range"},
		{"@253402300800", "out of range"},
	} {
		got, err := ParseAt(tc.in, time.UTC)
		if err == nil {
			t.Errorf("ParseAt(%q) = %+v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseAt(%q): %v, want an error naming the input and saying %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseAt: no input panics, and whatever parses comes back the same
// from its canonical form. `go test -fuzz FuzzParseAt ./timeline/` explores;
// the seeds run in every `go test`.
func FuzzParseAt(f *testing.F) {
	for _, s := range []string{
		"", "0/16B3D08", "FFFFFFFF/FFFFFFFF", "2026-11-25T10:04:05.123Z", "2026-11-25T10:04:05+01:00",
		"2026-11-25 10:04:05", "2026-11-25 10:04:05.123456", "@1764065045", "@1764065045.5", "@",
		"0/", "T", "@9999999999999999999", "2026-11-25t10:04:05.999999999-23:59", "9999-12-31 23:59:59",
	} {
		f.Add(s)
	}
	loc := time.FixedZone("X", -7*3600)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAt(s, loc)
		if err != nil {
			if a != (At{}) {
				t.Fatalf("ParseAt(%q) failed (%v) but returned %+v", s, err, a)
			}
			return
		}
		b, err := ParseAt(a.String(), loc)
		if err != nil {
			t.Fatalf("ParseAt(%q) = %+v, but its form %q does not parse: %v", s, a, a.String(), err)
		}
		if a.Kind != b.Kind || a.LSN != b.LSN || !a.Time.Equal(b.Time) {
			t.Fatalf("ParseAt(%q) = %+v, ParseAt(%q) = %+v", s, a, a.String(), b)
		}
		if a.Kind == AtTime && (a.Time.Unix() < 0 || a.Time.Unix() > maxUnixSeconds) {
			t.Fatalf("ParseAt(%q) = %v, out of range", s, a.Time)
		}
	})
}
