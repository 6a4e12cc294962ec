// Decode errors: every failure names the LSN of the page header or record at
// fault and says whether the WAL merely ends there or is damaged.
//
// Guarantees: each *DecodeError matches exactly one of ErrEndOfWAL and
// ErrCorrupt under errors.Is.
package wal

import (
	"errors"
	"fmt"

	"strata.dev/libs/lsn"
)

var (
	// ErrEndOfWAL matches errors for zero-filled space where the next record
	// or page header should be: the normal end of a pre-allocated segment.
	// Callers looking for the end of WAL stop there without complaint.
	ErrEndOfWAL = errors.New("end of WAL")
	// ErrCorrupt matches every other decode failure: bad CRC, bad header,
	// impossible length, wrong page address.
	ErrCorrupt = errors.New("corrupt WAL")
)

// DecodeError is the error type of Decoder.Next.
type DecodeError struct {
	LSN      lsn.LSN // where the offending page header or record starts
	Msg      string  // what was wrong, with the LSN spelled out
	EndOfWAL bool    // zeros rather than damage; see ErrEndOfWAL
}

func (e *DecodeError) Error() string {
	if e.EndOfWAL {
		return e.Msg + " (end of WAL)"
	}
	return e.Msg
}

// Unwrap lets errors.Is match ErrEndOfWAL or ErrCorrupt.
func (e *DecodeError) Unwrap() error {
	if e.EndOfWAL {
		return ErrEndOfWAL
	}
	return ErrCorrupt
}

// IsEndOfWAL reports whether err says the WAL ends (zeros follow) rather than
// that it is damaged.
func IsEndOfWAL(err error) bool { return errors.Is(err, ErrEndOfWAL) }

func corruptAt(at lsn.LSN, format string, args ...any) *DecodeError {
	return &DecodeError{LSN: at, Msg: fmt.Sprintf(format, args...)}
}

func endAt(at lsn.LSN, format string, args ...any) *DecodeError {
	return &DecodeError{LSN: at, Msg: fmt.Sprintf(format, args...), EndOfWAL: true}
}
