// Package redmutex provides mutexes on a single Redis server, built on the
// redlock client with a one-master group: the Go counterparts of the Elixir
// libraries RedMutex (red_mutex) and RedisMutex (redis_mutex).
//
// Nothing here speaks Redis itself. A [Mutex] or a [Locker] owns (or
// shares) a [redlock.Client] whose Config.Servers is the one address, and
// every lock is a redlock lock: SET NX PX with a 128-bit random token,
// compare-and-delete release, drift-aware validity. With one master the
// client calls it directly (no fan-out), so the cost is that of a plain
// single-instance lock. Pass a Client with a larger group to get the same
// API over Redlock.
//
// # Mutex: one key, explicit tokens (RedMutex)
//
// A Mutex is bound to one key and one expiration, like a module that does
// "use RedMutex":
//
//	Elixir RedMutex                          redmutex
//	config :my_app, MyMutex, url:, key:,     redmutex.New(redmutex.Options{Addr:, Key:,
//	  expiration_in_seconds:                   Expiration:})
//	MyMutex.acquire_lock()                   m.Acquire(ctx) (token, error)
//	  {:error, :already_locked}                ErrAlreadyLocked
//	MyMutex.exists_lock()                    m.Exists(ctx) (bool, error)
//	MyMutex.release_lock(lock)               m.Release(ctx, token)
//	  {:error, :unlock_fail}                   ErrUnlockFailed
//	MyMutex.synchronize(fun)                 redmutex.Synchronize(ctx, m, fn) (T, error)
//
// Tokens: as in RedMutex, the token string alone releases the lock, with a
// compare-and-delete on the server (redlock's Client.ReleaseToken). A Mutex
// keeps no record of the tokens it handed out: Release works with a token
// acquired by any Mutex on the same key and server, in this process or
// another, so a lock can be handed over. Release of a token that does not
// hold the key — a wrong one, or one already released, expired, or taken
// over — reports ErrUnlockFailed and leaves the key alone: it never
// deletes a key held by another token.
//
// # Locker: WithLock on any key, waiting with a deadline (RedisMutex)
//
//	Elixir RedisMutex                        redmutex
//	{RedisMutex, redis_url: url}             redmutex.NewLocker(redmutex.LockerOptions{Addr: url})
//	RedisMutex.with_lock(key, fun)           lk.WithLock(ctx, key, fn)
//	  timeout: ms (default 40 s)               WithTimeout(d)  (default 40 s)
//	  expiry: ms (default 20 s)                WithExpiration(d)   (default 20 s)
//	  name: connection                         the Locker itself
//	RedisMutex.Error "Unable to obtain       ErrTimeout (a *TimeoutError naming the key and
//	  lock."                                   the timeout)
//
// fn returns only an error: a result goes out through a variable it
// captures, as with redlock's Client.Do.
//
// WithLock retries with a short randomized sleep until the lock is obtained
// or the timeout passes — a real deadline, where the original could spin
// for ever. Keep the timeout above the expiration, as the original advises: a
// holder that crashed without releasing then frees the key before a waiter
// gives up.
//
// # Limits
//
// A single Redis server is a single point of failure and, without
// "appendfsync always", may forget a lock when it restarts. The expiration
// is the only protection against a holder that stalls: past it, another
// holder can enter. The context that Synchronize and WithLock give fn ends
// when the lock's validity runs out; stop touching the resource then.
package redmutex
