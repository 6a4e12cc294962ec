package pamsg

import (
	"fmt"

	"strata.dev/libs/lsn"
)

// HighestCommonPoint finds where an acceptor's WAL stops agreeing with the
// proposer's (SK §3.4 step 4). The histories are not symmetric: the proposer's
// last term extends to +∞ while the acceptor's WAL ends at skEnd.
//
// It returns ok=false when the histories share no term. An error means an
// invariant is broken (the same term starting at two LSNs, or an acceptor
// history reaching past its own WAL); callers must not truncate anything then.
func HighestCommonPoint(prop, sk TermHistory, skEnd lsn.LSN) (point TermSwitch, ok bool, err error) {
	if len(sk) > 0 && sk[len(sk)-1].LSN > skEnd {
		return TermSwitch{}, false, fmt.Errorf("acceptor term history ends at term %d LSN %v, beyond its WAL end %v",
			sk[len(sk)-1].Term, sk[len(sk)-1].LSN, skEnd)
	}
	last := -1
	for i := 0; i < len(prop) && i < len(sk); i++ {
		if prop[i].Term != sk[i].Term {
			break
		}
		if prop[i].LSN != sk[i].LSN {
			return TermSwitch{}, false, fmt.Errorf("term %d starts at %v in the proposer's history but at %v in the acceptor's",
				prop[i].Term, prop[i].LSN, sk[i].LSN)
		}
		last = i
	}
	if last < 0 {
		return TermSwitch{}, false, nil
	}
	if last == len(prop)-1 {
		return TermSwitch{Term: prop[last].Term, LSN: skEnd}, true, nil
	}
	propEnd := prop[last+1].LSN
	skTermEnd := skEnd
	if last+1 < len(sk) {
		skTermEnd = sk[last+1].LSN
	}
	return TermSwitch{Term: prop[last].Term, LSN: min(propEnd, skTermEnd)}, true, nil
}

// StartStreamingAt is where a proposer with history prop must start streaming
// to an acceptor whose WAL (described by sk) ends at skEnd: the highest common
// point, or the start of the proposer's history when there is none (SK §3.9 step 6).
func StartStreamingAt(prop, sk TermHistory, skEnd lsn.LSN) (lsn.LSN, error) {
	p, ok, err := HighestCommonPoint(prop, sk, skEnd)
	if err != nil {
		return 0, err
	}
	if ok {
		return p.LSN, nil
	}
	if len(prop) == 0 {
		return 0, fmt.Errorf("proposer term history is empty")
	}
	return prop[0].LSN, nil
}
