// Package pamsg is the proposer–acceptor protocol spoken inside START_WAL_PUSH
// (SK §2): the messages of protocol versions 2 and 3, their byte-exact
// encodings, and the values they carry (term histories, membership
// configurations, pageserver feedback).
//
// Both sides use this package: the safekeeper decodes proposer messages and
// encodes acceptor replies, the walproposer does the opposite. Every decoder
// takes untrusted bytes and returns an error, never panics.
package pamsg

import (
	"fmt"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
)

// Term is a Paxos ballot. Term 0 is the initial term; nobody is elected in it.
type Term uint64

// Generation numbers membership configurations; 0 means generations are not in use.
type Generation uint32

// TermSwitch records that Term started writing WAL at LSN.
type TermSwitch struct {
	Term Term
	LSN  lsn.LSN
}

// TermHistory lists term switches in increasing term and non-decreasing LSN order.
type TermHistory []TermSwitch

// UpTo returns the prefix of h whose entries start at or below end. Entries
// starting exactly at end are kept: a term that begins at the flush position
// owns it already (SK §3.1).
func (h TermHistory) UpTo(end lsn.LSN) TermHistory {
	n := 0
	for n < len(h) && h[n].LSN <= end {
		n++
	}
	return h[:n:n]
}

// LastTerm is the term of the last entry, or 0 for an empty history.
func (h TermHistory) LastTerm() Term {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Term
}

// Validate checks the ordering invariants.
func (h TermHistory) Validate() error {
	for i := 1; i < len(h); i++ {
		if h[i].Term <= h[i-1].Term {
			return fmt.Errorf("term history: term %d at index %d does not follow term %d", h[i].Term, i, h[i-1].Term)
		}
		if h[i].LSN < h[i-1].LSN {
			return fmt.Errorf("term history: term %d starts at %v, before term %d at %v", h[i].Term, h[i].LSN, h[i-1].Term, h[i-1].LSN)
		}
	}
	return nil
}

// Clone returns a copy that shares no memory with h.
func (h TermHistory) Clone() TermHistory {
	if h == nil {
		return nil
	}
	return append(TermHistory(nil), h...)
}

// SafekeeperID names a member of a membership configuration.
type SafekeeperID struct {
	ID     id.NodeID
	Host   string
	PgPort uint16
}

// Configuration is a membership configuration: a generation and its members,
// plus the new members while a joint configuration is in effect.
type Configuration struct {
	Generation Generation
	Members    []SafekeeperID
	// NewMembers is nil unless the configuration is joint.
	NewMembers []SafekeeperID
}

// Contains reports whether node is in Members or NewMembers.
func (c Configuration) Contains(node id.NodeID) bool {
	for _, m := range c.Members {
		if m.ID == node {
			return true
		}
	}
	for _, m := range c.NewMembers {
		if m.ID == node {
			return true
		}
	}
	return false
}

// Validate applies the receive-side rules of SK §2.2.
func (c Configuration) Validate() error {
	if c.Generation != 0 && len(c.Members) == 0 {
		return fmt.Errorf("membership configuration generation %d has no members", c.Generation)
	}
	for _, set := range [][]SafekeeperID{c.Members, c.NewMembers} {
		seen := make(map[id.NodeID]bool, len(set))
		for _, m := range set {
			if seen[m.ID] {
				return fmt.Errorf("membership configuration generation %d lists safekeeper %d twice", c.Generation, m.ID)
			}
			seen[m.ID] = true
		}
	}
	return nil
}

// Clone returns a deep copy.
func (c Configuration) Clone() Configuration {
	out := Configuration{Generation: c.Generation}
	// Keep nil and empty apart: a non-nil NewMembers marks a joint configuration.
	if c.Members != nil {
		out.Members = append([]SafekeeperID{}, c.Members...)
	}
	if c.NewMembers != nil {
		out.NewMembers = append([]SafekeeperID{}, c.NewMembers...)
	}
	return out
}
