package grpcapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/basebackup"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pageservice"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/tenant"
	pb "strata.dev/proto/pageserver/v1"
)

// chunkSize is the tar bytes of one BasebackupChunk.
const chunkSize = 256 << 10

func (s *Service) Basebackup(req *pb.BasebackupRequest, stream grpc.ServerStreamingServer[pb.BasebackupChunk]) error {
	ctx := stream.Context()
	start := time.Now()
	t, err := s.timeline(ctx, "Basebackup", req.TenantId, req.TimelineId)
	if err != nil {
		return err
	}
	at, prev, err := s.Pages.ReadLSN(ctx, t, lsn.LSN(req.Lsn))
	if err != nil {
		return s.fail(ctx, "Basebackup", err)
	}
	w := &chunkWriter{stream: stream, first: &pb.BasebackupChunk{Lsn: uint64(at), EstimatedSize: s.estimateSize(ctx, t, at)}}
	err = basebackup.Write(ctx, w, t, s.Pages.Reconstructor, at, basebackup.Options{PrevRecord: prev})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		// The client has a tar without its end-of-archive blocks, never a
		// data directory that looks whole.
		return s.fail(ctx, "Basebackup", fmt.Errorf("basebackup of %s at %s: %w", t.ID(), at, err))
	}
	s.Pages.ObserveBasebackup(time.Since(start))
	return nil
}

// chunkWriter cuts the tar into BasebackupChunks; the first one carries
// the LSN and the size estimate.
type chunkWriter struct {
	stream grpc.ServerStreamingServer[pb.BasebackupChunk]
	first  *pb.BasebackupChunk // until sent
	buf    []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			// A new buffer per message: a sent message must not change.
			w.buf = make([]byte, 0, chunkSize)
		}
		k := min(len(p), chunkSize-len(w.buf))
		w.buf, p = append(w.buf, p[:k]...), p[k:]
		if len(w.buf) == chunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 && w.first == nil {
		return nil
	}
	msg := &pb.BasebackupChunk{}
	if w.first != nil {
		msg, w.first = w.first, nil
	}
	msg.Data, w.buf = w.buf, nil
	return w.stream.Send(msg)
}

// estimateSize guesses the size of the tar of a basebackup at `at`, for a
// progress bar: the relations, the SLRU segments, the WAL segment and a
// tar header per file. 0 if the guess fails; the backup will say why.
func (s *Service) estimateSize(ctx context.Context, t *tenant.Timeline, at lsn.LSN) uint64 {
	const header, smallFiles = 1024, 64 << 10 // a header and padding; configuration files and the like
	size, err := t.LogicalSize(ctx, at)
	if err != nil {
		return 0
	}
	size += smallFiles
	for _, kind := range key.SlruKinds {
		segs, err := datadir.SlruSegments(ctx, t, kind, at)
		if err != nil {
			return 0
		}
		for _, seg := range segs {
			n, err := datadir.SlruSegmentSize(ctx, t, kind, seg, at)
			if err != nil {
				return 0
			}
			size += uint64(n)*pageservice.BlockSize + header
		}
	}
	if ctl, err := datadir.ControlFile(ctx, t, at); err == nil {
		if c, err := pgcontrol.Parse(ctl); err == nil {
			size += c.SegmentSize() + header
		}
	}
	return size
}

// rel checks a request's relation tag.
func rel(r *pb.RelTag) (key.Rel, error) {
	switch {
	case r == nil:
		return key.Rel{}, status.Error(codes.InvalidArgument, "rel is required")
	case r.Fork > uint32(key.ForkInit):
		return key.Rel{}, status.Errorf(codes.InvalidArgument, "rel: fork %d: want 0 (main), 1 (fsm), 2 (visibility map) or 3 (init)", r.Fork)
	case r.RelNumber == 0:
		return key.Rel{}, status.Error(codes.InvalidArgument, "rel: rel_number 0")
	}
	return key.Rel{Spc: r.SpcOid, DB: r.DbOid, Rel: r.RelNumber, Fork: uint8(r.Fork)}, nil
}

// relAt is what a read of one relation starts with: the timeline, the
// checked relation tag and the LSN to read at (Timeline.ReadLSN: it waits
// up to WaitLSNTimeout for ingest).
func (s *Service) relAt(ctx context.Context, method, tenantID, timelineID string, tag *pb.RelTag, l uint64) (*tenant.Timeline, key.Rel, lsn.LSN, error) {
	t, err := s.timeline(ctx, method, tenantID, timelineID)
	if err != nil {
		return nil, key.Rel{}, 0, err
	}
	r, err := rel(tag)
	if err != nil {
		return nil, key.Rel{}, 0, err
	}
	at, _, err := s.Pages.ReadLSN(ctx, t, lsn.LSN(l))
	if err != nil {
		return nil, key.Rel{}, 0, s.fail(ctx, method, err)
	}
	return t, r, at, nil
}

func (s *Service) GetPage(ctx context.Context, req *pb.GetPageRequest) (*pb.GetPageResponse, error) {
	t, r, at, err := s.relAt(ctx, "GetPage", req.TenantId, req.TimelineId, req.Rel, req.Lsn)
	if err != nil {
		return nil, err
	}
	// The page service trusts a compute to ask for relations it knows;
	// a person with grpcurl gets told.
	if ok, err := datadir.RelExists(ctx, t, r, at); err != nil {
		return nil, s.fail(ctx, "GetPage", err)
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "relation %s does not exist at %s", r, at)
	}
	page, err := s.Pages.Page(ctx, t, r, req.Block, at)
	if err != nil {
		return nil, s.fail(ctx, "GetPage", fmt.Errorf("page %d of %s at %s: %w", req.Block, r, at, err))
	}
	return &pb.GetPageResponse{Page: page, Lsn: uint64(at)}, nil
}

func (s *Service) GetRelSize(ctx context.Context, req *pb.GetRelSizeRequest) (*pb.GetRelSizeResponse, error) {
	t, r, at, err := s.relAt(ctx, "GetRelSize", req.TenantId, req.TimelineId, req.Rel, req.Lsn)
	if err != nil {
		return nil, err
	}
	ok, err := datadir.RelExists(ctx, t, r, at)
	if err != nil {
		return nil, s.fail(ctx, "GetRelSize", fmt.Errorf("does %s exist at %s: %w", r, at, err))
	}
	if !ok {
		return &pb.GetRelSizeResponse{}, nil
	}
	n, err := datadir.StoredRelSize(ctx, t, r, at)
	if err != nil {
		return nil, s.fail(ctx, "GetRelSize", fmt.Errorf("size of %s at %s: %w", r, at, err))
	}
	return &pb.GetRelSizeResponse{Blocks: n, Exists: true}, nil
}

func timestampKind(k tenant.TimestampKind) (pb.LsnForTimestampResponse_Kind, bool) {
	switch k {
	case tenant.TimestampPresent:
		return pb.LsnForTimestampResponse_PRESENT, true
	case tenant.TimestampPast:
		return pb.LsnForTimestampResponse_PAST, true
	case tenant.TimestampFuture:
		return pb.LsnForTimestampResponse_FUTURE, true
	case tenant.TimestampNoData:
		return pb.LsnForTimestampResponse_NO_DATA, true
	}
	return pb.LsnForTimestampResponse_KIND_UNSPECIFIED, false
}

func (s *Service) LsnForTimestamp(ctx context.Context, req *pb.LsnForTimestampRequest) (*pb.LsnForTimestampResponse, error) {
	t, err := s.timeline(ctx, "LsnForTimestamp", req.TenantId, req.TimelineId)
	if err != nil {
		return nil, err
	}
	res, err := t.LSNForTimestamp(ctx, time.UnixMicro(req.TimestampUnixUs))
	if err != nil {
		return nil, s.fail(ctx, "LsnForTimestamp", err)
	}
	kind, ok := timestampKind(res.Kind)
	if !ok {
		return nil, s.fail(ctx, "LsnForTimestamp", fmt.Errorf("unknown timestamp kind %s", res.Kind))
	}
	return &pb.LsnForTimestampResponse{Kind: kind, Lsn: uint64(res.LSN)}, nil
}
