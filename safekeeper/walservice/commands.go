package walservice

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
)

// pushOptions are the options of START_WAL_PUSH (SK §1.5).
type pushOptions struct {
	version       pamsg.Version
	allowCreation bool
}

// parseStartWALPush parses "START_WAL_PUSH [( key 'value', ... )]". Like
// Neon, the option list is split naively on commas and whitespace, unknown
// keys are ignored, and a bare command means protocol version 2.
func parseStartWALPush(q string) (pushOptions, error) {
	o := pushOptions{version: pamsg.V2, allowCreation: true}
	rest := strings.TrimSpace(q[len("START_WAL_PUSH"):])
	if rest == "" {
		return o, nil
	}
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
		return o, fmt.Errorf("START_WAL_PUSH: options must be in parentheses, got %q", rest)
	}
	for _, opt := range strings.Split(rest[1:len(rest)-1], ",") {
		fields := strings.Fields(opt)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return o, fmt.Errorf("START_WAL_PUSH: option %q is not of the form key 'value'", strings.TrimSpace(opt))
		}
		key, val := fields[0], strings.Trim(fields[1], "'")
		switch key {
		case "proto_version":
			v, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return o, fmt.Errorf("START_WAL_PUSH: proto_version %q is not a number", val)
			}
			o.version = pamsg.Version(v)
		case "allow_timeline_creation":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return o, fmt.Errorf("START_WAL_PUSH: allow_timeline_creation %q is not true or false", val)
			}
			o.allowCreation = b
		}
	}
	if o.version != pamsg.V2 && o.version != pamsg.V3 {
		return o, fmt.Errorf("START_WAL_PUSH: unsupported proto_version %d (supported: 2, 3)", o.version)
	}
	return o, nil
}

// startReplicationRE is Neon's grammar; whatever follows the match (such as
// PostgreSQL's " TIMELINE 1") is ignored.
var startReplicationRE = regexp.MustCompile(`^START_REPLICATION(?: SLOT (\S+))?(?: PHYSICAL)? ([[:xdigit:]]+/[[:xdigit:]]+)(?: \(term='(\d+)'\))?`)

type replicationRequest struct {
	slot  string
	start lsn.LSN
	term  *pamsg.Term // recovery mode when set
}

func parseStartReplication(q string) (replicationRequest, error) {
	m := startReplicationRE.FindStringSubmatch(q)
	if m == nil {
		return replicationRequest{}, fmt.Errorf("malformed START_REPLICATION: %q (want START_REPLICATION [SLOT name] [PHYSICAL] X/Y [(term='N')])", q)
	}
	start, err := lsn.Parse(m[2])
	if err != nil {
		return replicationRequest{}, fmt.Errorf("START_REPLICATION: %w", err)
	}
	r := replicationRequest{slot: m[1], start: start}
	if m[3] != "" {
		t, err := strconv.ParseUint(m[3], 10, 64)
		if err != nil {
			return replicationRequest{}, fmt.Errorf("START_REPLICATION: term %q: %w", m[3], err)
		}
		term := pamsg.Term(t)
		r.term = &term
	}
	return r, nil
}

// formatSegmentSize renders a size the way PostgreSQL's SHOW shows a GUC
// with a byte unit ("16MB", "1GB"); pg_receivewal parses exactly that.
func formatSegmentSize(n uint64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dGB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dkB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
