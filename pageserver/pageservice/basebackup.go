package pageservice

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/pq"
	"strata.dev/pageserver/basebackup"
)

// copyChunk is the CopyData payload size of a basebackup stream.
const copyChunk = 128 << 10

// basebackup serves `basebackup <tenant> <timeline> [<lsn>] [--gzip]`: a
// full tar of the timeline at lsn (default: its last record LSN), from
// which vanilla PostgreSQL 15 starts without recovery (PS §7), as COPY OUT
// data. A future LSN waits for ingest up to WaitLSNTimeout. If the backup
// fails half-way the client gets an ErrorResponse after a tar without its
// end-of-archive blocks, never a startable directory.
func (s *Service) basebackup(ctx context.Context, sess *pq.Session, args string) error {
	f := strings.Fields(args)
	gz := len(f) > 0 && f[len(f)-1] == "--gzip"
	if gz {
		f = f[:len(f)-1]
	}
	if len(f) < 2 || len(f) > 3 {
		return pq.Errorf(pq.CodeSyntaxError, "want basebackup <tenant_id> <timeline_id> [<lsn>] [--gzip]")
	}
	t, err := s.timeline(f[0] + " " + f[1])
	if err != nil {
		return err
	}
	start := time.Now()
	var at lsn.LSN // 0: the last record
	if len(f) == 3 {
		if at, err = lsn.Parse(f[2]); err != nil {
			return pq.Errorf(pq.CodeSyntaxError, "LSN %q: %v", f[2], err)
		}
	}
	// prevRecord is unknown below the last record (see basebackup.Options).
	at, prevRecord, err := s.ReadLSN(ctx, t, at)
	if err != nil {
		return pq.Errorf(pq.CodeInternalError, "%v", err)
	}

	if err := sess.StartCopyOut(); err != nil {
		return err
	}
	cw := &copyWriter{sess: sess, buf: make([]byte, 0, copyChunk)}
	var out io.Writer = cw
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(cw)
		out = zw
	}
	err = basebackup.Write(ctx, out, t, s.Reconstructor, at, basebackup.Options{PrevRecord: prevRecord})
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err == nil {
		err = cw.flush()
	}
	if err != nil {
		return fmt.Errorf("basebackup of %s at %s: %w", t.ID(), at, err)
	}
	if err := sess.EndCopyOut(); err != nil {
		return err
	}
	s.metrics().basebackup.Observe(time.Since(start).Seconds())
	return sess.WriteCommandComplete("COPY 0")
}

// copyWriter cuts a stream into CopyData messages of copyChunk bytes.
type copyWriter struct {
	sess *pq.Session
	buf  []byte
}

func (w *copyWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), copyChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == copyChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *copyWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.sess.WriteCopyData(w.buf)
	w.buf = w.buf[:0]
	return err
}
