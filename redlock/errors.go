package redlock

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotObtained means the lock was not acquired: the resource is busy,
	// or no quorum of the group could be reached. It is joined with a
	// *QuorumError describing each master's vote and, when the caller's
	// context ended, with ctx.Err().
	ErrNotObtained = errors.New("redlock: lock not obtained")

	// ErrNotHeld means Release or Extend found that the lock is no longer
	// held by this token (it expired, or another holder has it now).
	ErrNotHeld = errors.New("redlock: lock not held")

	// ErrClosed is returned by every operation on a closed Client.
	ErrClosed = errors.New("redlock: client closed")

	// ErrLockLost is the cause of the context that Do passes to fn when the
	// lock is lost (its validity ran out or an extension failed).
	ErrLockLost = errors.New("redlock: lock lost")

	// errNodeDown is the vote of a master that is marked down.
	errNodeDown = errors.New("master is down")
)

// InputError reports a bad argument to an operation (never ErrNotObtained).
type InputError struct {
	Arg    string // "resource" or "ttl"
	Reason string
}

func (e *InputError) Error() string { return "redlock: invalid " + e.Arg + ": " + e.Reason }

// Vote is one master's answer to one operation.
type Vote struct {
	Addr     string // the master's address as written in Config, password redacted
	Answered bool   // false when the outcome was decided before this master answered
	OK       bool   // the master said yes (set, deleted, extended, or has the key)
	Err      error  // a transport or server error (a *NodeError); nil for a plain yes or no
}

func (v Vote) String() string {
	switch {
	case v.Err != nil:
		var ne *NodeError
		if errors.As(v.Err, &ne) {
			return v.Addr + ": " + ne.Err.Error()
		}
		return v.Addr + ": " + v.Err.Error()
	case !v.Answered:
		return v.Addr + ": not awaited"
	case v.OK:
		return v.Addr + ": yes"
	default:
		return v.Addr + ": no"
	}
}

// QuorumError describes an operation that did not reach a quorum: each
// master's vote, so an operator can see which masters failed and how.
// Use errors.As to get it from the errors of Lock, TryLock, Release, Extend
// and IsLocked.
type QuorumError struct {
	Op       string // "lock", "release", "extend" or "islocked"
	Resource string
	Quorum   int    // votes needed
	Votes    []Vote // one per master of the group, in Config order; masters that had not answered yet carry a timeout error
}

// Yes counts the masters that said yes.
func (e *QuorumError) Yes() int {
	n := 0
	for _, v := range e.Votes {
		if v.OK {
			n++
		}
	}
	return n
}

// No counts the masters that answered no (not held, busy, not ours).
func (e *QuorumError) No() int {
	n := 0
	for _, v := range e.Votes {
		if v.Answered && !v.OK && v.Err == nil {
			n++
		}
	}
	return n
}

// Failed returns the masters that answered with an error (rather than yes or no).
func (e *QuorumError) Failed() []Vote {
	var out []Vote
	for _, v := range e.Votes {
		if v.Err != nil {
			out = append(out, v)
		}
	}
	return out
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	waiting := 0
	for _, v := range e.Votes {
		if v.Err == nil && !v.Answered {
			waiting++
		}
	}
	fmt.Fprintf(&b, "redlock: %s %q: %d of %d masters said yes, %d needed; %d said no", e.Op, e.Resource, e.Yes(), len(e.Votes), e.Quorum, e.No())
	if waiting > 0 {
		fmt.Fprintf(&b, ", %d not awaited", waiting)
	}
	if failed := e.Failed(); len(failed) > 0 {
		b.WriteString("; failed: ")
		for i, v := range failed {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v.String())
		}
	}
	return b.String()
}

// NodeError is a transport or server error of one master.
type NodeError struct {
	Addr string // redacted address
	Err  error
}

func (e *NodeError) Error() string { return "redlock: master " + e.Addr + ": " + e.Err.Error() }
func (e *NodeError) Unwrap() error { return e.Err }
