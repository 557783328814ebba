package agentlab

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error the SDK returns for one of these conditions
// matches the sentinel with [errors.Is]; backends translate their own errors
// into them at the seam, so callers never match error strings.
var (
	// ErrNotFound reports that a sandbox, job, snapshot, profile or VM does
	// not exist.
	ErrNotFound = errors.New("agentlab: not found")

	// ErrInvalidState reports an operation refused in the current state.
	// The concrete error is an [*InvalidStateError].
	ErrInvalidState = errors.New("agentlab: invalid state")

	// ErrAlreadyExists reports a name, snapshot or record that is taken.
	ErrAlreadyExists = errors.New("agentlab: already exists")

	// ErrVMIDConflict reports an explicit VMID that is already in use, in
	// the Store or on the hypervisor. It also matches [ErrAlreadyExists].
	ErrVMIDConflict = &conflictError{msg: "agentlab: vmid already in use"}

	// ErrBusy reports a resource that is locked or overloaded; the call may
	// succeed if retried later.
	ErrBusy = errors.New("agentlab: busy")

	// ErrTimeout reports an operation that did not finish in time. Errors
	// caused by a context deadline also match [context.DeadlineExceeded].
	ErrTimeout = errors.New("agentlab: timeout")

	// ErrClosed reports a call on a closed Manager, Store or subscription.
	ErrClosed = errors.New("agentlab: closed")

	// ErrUnsupported reports an operation the configured backend cannot do,
	// such as Exec without a Guest.
	ErrUnsupported = errors.New("agentlab: unsupported")

	// ErrInvalidArgument reports a bad name, TTL, VMID, profile or spec.
	ErrInvalidArgument = errors.New("agentlab: invalid argument")

	// ErrHostKeyMismatch reports a guest whose SSH host key is not trusted:
	// it differs from the pinned one, or none is pinned and trust on first
	// use is off. It is never retried.
	ErrHostKeyMismatch = errors.New("agentlab: ssh host key mismatch")

	// ErrUnreachable reports a guest that could not be reached.
	ErrUnreachable = errors.New("agentlab: guest unreachable")

	// ErrBackend reports a failure the hypervisor or another backend
	// reported that fits no other sentinel: a failed task, an internal
	// server error. The message carries the backend's text.
	ErrBackend = errors.New("agentlab: backend error")

	// ErrNotReady reports a guest or agent that is not answering yet, such
	// as a QEMU guest agent still starting. It is retryable.
	ErrNotReady = errors.New("agentlab: not ready")
)

// conflictError is the type of ErrVMIDConflict, so that it also matches
// ErrAlreadyExists.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

func (e *conflictError) Is(target error) bool { return target == ErrAlreadyExists }

// InvalidStateError reports an operation that is not valid in a sandbox's
// current state. It matches [ErrInvalidState].
type InvalidStateError struct {
	Op    Op      // the refused operation
	VMID  int     // the sandbox
	State State   // its state when the operation was refused
	Valid []State // the states in which Op is valid
}

// Error returns a message naming the state and the valid ones, such as
// "cannot renew lease in STOPPED state; valid states: READY, RUNNING".
func (e *InvalidStateError) Error() string {
	valid := make([]string, len(e.Valid))
	for i, s := range e.Valid {
		valid[i] = string(s)
	}
	return fmt.Sprintf("cannot %s in %s state; valid states: %s",
		e.Op.verb(), e.State, strings.Join(valid, ", "))
}

// Is makes the error match [ErrInvalidState].
func (e *InvalidStateError) Is(target error) bool { return target == ErrInvalidState }

// IsRetryable reports whether err is worth retrying unchanged: a busy
// backend, a guest not ready yet or an unreachable guest.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrBusy) || errors.Is(err, ErrNotReady) ||
		errors.Is(err, ErrUnreachable)
}
