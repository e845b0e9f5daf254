package fsm

import "errors"

// Rule violations are returned as values from Apply; they never change state.
var (
	// ErrNotFound: no job with that ID, or no task with that name.
	ErrNotFound = errors.New("not found")
	// ErrStaleAttempt: a command names an attempt that is no longer the
	// task's current lease (the fencing token is old).
	ErrStaleAttempt = errors.New("stale attempt")
	// ErrDuplicate: the attempt was already finished with this same report.
	ErrDuplicate = errors.New("attempt already finished")
	// ErrConflict: the change does not fit the task's or job's state.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the command is malformed.
	ErrInvalid = errors.New("invalid command")
)
