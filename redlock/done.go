package redlock

import (
	"context"
	"time"
)

// Done returns a channel that is closed when the lock is known lost: its
// validity ran out (Until passed without an Extend), or an Extend found it
// gone (a majority of masters no longer hold this token). It is the
// hand-held lock's version of etcd's Session.Done: select on it next to
// your work. Release does not close it (the lock was given up, not lost),
// nor does a failed Extend that leaves some validity.
//
// The channel and its timer are created on the first call; a lock whose
// Done is never called costs nothing for it.
func (l *Lock) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
		l.armDone()
	}
	return l.done
}

// armDone closes done when the lock is lost, or sets its timer to look
// again at Until. It runs at every change of Until (setUntil) and when the
// timer fires. l.mu is held.
func (l *Lock) armDone() {
	if l.done == nil || l.doneShut {
		return
	}
	if l.released && !l.lost {
		if l.doneTimer != nil {
			l.doneTimer.Stop()
		}
		// Released while Do's fn runs (fn called Release): Until is zero,
		// so fn's context ends too — another holder may take the resource
		// from now on. Done stays open: the lock was given up, not lost.
		if l.onLost != nil {
			l.onLost(releasedInFn(l.resource))
			l.onLost = nil
		}
		return
	}
	left := time.Until(l.until)
	if l.lost || l.until.IsZero() || left <= 0 {
		close(l.done)
		l.doneShut = true
		if l.c.obs != nil { // EventLost, once (an Extend may have sent it)
			err := ErrLockLost
			if l.lost {
				err = &opError{op: opExtend.String(), resource: l.resource, sentinel: ErrNotHeld, why: "an extension found it gone"}
			}
			l.reportLost(context.Background(), err)
		}
		if l.onLost != nil {
			l.onLost(l.lostCause())
			l.onLost = nil
		}
		if l.doneTimer != nil {
			l.doneTimer.Stop()
		}
		return
	}
	if l.doneTimer == nil {
		l.doneTimer = time.AfterFunc(left, l.doneCheck)
		return
	}
	l.doneTimer.Reset(left)
}

// notifyLost makes fn run (with l.mu held; once) when the lock is known
// lost, or is released while fn is set, with the cause for fn's context:
// Do cancels fn's context with it, without a goroutine per section. nil
// stops it.
func (l *Lock) notifyLost(fn func(cause error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onLost = fn
	if fn == nil {
		return
	}
	if l.done == nil {
		l.done = make(chan struct{})
	}
	if l.doneShut {
		fn(l.lostCause())
		l.onLost = nil
		return
	}
	l.armDone()
}

// lostCause is the cause of Do's context for a lost lock: an extension found
// it gone, or its validity ran out (ErrLockLost). l.mu is held.
func (l *Lock) lostCause() error {
	if l.lost {
		return &lostError{err: &opError{op: opExtend.String(), resource: l.resource, sentinel: ErrNotHeld, why: "an extension found it gone"}}
	}
	return ErrLockLost
}

// releasedInFn is the cause of Do's (or DoAll's) context when fn released
// the lock itself: it matches ErrLockLost and ErrNotHeld.
func releasedInFn(resource string) error {
	return &lostError{err: &opError{op: opRelease.String(), resource: resource, sentinel: ErrNotHeld, why: "released while fn runs"}}
}

func (l *Lock) doneCheck() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armDone()
}
