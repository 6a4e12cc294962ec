package pq

import (
	"errors"
	"fmt"
	"io"
)

// SQLSTATE codes the daemons answer with. PostgreSQL clients branch on them,
// so each one is chosen to match what a real server would say.
const (
	CodeSuccessfulCompletion    = "00000" // a server-initiated normal end of a COPY stream
	CodeConnectionFailure       = "08006"
	CodeProtocolViolation       = "08P01"
	CodeFeatureNotSupported     = "0A000"
	CodeInvalidSQLStatementName = "26000"
	CodeInvalidAuthorization    = "28000"
	CodeInvalidCursorName       = "34000"
	CodeSyntaxError             = "42601"
	CodeAdminShutdown           = "57P01"
	CodeInternalError           = "XX000" // Neon's code for every handler failure, auth included
)

// Severities for Error.Severity.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
)

// ErrCopyFail is returned (wrapped, with the client's message) by
// Session.ReadCopyData when the client aborts a COPY with CopyFail.
var ErrCopyFail = errors.New("client sent CopyFail")

// ErrCopyDone is returned by Session.ReadCopyData when the client ends a COPY
// with CopyDone. It matches io.EOF too, so callers that only care about the
// stream ending need not tell the two apart.
var ErrCopyDone = fmt.Errorf("client sent CopyDone: %w", io.EOF)

// ErrReadInterrupted is returned by reads after Session.InterruptRead.
var ErrReadInterrupted = errors.New("read interrupted by the server")

// Error is a failure to be reported to the client as an ErrorResponse.
// Handlers return one (directly or wrapped) to choose the SQLSTATE; any other
// error is reported as XX000.
type Error struct {
	// Severity is sent in the S and V fields; empty means SeverityError.
	Severity string
	// Code is the SQLSTATE.
	Code string
	// Message is the primary human-readable text.
	Message string

	cause error
}

// Errorf builds an Error with a formatted message. Like fmt.Errorf, a %w verb
// wraps its operand, so errors.Is and errors.As see through the Error.
func Errorf(code, format string, args ...any) *Error {
	cause := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: cause.Error(), cause: cause}
}

// Error returns just the message, so that wrapping an Error in more context
// reads naturally; the code travels separately.
func (e *Error) Error() string { return e.Message }

// Unwrap returns what Errorf's %w verbs wrapped.
func (e *Error) Unwrap() []error {
	switch c := e.cause.(type) {
	case interface{ Unwrap() error }:
		if u := c.Unwrap(); u != nil {
			return []error{u}
		}
	case interface{ Unwrap() []error }:
		return c.Unwrap()
	}
	return nil
}

// errorResponseFields maps any error to what goes on the wire: the code and
// severity of the outermost *Error in its chain (XX000 and ERROR if none) and
// the full text of err, so context added by wrapping reaches the client.
func errorResponseFields(err error) (severity, code, message string) {
	severity, code = SeverityError, CodeInternalError
	var pe *Error
	if errors.As(err, &pe) {
		code = pe.Code
		if pe.Severity != "" {
			severity = pe.Severity
		}
	}
	return severity, code, err.Error()
}
