package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExplain(t *testing.T) {
	ps := Daemon{Kind: KindPageserver, ID: 1, Addr: "127.0.0.1:64001"}
	sk := Daemon{Kind: KindSafekeeper, ID: 2, Addr: "127.0.0.1:5455"}
	for _, tc := range []struct {
		d    Daemon
		err  error
		code codes.Code
		want string
	}{
		{ps, status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:64001: connect: connection refused"`),
			codes.Unavailable, "pageserver 127.0.0.1:64001 is not answering (connection refused): is the cluster up? try `strata local status`"},
		{sk, status.Error(codes.Unavailable, "the server is shutting down"), codes.Unavailable, "safekeeper 2 127.0.0.1:5455 is not answering (server is shutting down)"},
		{ps, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), codes.DeadlineExceeded, "did not answer within 3s (--timeout)"},
		{ps, fmt.Errorf("call: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "did not answer within 3s"},
		{ps, context.Canceled, codes.Canceled, "interrupted"},
		{ps, status.Error(codes.NotFound, "timeline abc not found"), codes.NotFound, "pageserver 127.0.0.1:64001: not found: timeline abc not found"},
		{ps, status.Error(codes.OutOfRange, "0/100 is below the GC cutoff 0/2000"), codes.OutOfRange, "cannot serve that LSN: 0/100 is below the GC cutoff 0/2000"},
		{ps, status.Error(codes.AlreadyExists, "timeline exists"), codes.AlreadyExists, "already exists: timeline exists"},
		{ps, status.Error(codes.InvalidArgument, "bad id"), codes.InvalidArgument, "rejected the request: bad id"},
		{ps, status.Error(codes.FailedPrecondition, "has children"), codes.FailedPrecondition, "refused: has children"},
		{ps, status.Error(codes.Unimplemented, "unknown method LsnForTimestamp"), codes.Unimplemented, "is it older than this strata?"},
		{ps, status.Error(codes.Internal, "boom"), codes.Internal, "pageserver 127.0.0.1:64001 failed (internal): boom"},
	} {
		err := explain(tc.d, 3*time.Second, tc.err)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("explain(%v):\n  %v\nwant it to contain\n  %s", tc.err, err, tc.want)
		}
		if got := Code(err); got != tc.code {
			t.Errorf("explain(%v): code %v, want %v", tc.err, got, tc.code)
		}
		if NotAnswering(err) != (tc.code == codes.Unavailable) {
			t.Errorf("explain(%v): NotAnswering = %v", tc.err, NotAnswering(err))
		}
		// Wrapped further, it is still found, and not explained twice.
		wrapped := fmt.Errorf("branch x: %w", err)
		if Code(wrapped) != tc.code || explain(tc.d, time.Second, wrapped) != wrapped {
			t.Errorf("wrapped %v: code %v", wrapped, Code(wrapped))
		}
	}
	if explain(ps, time.Second, nil) != nil {
		t.Error("explain(nil) is not nil")
	}
	plain := errors.New("not a gRPC error")
	if err := explain(ps, time.Second, plain); !errors.Is(err, plain) || !strings.HasPrefix(err.Error(), "pageserver 127.0.0.1:64001: ") {
		t.Errorf("explain(plain) = %v", err)
	}
}

func TestOpenChecks(t *testing.T) {
	if _, err := Open(t.TempDir(), time.Second); err == nil || !strings.Contains(err.Error(), "strata local up") {
		t.Errorf("Open without strata.toml: %v", err)
	}
	if _, err := Open(t.TempDir(), 0); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Errorf("Open with timeout 0: %v", err)
	}
}
