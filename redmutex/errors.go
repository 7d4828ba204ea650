package redmutex

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

var (
	// ErrAlreadyLocked means the key is held by another token: the server
	// answered that it already has the key (RedMutex's
	// {:error, :already_locked}). The error also matches
	// redlock.ErrNotObtained. An unreachable server is not "already locked":
	// it is reported as the redlock error naming the server.
	ErrAlreadyLocked = errors.New("redmutex: already locked")

	// ErrUnlockFailed means Release could not release the token (RedMutex's
	// {:error, :unlock_fail}) because the token does not hold the key: it is
	// wrong, expired, was released already, or another holder has the key
	// now. The error also matches redlock.ErrNotHeld. Synchronize and
	// WithLock return it when fn finished after its lock had expired.
	ErrUnlockFailed = errors.New("redmutex: unlock failed")

	// ErrTimeout means WithLock did not obtain the lock within its timeout
	// (RedisMutex's "Unable to obtain lock."). The error is a *TimeoutError
	// naming the key and the timeout, and also matches
	// redlock.ErrNotObtained.
	ErrTimeout = errors.New("redmutex: timeout")
)

// TimeoutError is the error of WithLock when the timeout passed before the
// lock was obtained. errors.Is(err, ErrTimeout) reports true for it.
type TimeoutError struct {
	Key     string
	Timeout time.Duration
	Last    error // the error of the last attempt (redlock.ErrNotObtained joined with its *redlock.QuorumError)
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("redmutex: lock %q not obtained within %v: timeout", e.Key, e.Timeout)
	// Name the masters that failed (not those cut short by the timeout):
	// a server that is down is why the wait was in vain.
	var qe *redlock.QuorumError
	if errors.As(e.Last, &qe) {
		for _, v := range qe.Failed() {
			if !errors.Is(v.Err, context.DeadlineExceeded) && !errors.Is(v.Err, context.Canceled) {
				return msg + " (last attempt: " + qe.Error() + ")"
			}
		}
	}
	return msg
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the last attempt's error.
func (e *TimeoutError) Unwrap() error { return e.Last }

// busyError is ErrAlreadyLocked for one key, keeping redlock's error
// (ErrNotObtained and the *redlock.QuorumError) reachable.
type busyError struct {
	key string
	err error
}

func (e *busyError) Error() string   { return fmt.Sprintf("redmutex: key %q: already locked", e.key) }
func (e *busyError) Unwrap() []error { return []error{ErrAlreadyLocked, e.err} }

// busy reports whether a failed acquisition failed because the key is held
// (redlock's QuorumError.Busy: masters answering "no" decided it) rather
// than because masters failed to answer or the caller's context ended.
func busy(err error) bool {
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) || !qe.Busy() {
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// acquireError maps a failed TryLock of key.
func acquireError(key string, err error) error {
	if busy(err) {
		return &busyError{key: key, err: err}
	}
	var ie *redlock.InputError
	if errors.As(err, &ie) || errors.Is(err, redlock.ErrClosed) {
		return err
	}
	return fmt.Errorf("redmutex: acquire %q: %w", key, err)
}

// releaseError maps a failed release of key's lock (Lock.Release or
// Client.ReleaseToken).
func releaseError(key string, err error) error {
	if errors.Is(err, redlock.ErrNotHeld) {
		return fmt.Errorf("%w: %q: %w", ErrUnlockFailed, key, err)
	}
	var ie *redlock.InputError
	if errors.As(err, &ie) || errors.Is(err, redlock.ErrClosed) {
		return err
	}
	return fmt.Errorf("redmutex: release %q: %w", key, err)
}
