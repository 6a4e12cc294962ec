package pageservice

import (
	"context"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/tenant"
)

// Page reads block blk of rel at `at` exactly as a GetPage request does (a
// zero page beyond the end, records rebuilt with the Reconstructor), for
// the gRPC management API. `at` must be an LSN the timeline can serve.
func (s *Service) Page(ctx context.Context, t *tenant.Timeline, rel key.Rel, blk uint32, at lsn.LSN) ([]byte, error) {
	return s.page(ctx, t, rel, blk, at)
}
