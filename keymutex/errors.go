package keymutex

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrBusy means a key is held by an owner (possibly the caller's own
	// owner: locks are not reentrant). TryLock and MustLock fail with it, and
	// so do Await and AwaitAll when their context ends before the key is free.
	ErrBusy = errors.New("busy")

	// ErrNotHeld means a lock is no longer held: it was released already,
	// given away, or freed when its owner said goodbye.
	ErrNotHeld = errors.New("lock not held")

	// ErrOwnerGone means the owner said goodbye (or its context ended): it
	// can take no lock any more and its keys were freed.
	ErrOwnerGone = errors.New("owner gone")

	// ErrWouldDeadlock means an owner tried to await a key that it holds
	// itself.
	ErrWouldDeadlock = errors.New("would deadlock: key already held by the same owner")

	// ErrTransferFull means GiveAway found the heir's transfer channel full;
	// the giver keeps the lock.
	ErrTransferFull = errors.New("transfer channel full")

	// ErrInvalid reports a bad argument: a nil owner or lock, an empty or
	// duplicated key list, a NaN key, a gift to oneself, or a multi-key lock
	// given away.
	ErrInvalid = errors.New("invalid argument")
)

// fmtKey formats one key for an error message: strings are quoted.
func fmtKey[K any](k K) string {
	if s, ok := any(k).(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(k)
}

// fmtKeys names the keys of a lock: `key "a"` or `keys ["a" "b"]`.
func fmtKeys[K any](keys []K) string {
	if len(keys) == 1 {
		return "key " + fmtKey(keys[0])
	}
	var b strings.Builder
	b.WriteString("keys [")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fmtKey(k))
	}
	b.WriteByte(']')
	return b.String()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("keymutex: "+format+": %w", append(args, ErrInvalid)...)
}
