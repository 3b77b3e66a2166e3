// Package exitcode carries a process exit code inside an error, so that
// commands decide their exit status and only main calls os.Exit.
package exitcode

import (
	"errors"
	"fmt"
	"io"
)

// Exit codes shared by every command.
const (
	// Failure is a failed check or operation.
	Failure = 1
	// Usage is bad input or an unreachable cluster.
	Usage = 2
	// Timeout is a wait that ran out of time.
	Timeout = 124
)

// Error is an error with the exit code main should use.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err with code, or nil for a nil err.
func Wrap(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// ErrReported marks a failure the command has already printed (a failed
// check in a report); main exits with its code and prints nothing more.
var ErrReported = errors.New("failure already reported")

// Report prints err to w, unless the command already reported it, and
// returns the exit code main should use (1 when err carries none).
func Report(w io.Writer, err error) int {
	if !errors.Is(err, ErrReported) {
		fmt.Fprintln(w, "error:", err)
	}
	var ec *Error
	if errors.As(err, &ec) {
		return ec.Code
	}
	return Failure
}
