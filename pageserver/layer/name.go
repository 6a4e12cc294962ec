package layer

// Layer file names (PS §5.7): keys as 36 uppercase hex digits, LSNs as 16.
//
//	delta: <key start>-<key end>__<lsn start>-<lsn end>
//	image: <key start>-<key end>__<lsn>
//
// A generation suffix ("-v1-0000000a" locally, "-0000000a" remotely) is
// accepted and ignored: Strata has no generations yet.

import (
	"fmt"
	"strconv"
	"strings"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

// Kind says whether a layer holds deltas or images.
type Kind uint8

// The layer kinds.
const (
	KindDelta Kind = 1
	KindImage Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindDelta:
		return "delta"
	case KindImage:
		return "image"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// LSNRange is the half-open LSN range [Start, End).
type LSNRange struct{ Start, End lsn.LSN }

// Contains reports whether l is in r.
func (r LSNRange) Contains(l lsn.LSN) bool { return l >= r.Start && l < r.End }

// IsEmpty reports whether r holds no LSN.
func (r LSNRange) IsEmpty() bool { return r.Start >= r.End }

func (r LSNRange) String() string { return r.Start.String() + "-" + r.End.String() }

// Name is what a layer's file name says: its kind and the rectangle it
// covers. An image layer at LSN L covers [L, L+1).
type Name struct {
	Kind Kind
	Keys key.Range
	LSNs LSNRange
}

// DeltaName names a delta layer.
func DeltaName(keys key.Range, lsns LSNRange) Name {
	return Name{Kind: KindDelta, Keys: keys, LSNs: lsns}
}

// ImageName names an image layer at at.
func ImageName(keys key.Range, at lsn.LSN) Name {
	return Name{Kind: KindImage, Keys: keys, LSNs: LSNRange{at, at + 1}}
}

// ImageLSN is the LSN of an image layer.
func (n Name) ImageLSN() lsn.LSN { return n.LSNs.Start }

// String is the file name.
func (n Name) String() string {
	if n.Kind == KindImage {
		return fmt.Sprintf("%s-%s__%016X", n.Keys.Start, n.Keys.End, uint64(n.LSNs.Start))
	}
	return fmt.Sprintf("%s-%s__%016X-%016X", n.Keys.Start, n.Keys.End, uint64(n.LSNs.Start), uint64(n.LSNs.End))
}

// valid reports what is wrong with n's ranges, or "".
func (n Name) invalid() string {
	switch {
	case n.Kind != KindDelta && n.Kind != KindImage:
		return "unknown layer kind"
	case n.Keys.IsEmpty():
		return fmt.Sprintf("empty key range %s", n.Keys)
	case n.LSNs.IsEmpty():
		return fmt.Sprintf("empty LSN range %s", n.LSNs)
	case n.Kind == KindImage && n.LSNs.End != n.LSNs.Start+1:
		return fmt.Sprintf("image layer LSN range %s is not one LSN", n.LSNs)
	}
	return ""
}

// ParseName reads a layer file name.
func ParseName(s string) (Name, error) {
	keys, lsns, ok := strings.Cut(s, "__")
	if !ok {
		return Name{}, fmt.Errorf("layer name %q: no \"__\"", s)
	}
	ks, ke, ok := strings.Cut(keys, "-")
	if !ok {
		return Name{}, fmt.Errorf("layer name %q: no key range", s)
	}
	var n Name
	var err error
	if n.Keys.Start, err = key.Parse(ks); err != nil {
		return Name{}, fmt.Errorf("layer name %q: %w", s, err)
	}
	if n.Keys.End, err = key.Parse(ke); err != nil {
		return Name{}, fmt.Errorf("layer name %q: %w", s, err)
	}
	lsns = stripGeneration(lsns)
	if start, end, ok := strings.Cut(lsns, "-"); ok {
		n.Kind = KindDelta
		if n.LSNs.Start, err = parseLSN(start); err == nil {
			n.LSNs.End, err = parseLSN(end)
		}
	} else {
		n.Kind = KindImage
		n.LSNs.Start, err = parseLSN(lsns)
		n.LSNs.End = n.LSNs.Start + 1
		if err == nil && n.LSNs.Start == lsn.Max {
			err = fmt.Errorf("image LSN %s has no successor", n.LSNs.Start)
		}
	}
	if err != nil {
		return Name{}, fmt.Errorf("layer name %q: %w", s, err)
	}
	if why := n.invalid(); why != "" {
		return Name{}, fmt.Errorf("layer name %q: %s", s, why)
	}
	return n, nil
}

// stripGeneration drops a trailing "-v1-xxxxxxxx" or "-xxxxxxxx".
func stripGeneration(s string) string {
	if i := len(s) - 12; i >= 0 && s[i:i+4] == "-v1-" && isHex(s[i+4:]) {
		return s[:i]
	}
	// A delta's "<16 hex>-<16 hex>" must not lose its end LSN: only strip
	// 8 hex digits that follow 16.
	if i := len(s) - 9; i >= 16 && s[i] == '-' && isHex(s[i+1:]) && isHex(s[i-16:i]) {
		return s[:i]
	}
	return s
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return len(s) > 0
}

func parseLSN(s string) (lsn.LSN, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("LSN %q: want 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	return lsn.LSN(v), nil
}
