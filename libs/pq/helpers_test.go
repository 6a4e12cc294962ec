package pq_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"strata.dev/libs/pq"
)

// testHandler answers a few commands that exercise every Session method.
type testHandler struct {
	calls atomic.Int32
	// copyErr receives how each COPY stream ended, seen from the read side.
	copyErr chan error
}

func newTestHandler() *testHandler { return &testHandler{copyErr: make(chan error, 16)} }

func (h *testHandler) HandleQuery(ctx context.Context, s *pq.Session, query string) error {
	h.calls.Add(1)
	switch {
	case strings.HasPrefix(query, "IDENTIFY_SYSTEM"):
		if err := s.WriteRowDescription(pq.TextField("systemid"), pq.Int4Field("timeline"),
			pq.TextField("xlogpos"), pq.TextField("dbname")); err != nil {
			return err
		}
		if err := s.WriteDataRow([]byte("7000000000000000001"), []byte("1"), []byte("0/16B9188"), nil); err != nil {
			return err
		}
		return s.WriteCommandComplete("IDENTIFY_SYSTEM")
	case query == "SESSION":
		// One row per fact about the session, as "key=value".
		facts := []string{
			"application_name=" + s.ApplicationName(),
			"options=" + strings.Join(s.Options(), "|"),
			fmt.Sprintf("conn_id_set=%v", s.ConnID() != 0),
			fmt.Sprintf("remote_set=%v", s.RemoteAddr() != nil),
		}
		for _, k := range []string{"tenant_id", "timeline_id"} {
			v, _ := s.Option(k)
			facts = append(facts, k+"="+v)
		}
		if c := s.Claims(); c != nil {
			facts = append(facts, "scope="+string(c.Scope))
		} else {
			facts = append(facts, "scope=")
		}
		if err := s.WriteRowDescription(pq.TextField("fact")); err != nil {
			return err
		}
		for _, f := range facts {
			if err := s.WriteDataRow([]byte(f)); err != nil {
				return err
			}
		}
		return s.WriteCommandComplete(fmt.Sprintf("SELECT %d", len(facts)))
	case query == "FAIL_SQLSTATE":
		return fmt.Errorf("wrapped: %w", pq.Errorf(pq.CodeAdminShutdown, "shutting down"))
	case query == "FAIL_PLAIN":
		return errors.New("plain failure")
	case query == "FAIL_FATAL":
		return &pq.Error{Severity: pq.SeverityFatal, Code: pq.CodeConnectionFailure, Message: "fatal failure"}
	case query == "COPY_ECHO":
		return h.copyEcho(s)
	}
	return pq.Errorf(pq.CodeSyntaxError, "unsupported command %q", query)
}

// copyEcho reads CopyData on one goroutine and echoes it from another, the
// way the safekeeper runs WAL push. A payload "stop" makes the server end the
// stream with a 00000 ErrorResponse.
func (h *testHandler) copyEcho(s *pq.Session) error {
	if err := s.StartCopyBoth(); err != nil {
		return err
	}
	msgs := make(chan []byte, 4)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(msgs)
		for {
			b, err := s.ReadCopyData()
			if err != nil {
				readErr = err
				return
			}
			msgs <- append([]byte(nil), b...)
		}
	})
	var result error
	for m := range msgs {
		if string(m) == "stop" {
			result = pq.Errorf(pq.CodeSuccessfulCompletion, "ending streaming")
			break
		}
		if err := s.WriteCopyData(m); err != nil {
			result = err
			break
		}
		if err := s.Flush(); err != nil {
			result = err
			break
		}
	}
	if result != nil {
		// The reader is blocked on the client; stop it, and drain what it
		// had already queued so that it can exit.
		s.InterruptRead()
		for range msgs {
		}
	}
	wg.Wait()
	h.copyErr <- readErr
	if result != nil {
		return result
	}
	if errors.Is(readErr, io.EOF) {
		return nil
	}
	return readErr
}

// startServer serves h on a loopback port until the test ends.
func startServer(t testing.TB, cfg pq.Config, h pq.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pq.NewServer(cfg, h).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}
