package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/tenant"
	"strata.dev/pageserver/timeline"
)

// The manager wraps errors in several sentinels at once; the most
// specific one decides the code.
func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("timeline x: %w", tenant.ErrNotFound), codes.NotFound},
		{fmt.Errorf("ancestor: %w", fmt.Errorf("timeline x: %w", tenant.ErrNotFound)), codes.NotFound},
		{fmt.Errorf("timeline x: %w", tenant.ErrExists), codes.AlreadyExists},
		{fmt.Errorf("%w: not a tar", tenant.ErrInvalid), codes.InvalidArgument},
		// A branch point the ancestor did not reach in time.
		{fmt.Errorf("%w: %w", tenant.ErrInvalid, fmt.Errorf("%w: waited", timeline.ErrWaitLSNTimeout)), codes.OutOfRange},
		{fmt.Errorf("%w: below the GC cutoff", tenant.ErrLSNOutOfRange), codes.OutOfRange},
		{fmt.Errorf("read: %w", timeline.ErrGarbageCollected), codes.OutOfRange},
		{fmt.Errorf("timeline x: %w: y", tenant.ErrHasBranches), codes.FailedPrecondition},
		{fmt.Errorf("timeline x: %w", tenant.ErrBusy), codes.Aborted},
		{tenant.ErrShuttingDown, codes.Unavailable},
		{fmt.Errorf("read: %w", timeline.ErrClosed), codes.Unavailable},
		{fmt.Errorf("size: %w", datadir.ErrRelNotFound), codes.NotFound},
		{fmt.Errorf("wait: %w", context.Canceled), codes.Canceled},
		{errors.New("disk on fire"), codes.Internal},
	} {
		if got := code(tc.err); got != tc.want {
			t.Errorf("code(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
