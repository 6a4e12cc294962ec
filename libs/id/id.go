// Package id holds the identifiers shared by every Strata daemon: tenants and
// timelines (16 random bytes, written as 32 lowercase hex characters) and
// node ids of safekeepers and pageservers.
package id

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is returned (wrapped) when text is not 32 hex characters.
var ErrSyntax = errors.New("invalid id: want 32 hex characters")

// ID is the 16-byte identity of a tenant or a timeline.
type ID [16]byte

// TenantID names a tenant: a set of timelines that share one PostgreSQL cluster history.
type TenantID = ID

// TimelineID names one WAL history (a branch) of a tenant.
type TimelineID = ID

// NodeID is the number of a safekeeper or pageserver.
type NodeID uint64

// Generate returns a new random ID.
func Generate() ID {
	var i ID
	if _, err := rand.Read(i[:]); err != nil {
		// crypto/rand never fails on Linux; a failure means the process cannot work at all.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return i
}

// Parse accepts 32 hexadecimal characters, either case.
func Parse(s string) (ID, error) {
	var i ID
	if len(s) != 32 {
		return i, fmt.Errorf("%w: %q has %d characters", ErrSyntax, s, len(s))
	}
	if _, err := hex.Decode(i[:], []byte(s)); err != nil {
		return i, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	return i, nil
}

// FromBytes takes exactly 16 raw bytes.
func FromBytes(b []byte) (ID, error) {
	var i ID
	if len(b) != len(i) {
		return i, fmt.Errorf("invalid id: want 16 bytes, got %d", len(b))
	}
	copy(i[:], b)
	return i, nil
}

// MustParse is Parse for constants; it panics on bad input.
func MustParse(s string) ID {
	i, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return i
}

// String is 32 lowercase hex characters.
func (i ID) String() string { return hex.EncodeToString(i[:]) }

// IsZero reports whether i is all zeros.
func (i ID) IsZero() bool { return i == ID{} }

// MarshalText writes the hex form, for JSON and TOML.
func (i ID) MarshalText() ([]byte, error) { return []byte(i.String()), nil }

// UnmarshalText parses the hex form.
func (i *ID) UnmarshalText(b []byte) error {
	v, err := Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	*i = v
	return nil
}

// TenantTimeline identifies one timeline globally.
type TenantTimeline struct {
	Tenant   TenantID
	Timeline TimelineID
}

// String is "tenant/timeline", the form used in logs.
func (t TenantTimeline) String() string { return t.Tenant.String() + "/" + t.Timeline.String() }
