package redmutex

import (
	"context"
	"errors"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// Defaults of WithLock and LockerOptions.
const (
	DefaultTimeout        = 40 * time.Second
	DefaultLockExpiration = 20 * time.Second
	DefaultRetryInterval  = 20 * time.Millisecond
)

// LockerOptions configures a Locker. Exactly one of Addr and Client is set.
type LockerOptions struct {
	// Addr is the Redis server: "host:port", "redis://[user:pass@]host:port[/db]"
	// or "rediss://…" (TLS). The Locker makes its own redlock client with
	// this one master and closes it in Close.
	Addr string

	// Client is an existing redlock client to share. Close leaves it open.
	// Its RetryStrategy paces the attempts within one wait; when it gives
	// up before the timeout, WithLock sleeps RetryInterval (randomized) and
	// asks again.
	Client *redlock.Client

	// Config is the base of the client made for Addr: timeouts, credentials,
	// TLS, Logger. Its Servers and Cluster stay empty. When its
	// RetryStrategy is nil, the client retries for as long as WithLock
	// waits, every RetryInterval. Only with Addr.
	Config redlock.Config

	// RetryInterval is the base sleep between attempts while WithLock
	// waits: each sleep is drawn uniformly from [RetryInterval/2,
	// 3×RetryInterval/2) so that waiters desynchronize. Default: 20 ms.
	RetryInterval time.Duration
}

// Locker runs functions under locks on any key of one Redis server,
// waiting for busy keys up to a timeout: RedisMutex's with_lock. It is safe
// for concurrent use. (It is not a sync.Locker: locks are taken per call,
// by key.)
type Locker struct {
	c        *redlock.Client
	own      bool
	interval time.Duration
}

// NewLocker returns a Locker. With o.Addr it connects to the server (a
// server that is down does not fail NewLocker: it is retried in the
// background while WithLock waits).
func NewLocker(o LockerOptions) (*Locker, error) {
	if o.RetryInterval < 0 {
		return nil, errors.New("redmutex: RetryInterval is negative")
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.Addr != "" && o.Config.RetryStrategy == nil {
		interval := o.RetryInterval
		// Retry for ever: the context of each WithLock call is the bound.
		o.Config.RetryStrategy = redlock.RetryFunc(func(int) (time.Duration, bool) { return jitter(interval), true })
	}
	c, own, err := clientFor(o.Addr, o.Client, o.Config)
	if err != nil {
		return nil, err
	}
	return &Locker{c: c, own: own, interval: o.RetryInterval}, nil
}

// Close closes the client the Locker made for Addr (a shared Client stays
// open). Locks held by running WithLock calls are released by those calls
// only if the client is still open; otherwise they expire. Close is
// idempotent.
func (lk *Locker) Close() error {
	if lk.own {
		return lk.c.Close()
	}
	return nil
}

// LockOption changes one WithLock call.
type LockOption func(*lockOptions)

type lockOptions struct {
	timeout    time.Duration
	expiration time.Duration
}

// WithTimeout sets how long WithLock waits for the lock (default 40 s). Zero
// or less makes a single attempt.
func WithTimeout(d time.Duration) LockOption { return func(o *lockOptions) { o.timeout = d } }

// WithExpiration sets the lock's expiration: past it, the key expires even if fn
// still runs, and another caller can enter (default 20 s).
func WithExpiration(d time.Duration) LockOption { return func(o *lockOptions) { o.expiration = d } }

// errTimedOut is the cause of the context that bounds WithLock's wait.
var errTimedOut = errors.New("redmutex: WithLock timeout")

// WithLock takes the lock on key, waiting up to the timeout (WithTimeout,
// default 40 s) while the key is held or the server does not answer, runs
// fn, and releases the lock whatever happens: on return, on error and on
// panic, which then propagates. The key expires after the expiration
// (WithExpiration, default 20 s) if it is not released before.
//
// When the timeout passes first, fn does not run and WithLock returns a
// *TimeoutError (errors.Is(err, ErrTimeout)) naming the key and the
// timeout. When ctx ends first, it returns redlock.ErrNotObtained joined
// with ctx's error. fn's context ends, with cause redlock.ErrLockLost, when
// the lock's validity runs out (just before the expiration). WithLock returns
// fn's error; when fn succeeded but the release failed (the lock had
// expired: ErrUnlockFailed), that error.
func (lk *Locker) WithLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...LockOption) error {
	if fn == nil {
		return &redlock.InputError{Arg: "fn", Reason: "nil"}
	}
	o := lockOptions{timeout: DefaultTimeout, expiration: DefaultLockExpiration}
	for _, opt := range opts {
		opt(&o)
	}
	l, err := lk.wait(ctx, key, o)
	if err != nil {
		return err
	}
	return hold(ctx, l, fn)
}

// wait acquires key within o.timeout.
func (lk *Locker) wait(ctx context.Context, key string, o lockOptions) (*redlock.Lock, error) {
	if o.timeout <= 0 {
		l, err := lk.c.TryLock(ctx, key, o.expiration)
		if err != nil && errors.Is(err, redlock.ErrNotObtained) && ctx.Err() == nil {
			return nil, &TimeoutError{Key: key, Timeout: 0, Last: err}
		}
		return l, err
	}
	tctx, cancel := context.WithTimeoutCause(ctx, o.timeout, errTimedOut)
	defer cancel()
	var timer *time.Timer
	for {
		l, err := lk.c.Lock(tctx, key, o.expiration)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, redlock.ErrNotObtained) {
			return nil, err // bad input, closed client
		}
		if tctx.Err() != nil {
			if ctx.Err() == nil && errors.Is(context.Cause(tctx), errTimedOut) {
				return nil, &TimeoutError{Key: key, Timeout: o.timeout, Last: err}
			}
			return nil, err // the caller's context ended: err joins its error
		}
		// The client's retry strategy gave up before the timeout: pause, go on.
		d := jitter(lk.interval)
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-tctx.Done():
		}
	}
}
