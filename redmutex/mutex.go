package redmutex

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// Defaults of Options.
const (
	DefaultKey        = "red_mutex_lock"
	DefaultExpiration = time.Hour
)

// Options configures a Mutex. Exactly one of Addr and Client is set.
type Options struct {
	// Addr is the Redis server: "host:port", "redis://[user:pass@]host:port[/db]"
	// or "rediss://…" (TLS). The Mutex makes its own redlock client with
	// this one master and closes it in Close.
	Addr string

	// Client is an existing redlock client to share (one master for a
	// single-Redis mutex, or a quorum group for a Redlock one). Close leaves
	// it open.
	Client *redlock.Client

	// Config is the base of the client made for Addr: timeouts, credentials,
	// TLS, Logger. Its Servers and Cluster stay empty. Only with Addr.
	Config redlock.Config

	// Key is the Redis key of the lock (with Config.KeyPrefix prepended, if
	// any). Default: "red_mutex_lock".
	Key string

	// Expiration is how long an acquired lock is kept: past it, the key
	// expires and another caller can acquire it even if its holder never
	// released it. Default: 1 h.
	Expiration time.Duration
}

// Mutex is a lock on one Redis key with one expiration: RedMutex's mutex
// module. Its methods are safe for concurrent use. A Mutex does not
// exclude goroutines of its own process from each other by itself: every
// Acquire, from anywhere, competes for the same key. A Mutex keeps no
// per-token state: the token is the lock, and any Mutex on the same key
// and server can release it.
type Mutex struct {
	c      *redlock.Client
	own    bool
	key    string
	exp    time.Duration
	closed atomic.Bool
}

// New returns a Mutex for o.Key. With o.Addr it connects to the server
// (a server that is down does not fail New: it is retried in the
// background, and Acquire reports it until it is back).
func New(o Options) (*Mutex, error) {
	if o.Expiration < 0 {
		return nil, fmt.Errorf("redmutex: Expiration %v is negative", o.Expiration)
	}
	if o.Key == "" {
		o.Key = DefaultKey
	}
	if o.Expiration == 0 {
		o.Expiration = DefaultExpiration
	}
	c, own, err := clientFor(o.Addr, o.Client, o.Config)
	if err != nil {
		return nil, err
	}
	return &Mutex{c: c, own: own, key: o.Key, exp: o.Expiration}, nil
}

// Key is the lock's key (without Config.KeyPrefix).
func (m *Mutex) Key() string { return m.key }

// Expiration is how long an acquired lock is kept.
func (m *Mutex) Expiration() time.Duration { return m.exp }

// Acquire makes one attempt to take the lock and returns its token, the
// value of the key on the server (RedMutex's acquire_lock). When the key is
// held, by this process or any other, it returns ErrAlreadyLocked; when the
// server cannot be reached, the redlock error naming it. The token is all
// it takes to release the lock, with Release on any Mutex for the same key
// and server, in this process or another.
func (m *Mutex) Acquire(ctx context.Context) (string, error) {
	if m.closed.Load() {
		return "", redlock.ErrClosed
	}
	l, err := m.c.TryLock(ctx, m.key, m.exp)
	if err != nil {
		return "", acquireError(m.key, err)
	}
	return l.Token(), nil
}

// Exists reports whether the key is held, by anyone (RedMutex's
// exists_lock). An unreachable server is an error, never false.
func (m *Mutex) Exists(ctx context.Context) (bool, error) {
	if m.closed.Load() {
		return false, redlock.ErrClosed
	}
	ok, err := m.c.IsLocked(ctx, m.key)
	if err != nil {
		var ie *redlock.InputError
		if errors.As(err, &ie) || errors.Is(err, redlock.ErrClosed) {
			return false, err
		}
		return false, &keyError{op: "exists", key: m.key, err: err}
	}
	return ok, nil
}

// Release releases the lock that token holds (RedMutex's release_lock):
// it deletes the key if, and only if, its value is still token. The token
// may come from any Mutex on the same key and server, in this process or
// another (it is the value Acquire returned there). Release returns
// ErrUnlockFailed, also matching redlock.ErrNotHeld, when the token does
// not hold the key: it is wrong, was released already, expired, or another
// holder has the key now. An empty token is a *redlock.InputError. When
// the server cannot be reached, Release returns the redlock error (a
// *redlock.QuorumError) and can be called again with the same token.
func (m *Mutex) Release(ctx context.Context, token string) error {
	if m.closed.Load() {
		return redlock.ErrClosed
	}
	if err := m.c.ReleaseToken(ctx, m.key, token); err != nil {
		return releaseError(m.key, err)
	}
	return nil
}

// Close marks the Mutex closed and, when the Mutex made its own client
// (from Addr), closes it. Locks still held are not released: they expire
// with their Expiration, unless their token is released through another
// Mutex. Operations after Close return redlock.ErrClosed. Close is
// idempotent.
func (m *Mutex) Close() error {
	m.closed.Store(true)
	if m.own {
		return m.c.Close()
	}
	return nil
}

// Synchronize acquires m (one attempt, as Acquire), runs fn, releases the
// lock and returns fn's result (RedMutex's synchronize). The lock is
// released whatever happens: on return, on error and on panic, which then
// propagates. fn does not run when the lock is not obtained: Synchronize
// then returns Acquire's error (ErrAlreadyLocked when the key is held).
// fn's context ends, with cause redlock.ErrLockLost, when the lock's
// validity runs out, and carries the lock: redlock.LockFromContext(ctx)
// returns it, for fn to Extend it. When fn succeeded but the release failed — the lock
// had expired meanwhile (ErrUnlockFailed), or the server did not answer —
// Synchronize returns fn's value together with that error.
func Synchronize[T any](ctx context.Context, m *Mutex, fn func(ctx context.Context) (T, error)) (T, error) {
	var v T
	if fn == nil {
		return v, &redlock.InputError{Arg: "fn", Reason: "nil"}
	}
	if m.closed.Load() {
		return v, redlock.ErrClosed
	}
	ran := false
	var fnErr error
	err := m.c.DoWith(ctx, m.key, m.exp, func(ctx context.Context) error {
		ran = true
		v, fnErr = fn(ctx)
		return fnErr
	}, redlock.WithTryOnce())
	switch {
	case !ran:
		var zero T
		return zero, acquireError(m.key, err)
	case err != nil && fnErr == nil:
		return v, releaseError(m.key, err)
	}
	return v, err
}
