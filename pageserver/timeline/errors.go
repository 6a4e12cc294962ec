package timeline

import (
	"errors"
	"fmt"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
)

var (
	// ErrMissingKey is wrapped when a key has no value at an LSN.
	ErrMissingKey = errors.New("missing key")
	// ErrClosed is returned by calls on a closed timeline.
	ErrClosed = errors.New("timeline closed")
	// ErrWaitLSNTimeout is wrapped when WaitLSN gives up.
	ErrWaitLSNTimeout = errors.New("timed out waiting for WAL")
	// ErrGarbageCollected is wrapped by reads below the GC cutoff.
	ErrGarbageCollected = errors.New("tried to request a page version that was garbage collected")
	// ErrExists is wrapped when Create finds a timeline already there.
	ErrExists = errors.New("timeline already exists")
	// ErrBroken is wrapped by the error of a timeline that stopped
	// flushing; it keeps serving reads.
	ErrBroken = errors.New("timeline broken")
)

// MissingKeyError says that a key has no value at an LSN: nothing was ever
// stored, an image layer covering it says it does not exist, or only
// records without a base were found.
type MissingKeyError struct {
	Timeline id.TenantTimeline
	Key      key.Key
	LSN      lsn.LSN
	Detail   string // why, when more than "nothing found"
}

func (e *MissingKeyError) Error() string {
	s := fmt.Sprintf("could not find data for key %s at LSN %s on timeline %s", e.Key, e.LSN, e.Timeline)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes errors.Is(err, ErrMissingKey) true.
func (e *MissingKeyError) Is(target error) bool { return target == ErrMissingKey }
