package redmutex

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
				return msg + "; last attempt: " + detail(e.Key, qe)
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

func (e *busyError) Error() string   { return fmt.Sprintf("redmutex: lock %q: already locked", e.key) }
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
	return &keyError{op: "acquire", key: key, err: err}
}

// releaseError maps a failed release of key's lock (Lock.Release or
// Client.ReleaseToken).
func releaseError(key string, err error) error {
	if errors.Is(err, redlock.ErrNotHeld) {
		return &keyError{op: "release", key: key, also: ErrUnlockFailed, err: err}
	}
	var ie *redlock.InputError
	if errors.As(err, &ie) || errors.Is(err, redlock.ErrClosed) {
		return err
	}
	return &keyError{op: "release", key: key, err: err}
}

// keyError restates redlock's error about key as redmutex's: one line that
// says the key once ("redmutex: release \"k\": unlock failed: not held (…)"),
// with redlock's error (and also, e.g. ErrUnlockFailed) reachable by
// errors.Is and errors.As.
type keyError struct {
	op, key string
	also    error // ErrUnlockFailed, or nil
	err     error
}

func (e *keyError) Error() string {
	s := fmt.Sprintf("redmutex: %s %q: ", e.op, e.key)
	if errors.Is(e.also, ErrUnlockFailed) {
		s += "unlock failed: "
	}
	return s + detail(e.key, e.err)
}

func (e *keyError) Unwrap() []error {
	if e.also != nil {
		return []error{e.also, e.err}
	}
	return []error{e.err}
}

// detail is err's message without redlock's `redlock: <op> "<key>": `
// prefix: what happened, not again whom it happened to.
func detail(key string, err error) string {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "redlock: ")
	if !ok {
		return msg
	}
	if _, after, found := strings.Cut(rest, " "+strconv.Quote(key)+": "); found {
		return after
	}
	return msg
}
