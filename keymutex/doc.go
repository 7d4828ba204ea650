// Package keymutex provides in-process locks on keys: any number of
// independent locks, one per key, taken and released by owners.
//
// It is the Go counterpart of the Elixir Mutex library (v3). A [Mutex] plays
// the part of the mutex server and an [Owner] the part of a calling process:
//
//	Elixir                        keymutex
//	Mutex.lock(m, key)            m.TryLock(owner, key)      -> ErrBusy
//	Mutex.lock!(m, key)           m.MustLock(owner, key)     (panics)
//	Mutex.await(m, key, timeout)  m.Await(ctx, owner, key)   (ctx is the timeout)
//	Mutex.await_all(m, keys)      m.AwaitAll(ctx, owner, keys...)
//	Mutex.release(m, lock)        m.Release(lock)
//	Mutex.release (cast, v1/v2)   m.ReleaseAsync(lock)       (logs failures)
//	Mutex.goodbye(m)              m.ReleaseAll(owner)        (owner lives on)
//	process exit                  owner.Goodbye(), or the end of the context
//	                              given to NewOwnerContext
//	Mutex.give_away(m, lock, pid) m.GiveAway(lock, heir, gift)
//	{:"MUTEX-TRANSFER", ...}      <-m.Transfers(heir)
//	Mutex.under/with_lock         m.WithLock(ctx, owner, key, fn)
//	Mutex.under_all               m.WithLockAll(ctx, owner, keys, fn)
//
// # Owners
//
// An Owner stands for one actor (one goroutine, or one request handled
// sequentially), as an Elixir process does. Locks are not reentrant: a key
// that the owner already holds is busy for TryLock, and Await or AwaitAll on
// such a key fail at once with [ErrWouldDeadlock] instead of waiting for
// ever on themselves.
//
// An owner's life ends with [Owner.Goodbye], or when the context given to
// [NewOwnerContext] ends. Then every key it holds, on every Mutex, is
// released (waiters are handed the keys), its pending Await calls give up
// with [ErrOwnerGone], its transfer channels are closed, and any later lock
// attempt with it fails with ErrOwnerGone. [Mutex.ReleaseAll] is the
// non-final form: it frees the owner's keys on one Mutex and the owner stays
// usable, like Elixir's Mutex.goodbye/1 called by a process that lives on.
//
// # Waiting
//
// Waiters are woken on release without polling: each key has a first come,
// first served queue, and a released key is handed directly to the first
// waiter in its queue (no barging). A waiter whose context ends removes
// itself from the queue; if the key had just been handed to it, it passes
// the key on to the next waiter, so no release is ever lost.
//
// AwaitAll takes its keys one by one in ascending order (one global key
// order), holding the keys it already has while it waits for the next one.
// Callers that only ever hold several keys through AwaitAll (or that take
// single keys in ascending order themselves) can never deadlock. If AwaitAll
// gives up, it holds nothing.
//
// # Giving locks away
//
// [Mutex.GiveAway] moves a single-key lock to another owner, which receives a
// [Transfer] on the channel returned by [Mutex.Transfers]. The channel is
// buffered ([TransferBuffer] transfers per owner and Mutex) and the giver is
// never blocked: when the buffer is full GiveAway fails with
// [ErrTransferFull] and the giver keeps the lock. A transfer sitting unread
// in the channel already belongs to the heir: the heir's Goodbye releases it.
//
// # Errors
//
// Errors wrap one of the sentinel errors (ErrBusy, ErrNotHeld, ErrOwnerGone,
// ErrWouldDeadlock, ErrTransferFull, ErrInvalid) with %w, so they can be
// tested with errors.Is, and their text names the key(s) and the owners
// involved. Errors of a wait that ended with its context also wrap ctx.Err().
package keymutex
