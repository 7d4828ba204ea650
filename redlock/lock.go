package redlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Lock is a lock held on a quorum of one group's masters. Its methods are
// safe for concurrent use.
type Lock struct {
	c        *Client
	g        *group
	hash     uint64
	resource string
	key      string
	token    string

	mayHold uint64 // masters where the SET may have landed (see result.mayHold)

	mu       sync.Mutex
	until    time.Time     // monotonic; zero once released or known lost
	ttl      time.Duration // of the last successful acquire or extend
	released bool
}

// Resource is the resource the lock was acquired for.
func (l *Lock) Resource() string { return l.resource }

// Token is the lock's random token: the value of its key on the masters.
// Use it as a fencing token only together with a monotonic counter of your
// own; it is random, not ordered.
func (l *Lock) Token() string { return l.token }

// Until is the end of the lock's validity: ttl − elapsed − drift after the
// start of the attempt (or of the last successful Extend). Past it, the lock
// must be considered lost. It is zero after Release.
func (l *Lock) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// Valid reports whether the lock's validity has not run out.
func (l *Lock) Valid() bool {
	u := l.Until()
	return !u.IsZero() && time.Now().Before(u)
}

// TTL returns the validity left (0 once it ran out).
func (l *Lock) TTL() time.Duration {
	u := l.Until()
	if u.IsZero() {
		return 0
	}
	return max(time.Until(u), 0)
}

// Extend resets the lock's TTL to ttl on a quorum of masters, only where the
// key still holds this token (an expired key is never re-created). Validity
// is recomputed from the start of this call. Extend is refused locally with
// ErrNotHeld once Until has passed. When a majority of masters say the token
// no longer holds, it returns ErrNotHeld; when no quorum answers either way,
// a *QuorumError, and the lock keeps its previous validity.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	c := l.c
	if err := c.checkArgs(l.resource, ttl); err != nil {
		return err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if !l.Valid() {
		return fmt.Errorf("%w: %q: validity ran out at %v", ErrNotHeld, l.resource, l.Until().Format(time.RFC3339Nano))
	}
	start := time.Now()
	r := l.g.fanout(ctx, request{op: opExtend, key: l.key, token: l.token, ttlMs: ttlMillis(ttl), hash: l.hash, timeout: c.s.NodeTimeout})
	valid := validity(ttl, time.Since(start), c.s.DriftFactor)
	newUntil := start.Add(ttl - driftAllowance(ttl, c.s.DriftFactor))
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.released:
		return fmt.Errorf("%w: %q: released while extending", ErrNotHeld, l.resource)
	case r.yes >= l.g.quorum && valid > 0:
		l.until, l.ttl = newUntil, ttl
		return nil
	case r.yes >= l.g.quorum:
		// Extended, but the extension took longer than its own validity:
		// nothing more can be trusted than before it.
		if newUntil.Before(l.until) {
			l.until = newUntil
		}
		return fmt.Errorf("redlock: extend %q: a quorum extended it but the extension's validity ran out (it took %v): %w",
			l.resource, time.Since(start), l.g.quorumError(opExtend, l.resource, r))
	case r.no >= l.g.quorum:
		l.until = time.Time{}
		return fmt.Errorf("%w: %q: %w", ErrNotHeld, l.resource, l.g.quorumError(opExtend, l.resource, r))
	}
	// Some masters may have applied a shorter TTL: never trust more than it.
	if r.yes > 0 && newUntil.Before(l.until) {
		l.until = newUntil
	}
	qe := l.g.quorumError(opExtend, l.resource, r)
	if err := ctx.Err(); err != nil {
		return errors.Join(qe, err)
	}
	return qe
}

// Release deletes the lock's key on every master of its group where it still
// holds this token. It returns nil once a majority deleted it, ErrNotHeld
// when a majority says the token no longer holds (it expired, or another
// holder has the resource), and otherwise a *QuorumError naming the failed
// masters. After Release, Until is zero whatever the outcome.
func (l *Lock) Release(ctx context.Context) error {
	c := l.c
	if c.closed.Load() {
		return ErrClosed
	}
	l.mu.Lock()
	// A master that misses the release (down, or no answer in time) gets it
	// when it is back, as long as the key may still exist there.
	var keep time.Duration
	if !l.until.IsZero() {
		keep = time.Until(l.until) + driftAllowance(l.ttl, c.s.DriftFactor)
	}
	l.until = time.Time{}
	l.released = true
	l.mu.Unlock()
	return c.release(ctx, l.g, l.hash, l.resource, l.key, l.token, keep, l.mayHold)
}

// ReleaseToken releases resource where its key still holds token, exactly as
// Lock.Release does, for a lock acquired elsewhere (another process that
// handed over its Token). It returns nil once a majority deleted the key,
// ErrNotHeld when a majority says token does not hold it, and otherwise a
// *QuorumError naming the failed masters. (Lock returns at quorum: right
// after it, a master it did not wait for may still be applying the SET; a
// release from another client can overtake it there, leaving that minority
// key to expire with its TTL.)
func (c *Client) ReleaseToken(ctx context.Context, resource, token string) error {
	if err := c.checkResource(resource); err != nil {
		return err
	}
	if token == "" {
		return &InputError{Arg: "token", Reason: "empty"}
	}
	if c.closed.Load() {
		return ErrClosed
	}
	g, h := c.route(resource)
	return c.release(ctx, g, h, resource, c.s.KeyPrefix+resource, token, 0, 0)
}

// release sends the compare-and-delete to every master of g. Masters of the
// mayHold mask that miss it keep it for up to keep (the key's remaining
// life) and send it when they are back.
func (c *Client) release(ctx context.Context, g *group, hash uint64, resource, key, token string, keep time.Duration, mayHold uint64) error {
	r := g.fanout(ctx, request{op: opRelease, key: key, token: token, hash: hash, timeout: c.s.NodeTimeout,
		keepMask: mayHold, keepFor: max(keep, 0)})
	switch {
	case r.yes >= g.quorum:
		return nil
	case r.no >= g.quorum:
		return fmt.Errorf("%w: %q: %w", ErrNotHeld, resource, g.quorumError(opRelease, resource, r))
	}
	qe := g.quorumError(opRelease, resource, r)
	if err := ctx.Err(); err != nil {
		return errors.Join(qe, err)
	}
	return qe
}

// DoOption changes how Do runs.
type DoOption func(*doOptions)

type doOptions struct {
	autoExtend bool
	try        bool
}

// WithAutoExtend extends the lock by its ttl every ttl/3 while fn runs. The
// context fn gets is still cancelled (cause ErrLockLost) if an extension
// finds the lock gone or validity runs out before one succeeds.
func WithAutoExtend() DoOption { return func(o *doOptions) { o.autoExtend = true } }

// WithTryOnce makes a single attempt (TryLock) instead of Lock's retries.
func WithTryOnce() DoOption { return func(o *doOptions) { o.try = true } }

type lockCtxKey struct{}

// LockFromContext returns the lock held around the fn that Do runs, or nil.
// fn can Extend it by hand; the context follows the new validity.
func LockFromContext(ctx context.Context) *Lock {
	l, _ := ctx.Value(lockCtxKey{}).(*Lock)
	return l
}

// Do acquires resource (as Lock does), runs fn, and releases the lock
// whatever happens: on return, on error and on panic (which then
// propagates). fn receives a context that is cancelled, with cause
// ErrLockLost, when the lock is lost: its validity runs out (Until) or an
// extension finds it gone. Do returns fn's error; when fn succeeded but the
// release found the lock no longer held, it returns that error (the critical
// section may have overlapped another holder). fn does not run when the lock
// is not obtained: Do then returns Lock's error.
//
// This is the Elixir redlock's transaction(resource, ttl, fn).
func (c *Client) Do(ctx context.Context, resource string, ttl time.Duration, fn func(ctx context.Context) error) error {
	return c.DoWith(ctx, resource, ttl, fn)
}

// DoWith is Do with options (WithAutoExtend, WithTryOnce).
func (c *Client) DoWith(ctx context.Context, resource string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) (err error) {
	if fn == nil {
		return &InputError{Arg: "fn", Reason: "nil"}
	}
	var o doOptions
	for _, opt := range opts {
		opt(&o)
	}
	var l *Lock
	if o.try {
		l, err = c.TryLock(ctx, resource, ttl)
	} else {
		l, err = c.Lock(ctx, resource, ttl)
	}
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancelCause(context.WithValue(ctx, lockCtxKey{}, l))
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		l.watch(lctx, ttl, o.autoExtend, stop, cancel)
	}()
	defer func() {
		close(stop)
		<-watched
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.ReleaseTimeout)
		relErr := l.Release(rctx)
		rcancel()
		if err == nil && relErr != nil {
			err = relErr
		}
	}()
	return fn(lctx)
}

// watch cancels ctx with ErrLockLost when the lock's validity runs out,
// following extensions made by hand, and extends it every ttl/3 when asked.
func (l *Lock) watch(ctx context.Context, ttl time.Duration, autoExtend bool, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	expiry := time.NewTimer(l.TTL())
	defer expiry.Stop()
	var tick <-chan time.Time
	if autoExtend {
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-expiry.C:
			if left := l.TTL(); left > 0 {
				expiry.Reset(left) // extended meanwhile
				continue
			}
			cancel(ErrLockLost)
			return
		case <-tick:
			ectx, ecancel := context.WithTimeout(ctx, l.c.s.NodeTimeout*2)
			err := l.Extend(ectx, ttl)
			ecancel()
			if errors.Is(err, ErrNotHeld) {
				cancel(fmt.Errorf("%w: %w", ErrLockLost, err))
				return
			}
			if left := l.TTL(); left > 0 {
				expiry.Reset(left)
			}
		}
	}
}
