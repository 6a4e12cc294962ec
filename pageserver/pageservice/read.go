package pageservice

import (
	"context"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/tenant"
)

// Page reads block blk of rel at `at` exactly as a GetPage request does (a
// zero page beyond the end, records rebuilt with the Reconstructor), for
// the gRPC management API, and counts in the same GetPage metrics. `at`
// must be an LSN the timeline can serve.
func (s *Service) Page(ctx context.Context, t *tenant.Timeline, rel key.Rel, blk uint32, at lsn.LSN) ([]byte, error) {
	done := s.metrics().queryStarted(TagGetPage)
	page, err := s.page(ctx, t, rel, blk, at, nil)
	done(err)
	return page, err
}

// ObserveBasebackup counts a basebackup sent another way (gRPC) in the
// basebackup metrics: d is the time from the request to its last byte.
func (s *Service) ObserveBasebackup(d time.Duration) {
	s.metrics().basebackup.Observe(d.Seconds())
}
