package timeline

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"strata.dev/libs/lsn"
)

// AtKind says what a branch point is given as.
type AtKind int

const (
	// AtEnd is the ancestor's last record (--at omitted).
	AtEnd AtKind = iota
	// AtLSN is an LSN.
	AtLSN
	// AtTime is a time, resolved to an LSN from commit records.
	AtTime
)

// At is a parsed --at: the end, an LSN or a time.
type At struct {
	Kind AtKind
	LSN  lsn.LSN
	Time time.Time
}

// String is the canonical form: "", X/Y, or RFC 3339 with nanoseconds.
func (a At) String() string {
	switch a.Kind {
	case AtLSN:
		return a.LSN.String()
	case AtTime:
		return a.Time.Format(time.RFC3339Nano)
	}
	return ""
}

// localLayout is a time without a zone, read in local time; the fraction
// is optional.
const localLayout = "2006-01-02 15:04:05.999999999"

// maxUnixSeconds is 9999-12-31T23:59:59Z: later times are typos, and
// their microseconds would overflow.
const maxUnixSeconds = 253402300799

// AtHelp describes the forms ParseAt accepts, for --help and errors.
const AtHelp = `an LSN (0/16B3D08), a time in RFC 3339 (2026-11-25T10:04:05.123Z, 2026-11-25T10:04:05+01:00), ` +
	`a local time ("2026-11-25 10:04:05[.fff]") or @<unix seconds[.frac]> (@1764065045.5)`

// ParseAt parses --at: "" (the end), an LSN as X/Y, an RFC 3339 time, a
// time "YYYY-MM-DD HH:MM:SS[.fff]" in loc, or @<unix seconds[.frac]>.
func ParseAt(s string, loc *time.Location) (At, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return At{Kind: AtEnd}, nil
	case strings.HasPrefix(s, "@"):
		t, err := parseUnix(s[1:])
		if err != nil {
			return At{}, fmt.Errorf("--at %q: %w", s, err)
		}
		return At{Kind: AtTime, Time: t}, nil
	case strings.Contains(s, "/"):
		l, err := lsn.Parse(s)
		if err != nil {
			return At{}, fmt.Errorf("--at %q is not an LSN (want X/Y with hexadecimal halves, e.g. 0/16B3D08)", s)
		}
		return At{Kind: AtLSN, LSN: l}, nil
	}
	var t time.Time
	var err error
	if strings.ContainsAny(s, "Tt") {
		t, err = time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	} else {
		t, err = time.ParseInLocation(localLayout, s, loc)
	}
	if err != nil {
		return At{}, fmt.Errorf("--at %q: want %s", s, AtHelp)
	}
	if t.Unix() < 0 || t.Unix() > maxUnixSeconds {
		return At{}, fmt.Errorf("--at %q: out of range (1970 to 9999)", s)
	}
	return At{Kind: AtTime, Time: t}, nil
}

// parseUnix parses seconds since the Unix epoch with an optional fraction
// of up to 9 digits, exactly (no float rounding).
func parseUnix(s string) (time.Time, error) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	if whole == "" || !allDigits(whole) || hasFrac && (frac == "" || !allDigits(frac)) {
		return time.Time{}, errors.New("want @<unix seconds[.fraction]>, e.g. @1764065045.25")
	}
	if len(frac) > 9 {
		return time.Time{}, errors.New("at most 9 digits after the point (nanoseconds)")
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec > maxUnixSeconds {
		return time.Time{}, errors.New("seconds out of range (at most year 9999)")
	}
	var nsec int64
	if frac != "" {
		nsec, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	return time.Unix(sec, nsec).UTC(), nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
