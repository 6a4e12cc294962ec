package grpcapi

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/tenant"
	pb "strata.dev/proto/pageserver/v1"
)

func (s *Service) ImportBasebackup(stream grpc.ClientStreamingServer[pb.ImportBasebackupRequest, pb.TimelineInfo]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "empty stream: the first message must be the header")
		}
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return status.Error(codes.InvalidArgument, "the first message must be the header")
	}
	if err := checkPgVersion(h.PgVersion); err != nil {
		return err
	}
	ttid, err := s.newTimelineID(ctx, h.TenantId, h.TimelineId)
	if err != nil {
		return err
	}
	base, end := lsn.LSN(h.BaseLsn), lsn.LSN(h.EndLsn)
	if base != lsn.Invalid && end != lsn.Invalid && end < base {
		return status.Errorf(codes.InvalidArgument, "end_lsn %s is below base_lsn %s", end, base)
	}
	res, err := s.Manager.ImportBasebackup(ctx, ttid, &tarReader{stream: stream}, base, end)
	if err != nil {
		return s.fail(ctx, "ImportBasebackup", err)
	}
	if !res.Done {
		// The HTTP API would wait for import_wal; this one has no such call.
		if err := s.Manager.AbortImport(ttid); err != nil {
			s.Log.Warn().Err(err).Stringer("timeline", ttid).Msg("abort an import without its WAL")
		}
		return status.Errorf(codes.InvalidArgument, "end_lsn %s is above the backup's start %s and the tar has no WAL segments in pg_wal (pg_basebackup -X fetch)", end, res.BaseLSN)
	}
	t, err := s.Manager.Get(ttid)
	if err != nil {
		return s.fail(ctx, "ImportBasebackup", err)
	}
	return stream.SendAndClose(timelineInfo(t.Info()))
}

// tarReader reads the tar that follows the header of an ImportBasebackup
// stream.
type tarReader struct {
	stream grpc.ClientStreamingServer[pb.ImportBasebackupRequest, pb.TimelineInfo]
	buf    []byte
}

func (r *tarReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		msg, err := r.stream.Recv()
		if err != nil {
			return 0, err // io.EOF at the end
		}
		if msg.GetHeader() != nil {
			return 0, fmt.Errorf("%w: a second header in the stream", tenant.ErrInvalid)
		}
		r.buf = msg.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
