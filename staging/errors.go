package staging

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Sentinel errors. Stage wraps one of them in every failure it reports, so
// the controller can map a failure to a package state reason with
// errors.Is; the message carries the details for the user.
var (
	// ErrNoBuildpack: no buildpack detected the application, or the
	// requested buildpack is unknown.
	ErrNoBuildpack = errors.New("staging: no buildpack detected the app")
	// ErrCompileFailed: a buildpack's compile step failed. The error is a
	// *CompileError with the exit status and the last log lines.
	ErrCompileFailed = errors.New("staging: compile failed")
	// ErrReleaseInvalid: the release step failed or gave no usable start
	// command.
	ErrReleaseInvalid = errors.New("staging: release output invalid")
	// ErrTimeout: staging took longer than Limits.Timeout.
	ErrTimeout = errors.New("staging: time limit exceeded")
	// ErrTooLarge: the droplet, the container's disk or the package
	// exceeded a size limit.
	ErrTooLarge = errors.New("staging: size limit exceeded")
	// ErrBadPackage: the application package is not a valid, safe zip
	// (climbing or absolute paths, links pointing out, special files, too
	// many files or too many bytes).
	ErrBadPackage = errors.New("staging: bad package")
)

// CompileError reports a failed compile step. It matches ErrCompileFailed.
type CompileError struct {
	// Buildpack is the name of the buildpack whose compile step failed.
	Buildpack string
	// ExitStatus is the exit status of the failed command, or -1 when the
	// failure was not a process exit (for example a missing tool).
	ExitStatus int
	// Reason says what failed, in a few words.
	Reason string
	// LastLines are the last lines of the staging log, oldest first.
	LastLines []string
}

// Error implements error.
func (e *CompileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "staging: buildpack %s: compile failed", e.Buildpack)
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	if e.ExitStatus >= 0 && !strings.Contains(e.Reason, "exit status") {
		fmt.Fprintf(&b, " (exit status %d)", e.ExitStatus)
	}
	if len(e.LastLines) > 0 {
		b.WriteString("; last log lines:\n")
		b.WriteString(strings.Join(e.LastLines, "\n"))
	}
	return b.String()
}

// Is makes a CompileError match ErrCompileFailed.
func (e *CompileError) Is(target error) bool { return target == ErrCompileFailed }

// ExitError reports a process run by a buildpack (see Build.Run) that
// exited with a non-zero status.
type ExitError struct {
	// Command is the program and its arguments.
	Command []string
	// Status is the exit status.
	Status int
}

// Error implements error.
func (e *ExitError) Error() string {
	// Build commands name long container paths; the program's base name
	// is what a user recognises.
	name := "process"
	if len(e.Command) > 0 {
		name = path.Base(e.Command[0])
		if len(e.Command) > 1 && len(e.Command[1]) < 40 {
			name += " " + e.Command[1]
		}
	}
	return fmt.Sprintf("%s: exit status %d", name, e.Status)
}
