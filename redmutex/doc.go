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
// Tokens: RedMutex releases by the token string alone, with a
// compare-and-delete script. Here the redlock Lock handle is what releases,
// so a Mutex remembers the handle of every token it handed out until the
// token is released or its key's expiration has passed (the map is pruned
// on every Acquire and Release; since the key can be held by one token at a
// time, it stays tiny). Release of a token this Mutex did not hand out — one
// acquired by another process, another Mutex value, or already released or
// expired — reports ErrUnlockFailed without touching Redis: it never
// deletes a key it cannot prove to own.
//
// # Locker: WithLock on any key, waiting with a deadline (RedisMutex)
//
//	Elixir RedisMutex                        redmutex
//	{RedisMutex, redis_url: url}             redmutex.NewLocker(redmutex.LockerOptions{Addr: url})
//	RedisMutex.with_lock(key, fun)           lk.WithLock(ctx, key, fn)
//	  timeout: ms (default 40 s)               WithTimeout(d)  (default 40 s)
//	  expiry: ms (default 20 s)                WithExpiry(d)   (default 20 s)
//	  name: connection                         the Locker itself
//	RedisMutex.Error "Unable to obtain       ErrTimeout (a *TimeoutError naming the key and
//	  lock."                                   the timeout)
//
// fn returns only an error: a result goes out through a variable it
// captures, as with redlock's Client.Do.
//
// WithLock retries with a short randomized sleep until the lock is obtained
// or the timeout passes — a real deadline, where the original could spin
// for ever. Keep the timeout above the expiry, as the original advises: a
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
