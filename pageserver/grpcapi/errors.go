package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/pageserver/basebackup"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/tenant"
	"strata.dev/pageserver/timeline"
)

// code is the status code of an error from the tenant, timeline and
// datadir packages (the contract is at the top of pageserver.proto).
func code(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	// Before ErrInvalid: the manager wraps a branch point the ancestor
	// cannot serve (Timeline.ReadLSN) in both.
	case errors.Is(err, tenant.ErrLSNOutOfRange), errors.Is(err, timeline.ErrGarbageCollected),
		errors.Is(err, timeline.ErrWaitLSNTimeout):
		return codes.OutOfRange
	case errors.Is(err, tenant.ErrNotFound), errors.Is(err, datadir.ErrRelNotFound):
		return codes.NotFound
	case errors.Is(err, tenant.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, tenant.ErrHasBranches), errors.Is(err, basebackup.ErrUnsupported):
		return codes.FailedPrecondition
	case errors.Is(err, tenant.ErrBusy):
		return codes.Aborted
	case errors.Is(err, tenant.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, tenant.ErrShuttingDown), errors.Is(err, timeline.ErrClosed):
		return codes.Unavailable
	}
	return codes.Internal
}

// fail turns err into a status error; an unexpected one is logged, the
// client may not keep it.
func (s *Service) fail(ctx context.Context, method string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err // already says what it is
	}
	c := code(err)
	if ctx.Err() != nil && (c == codes.Internal || c == codes.Unavailable) {
		// The client went or the server stops: whatever failed, that is why.
		c = status.FromContextError(ctx.Err()).Code()
	}
	if c == codes.Internal {
		s.Log.Error().Err(err).Str("method", method).Msg("gRPC request failed")
	}
	return status.Error(c, err.Error())
}

// parseID parses a required id field.
func parseID(field, v string) (id.ID, error) {
	if v == "" {
		return id.ID{}, status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	i, err := id.Parse(v)
	if err != nil {
		return id.ID{}, status.Errorf(codes.InvalidArgument, "%s %q: %v", field, v, err)
	}
	return i, nil
}

// parseTTID parses a request's tenant and timeline ids.
func parseTTID(tenantID, timelineID string) (id.TenantTimeline, error) {
	var ttid id.TenantTimeline
	var err error
	if ttid.Tenant, err = parseID("tenant_id", tenantID); err != nil {
		return ttid, err
	}
	ttid.Timeline, err = parseID("timeline_id", timelineID)
	return ttid, err
}

// checkPgVersion refuses a PostgreSQL version other than 15 (0: 15).
func checkPgVersion(v uint32) error {
	if v != 0 && v != 15 {
		return status.Errorf(codes.InvalidArgument, "pg_version %d: only PostgreSQL 15 is supported", v)
	}
	return nil
}
