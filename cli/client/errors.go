package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/cli/cluster"
)

// Kinds of daemon.
const (
	KindPageserver = "pageserver"
	KindSafekeeper = "safekeeper"
)

// Daemon names one daemon in messages.
type Daemon struct {
	Kind string // KindPageserver or KindSafekeeper
	ID   uint64
	// Addr is the gRPC address the CLI calls.
	Addr string
	// Config is the daemon's entry in strata.toml.
	Config cluster.Daemon
}

// String is "pageserver 127.0.0.1:64001" or "safekeeper 2 127.0.0.1:5455".
func (d Daemon) String() string {
	if d.Kind == KindSafekeeper {
		return fmt.Sprintf("%s %d %s", d.Kind, d.ID, d.Addr)
	}
	return d.Kind + " " + d.Addr
}

// Error is a failed call to a daemon, explained. Callers branch on Code
// (codes.NotFound, codes.OutOfRange, ...) or on NotAnswering.
type Error struct {
	Daemon Daemon
	Code   codes.Code
	// Message is the daemon's own message (or the transport's).
	Message string
	// Timeout is the call's deadline, for DeadlineExceeded.
	Timeout time.Duration
}

// NotAnswering reports whether the daemon could not be reached at all.
func (e *Error) NotAnswering() bool { return e.Code == codes.Unavailable }

func (e *Error) Error() string {
	d := e.Daemon.String()
	switch e.Code {
	case codes.Unavailable:
		return fmt.Sprintf("%s is not answering (%s): is the cluster up? try `strata local status`", d, transportReason(e.Message))
	case codes.DeadlineExceeded:
		return fmt.Sprintf("%s did not answer within %v (--timeout)", d, e.Timeout)
	case codes.Canceled:
		return fmt.Sprintf("call to %s interrupted", d)
	case codes.Unimplemented:
		return fmt.Sprintf("%s does not know this request (%s): is it older than this strata?", d, e.Message)
	case codes.NotFound:
		return fmt.Sprintf("%s: not found: %s", d, e.Message)
	case codes.AlreadyExists:
		return fmt.Sprintf("%s: already exists: %s", d, e.Message)
	case codes.InvalidArgument:
		return fmt.Sprintf("%s rejected the request: %s", d, e.Message)
	case codes.OutOfRange:
		return fmt.Sprintf("%s cannot serve that LSN: %s", d, e.Message)
	case codes.FailedPrecondition:
		return fmt.Sprintf("%s refused: %s", d, e.Message)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Sprintf("%s denied the request: %s", d, e.Message)
	case codes.ResourceExhausted:
		return fmt.Sprintf("%s is overloaded: %s", d, e.Message)
	}
	return fmt.Sprintf("%s failed (%s): %s", d, strings.ToLower(e.Code.String()), e.Message)
}

// explain wraps a gRPC error as an *Error; a context error of the caller
// (Ctrl-C) becomes codes.Canceled, anything else passes through.
func explain(d Daemon, timeout time.Duration, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Daemon: d, Code: codes.Canceled, Message: err.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Daemon: d, Code: codes.DeadlineExceeded, Message: err.Error(), Timeout: timeout}
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", d, err)
	}
	return &Error{Daemon: d, Code: st.Code(), Message: st.Message(), Timeout: timeout}
}

// Code is the gRPC code of an error from Explain (codes.Unknown for others).
func Code(err error) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return codes.Unknown
}

// NotAnswering reports whether err says a daemon could not be reached.
func NotAnswering(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.NotAnswering()
}

// transportReasons are the causes worth naming from gRPC's transport
// messages, e.g. `connection error: desc = "transport: Error while dialing:
// dial tcp 127.0.0.1:64001: connect: connection refused"`.
var transportReasons = []string{
	"connection refused", "no such host", "i/o timeout", "connection reset by peer",
	"network is unreachable", "no route to host", "server is shutting down",
}

// transportReason is the short cause in a transport message, or the
// message itself.
func transportReason(msg string) string {
	for _, r := range transportReasons {
		if strings.Contains(msg, r) {
			return r
		}
	}
	if msg == "" {
		return "unavailable"
	}
	return msg
}
