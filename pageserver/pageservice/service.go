// Package pageservice is the pageserver's libpq port (PS §6): the
// pagestream protocol computes read pages with (exists, nblocks, GetPage,
// dbsize, SLRU segments), on top of the protocol server in libs/pq.
//
// A pagestream_v2/v3 command switches the connection to COPY BOTH; each
// CopyData from the client is one request and gets one CopyData answer, in
// order. A request that fails (unknown relation, LSN not reached in time,
// bad LSNs) gets a tag-103 error answer and the stream goes on; a message
// that cannot be decoded ends the connection with an ErrorResponse, as in
// Neon: the client and server no longer agree on what is being said.
//
// Reads happen at the request's effective LSN (PS §6.2): a client that
// says its object changed after what was ingested waits for ingest (up to
// WaitLSNTimeout); otherwise min(request LSN, last record LSN). Pages that
// are stored as records are rebuilt with the Reconstructor (the WAL-redo
// pool).
//
// The basebackup command streams a tar of the timeline (basebackup.go).
//
// Not done yet: auth (the pageserver has no JWT configuration), the other
// commands, batching of consecutive GetPage requests, and a relation size
// cache (every GetPage reads the relation's size first).
package pageservice

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pq"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/tenant"
	"strata.dev/pageserver/timeline"
)

// Service answers libpq connections for a pageserver.
type Service struct {
	Manager *tenant.Manager
	// Reconstructor rebuilds pages stored as an image and records (the
	// WAL-redo pool).
	Reconstructor timeline.Reconstructor
	// WaitLSNTimeout bounds the wait for ingest to reach a request's LSN;
	// ≤ 0 waits without limit (until the client goes or the server stops).
	WaitLSNTimeout time.Duration
	Log            zerolog.Logger

	metricsOnce sync.Once
	m           *metrics  // see metrics()
	pages       sync.Pool // *[]byte pages that GetPage rebuilds in (Reconstruction.Into)
}

// Serve accepts connections on ln until ctx ends.
func (s *Service) Serve(ctx context.Context, ln net.Listener, cfg pq.Config) error {
	cfg.Log = s.Log
	return pq.NewServer(cfg, s).Serve(ctx, ln)
}

// HandleQuery implements pq.Handler.
func (s *Service) HandleQuery(ctx context.Context, sess *pq.Session, query string) error {
	q := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(query), ";"))
	cmd, args, _ := strings.Cut(q, " ")
	cmd = strings.ToLower(cmd)
	s.metrics().command(cmd)
	switch cmd {
	case "pagestream_v2":
		return s.pagestream(ctx, sess, V2, args)
	case "pagestream_v3":
		return s.pagestream(ctx, sess, V3, args)
	case "basebackup":
		return s.basebackup(ctx, sess, args)
	case "set":
		return sess.WriteCommandComplete("SELECT 1")
	}
	return pq.Errorf(pq.CodeFeatureNotSupported, "unsupported command %q", truncate(q, 80))
}

// timeline finds the active timeline "<tenant_id> <timeline_id>" names.
func (s *Service) timeline(args string) (*tenant.Timeline, error) {
	f := strings.Fields(args)
	if len(f) != 2 {
		return nil, pq.Errorf(pq.CodeSyntaxError, "want <tenant_id> <timeline_id>, got %d arguments", len(f))
	}
	var ttid id.TenantTimeline
	var err error
	if ttid.Tenant, err = id.Parse(f[0]); err != nil {
		return nil, pq.Errorf(pq.CodeSyntaxError, "tenant id: %v", err)
	}
	if ttid.Timeline, err = id.Parse(f[1]); err != nil {
		return nil, pq.Errorf(pq.CodeSyntaxError, "timeline id: %v", err)
	}
	t, err := s.Manager.Get(ttid)
	if err != nil {
		return nil, pq.Errorf(pq.CodeInternalError, "%w", err)
	}
	return t, nil
}

// pagestream serves requests until the client ends the stream.
func (s *Service) pagestream(ctx context.Context, sess *pq.Session, v Version, args string) error {
	t, err := s.timeline(args)
	if err != nil {
		return err
	}
	if err := sess.StartCopyBoth(); err != nil {
		return err
	}
	log := sess.Log().With().Stringer("timeline", t.ID()).Uint8("pagestream", uint8(v)).Logger()
	log.Debug().Msg("pagestream started")
	var out []byte
	for {
		msg, err := sess.ReadCopyData()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		req, err := DecodeRequest(v, msg)
		if err != nil {
			return pq.Errorf(pq.CodeProtocolViolation, "%w", err)
		}
		done := s.metrics().queryStarted(req.Tag)
		out, err = s.answer(ctx, out[:0], t, v, req)
		done(err)
		if err != nil {
			if ctx.Err() != nil {
				// Shutting down: drop the connection without an answer.
				return err
			}
			log.Debug().Err(err).Stringer("request", req.Tag).Msg("pagestream request failed")
			out = AppendErrorResponse(out[:0], v, req, err.Error())
		}
		if err := sess.WriteCopyData(out); err != nil {
			return err
		}
		// Answer at once unless more requests have already arrived: a
		// pipelining client gets its answers in fewer packets.
		if !sess.MessageBuffered() {
			if err := sess.Flush(); err != nil {
				return err
			}
		}
		if cap(out) > 1<<20 {
			out = nil // a big SLRU segment: do not keep it
		}
	}
}

// answer appends the response to one request, or returns why it failed.
func (s *Service) answer(ctx context.Context, dst []byte, t *tenant.Timeline, v Version, req Request) ([]byte, error) {
	at, err := s.effectiveLSN(ctx, t, req.Header)
	if err != nil {
		return dst, err
	}
	switch req.Tag {
	case TagExists:
		if err := checkRel(req.Rel); err != nil {
			return dst, err
		}
		ok, err := datadir.RelExists(ctx, t, req.Rel, at)
		if err != nil {
			return dst, fmt.Errorf("exists %s at %s: %w", req.Rel, at, err)
		}
		return AppendExists(dst, v, req, ok), nil
	case TagNblocks:
		if err := checkRel(req.Rel); err != nil {
			return dst, err
		}
		n, err := datadir.RelSize(ctx, t, req.Rel, at)
		if err != nil {
			return dst, fmt.Errorf("nblocks %s at %s: %w", req.Rel, at, err)
		}
		return AppendNblocks(dst, v, req, n), nil
	case TagGetPage:
		// A page rebuilt by redo is built in a pooled buffer: the answer
		// copies it.
		buf, _ := s.pages.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
			*buf = make([]byte, BlockSize)
		}
		defer s.pages.Put(buf)
		page, err := s.page(ctx, t, req.Rel, req.Block, at, *buf)
		if err != nil {
			return dst, fmt.Errorf("getpage %s block %d at %s: %w", req.Rel, req.Block, at, err)
		}
		return AppendGetPage(dst, v, req, page), nil
	case TagDBSize:
		n, err := datadir.DBSize(ctx, t, key.DefaultTablespace, req.DB, at)
		if err != nil {
			return dst, fmt.Errorf("dbsize of database %d at %s: %w", req.DB, at, err)
		}
		return AppendDBSize(dst, v, req, int64(n)*BlockSize), nil
	case TagGetSlruSegment:
		dst = appendResponseStart(dst, v, RespGetSlruSegment, req)
		return s.appendSlruSegment(ctx, dst, t, req.SlruKind, req.Segno, at)
	}
	return dst, fmt.Errorf("unknown request %s", req.Tag) // DecodeRequest lets none through
}

// effectiveLSN validates a request's LSNs and picks the one to read at
// (PS §6.2), waiting for ingest when the client needs more than there is.
func (s *Service) effectiveLSN(ctx context.Context, t *tenant.Timeline, h Header) (lsn.LSN, error) {
	switch {
	case h.RequestLSN == lsn.Invalid:
		return 0, errors.New("invalid request LSN 0")
	case h.RequestLSN < h.NotModifiedSince:
		return 0, fmt.Errorf("invalid request: request LSN %s is below not_modified_since %s", h.RequestLSN, h.NotModifiedSince)
	}
	if cutoff := t.GCCutoff(); h.RequestLSN < cutoff {
		return 0, fmt.Errorf("%w: request LSN %s, GC cutoff %s", timeline.ErrGarbageCollected, h.RequestLSN, cutoff)
	}
	last, _ := t.LastRecordLSN()
	if h.NotModifiedSince > last {
		if err := s.waitLSN(ctx, t, h.NotModifiedSince); err != nil {
			return 0, err
		}
		return h.NotModifiedSince, nil
	}
	return min(last, h.RequestLSN), nil
}

// ReadLSN checks a read at l as every read is checked (GC cutoff, the
// timeline's start) and waits for ingest to reach l, for at most
// WaitLSNTimeout, observing the wait in the wait_lsn metrics when there is
// one (a backup ahead of ingest, a new compute right after
// sync-safekeepers, is the wait operators most need to see). It returns
// what tenant.Timeline.ReadLSN does. The gRPC API reads through it too.
func (s *Service) ReadLSN(ctx context.Context, t *tenant.Timeline, l lsn.LSN) (at, prevRecord lsn.LSN, err error) {
	if last, _ := t.LastRecordLSN(); l > last {
		defer s.metrics().waitStartedAt()()
	}
	return t.ReadLSN(ctx, l, s.WaitLSNTimeout)
}

// waitLSN waits for ingest to reach l, for at most WaitLSNTimeout, and
// observes the wait.
func (s *Service) waitLSN(ctx context.Context, t *tenant.Timeline, l lsn.LSN) error {
	defer s.metrics().waitStartedAt()()
	return t.WaitLSN(ctx, l, s.WaitLSNTimeout)
}

// checkRel refuses relation tags no PostgreSQL sends.
func checkRel(rel key.Rel) error {
	if rel.Fork > key.ForkInit {
		return fmt.Errorf("invalid fork number %d", rel.Fork)
	}
	return nil
}

var zeroPage [BlockSize]byte

// page reads a relation block: a zero page beyond the end, as Neon
// answers (a compute may read a block it is about to extend into).
func (s *Service) page(ctx context.Context, t *tenant.Timeline, rel key.Rel, blk uint32, at lsn.LSN, into []byte) ([]byte, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	if rel.Rel == 0 {
		return nil, errors.New("invalid relation node 0")
	}
	// A compute reads pages of forks it knows exist: the size key alone
	// will do, except for FSM and VM forks, which may not exist (size 0).
	size := datadir.StoredRelSize
	if rel.Fork == key.ForkFSM || rel.Fork == key.ForkVM {
		size = datadir.RelSize
	}
	n, err := size(ctx, t, rel, at)
	if err != nil {
		return nil, err
	}
	if blk >= n {
		return zeroPage[:], nil
	}
	page, err := s.value(ctx, t, key.RelBlock(rel, blk), at, into)
	if err == nil && len(page) != BlockSize {
		err = fmt.Errorf("stored page of %d bytes", len(page))
	}
	return page, err
}

// value reads a key and rebuilds it if it is stored as records.
// A page that needs redo may be built in into (nil: anywhere).
func (s *Service) value(ctx context.Context, t *tenant.Timeline, k key.Key, at lsn.LSN, into []byte) ([]byte, error) {
	rec, err := t.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	if rec.ImageOnly() {
		return rec.Image, nil
	}
	if s.Reconstructor == nil {
		return nil, fmt.Errorf("key %s needs WAL redo and the page service has no Reconstructor", k)
	}
	rec.Into = into
	return s.Reconstructor.Reconstruct(ctx, rec)
}

// appendSlruSegment appends an SLRU segment's page count and pages. CLOG
// pages may be stored with an 8-byte commit-timestamp tail (PS §3): only
// the 8192 bytes PostgreSQL keeps are sent.
func (s *Service) appendSlruSegment(ctx context.Context, dst []byte, t *tenant.Timeline, kind key.SlruKind, seg uint32, at lsn.LSN) ([]byte, error) {
	ok, err := datadir.SlruSegmentExists(ctx, t, kind, seg, at)
	if err != nil {
		return dst, fmt.Errorf("%s segment %04X at %s: %w", kind, seg, at, err)
	}
	if !ok {
		return dst, fmt.Errorf("%s segment %04X does not exist at %s", kind, seg, at)
	}
	n, err := datadir.SlruSegmentSize(ctx, t, kind, seg, at)
	if err != nil {
		return dst, fmt.Errorf("%s segment %04X at %s: %w", kind, seg, at, err)
	}
	dst = binary.BigEndian.AppendUint32(dst, n)
	for blk := range n {
		page, err := s.value(ctx, t, key.SlruBlock(kind, seg, blk), at, nil)
		if err != nil {
			return dst, fmt.Errorf("%s segment %04X page %d at %s: %w", kind, seg, blk, at, err)
		}
		if len(page) < BlockSize {
			return dst, fmt.Errorf("%s segment %04X page %d at %s: %d bytes", kind, seg, blk, at, len(page))
		}
		dst = append(dst, page[:BlockSize]...)
	}
	return dst, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
