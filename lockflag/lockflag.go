// Package lockflag keeps named status flags, process-wide: the Go port of
// the Elixir RedisCluster.Lock module.
//
// # Status flags, not mutual exclusion
//
// A flag says "locked" or "unlocked" to whoever looks; it excludes nobody.
// Two goroutines can both Check a flag, both see Unlocked and both Lock it:
// nothing stops the second one. Lock never waits and never fails, Unlock
// unlocks whoever locked, and flags do not nest (an inner WithLock unlocks
// the flag while an outer one still runs). Use flags to signal a state
// ("the cluster topology is being refreshed, hold off") to readers that
// poll it, for instance with CheckWithRetry. For mutual exclusion use
// sync.Mutex, or package keymutex for locks on keys.
//
// Reads take no lock: flags live in a sync.Map, whose loads of existing
// names are lock-free, like the :persistent_term table behind the Elixir
// original; locking or unlocking an existing flag is one atomic store.
//
// # Registries
//
// The package-level functions use a process-wide default [Registry] (see
// [Default]); [NewRegistry] makes independent ones, for tests or for a
// faster CheckWithRetry backoff.
package lockflag

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Status is the state of a flag.
type Status uint8

const (
	// Unlocked means the flag is free (the Elixir original's :ok). It is the zero
	// Status.
	Unlocked Status = iota
	// Locked means the flag is set (the Elixir original's :locked). It is also what
	// Check reports for an unknown name, unless told otherwise.
	Locked
)

// String returns "unlocked" or "locked".
func (s Status) String() string {
	switch s {
	case Unlocked:
		return "unlocked"
	case Locked:
		return "locked"
	default:
		return fmt.Sprintf("Status(%d)", uint8(s))
	}
}

// DefaultBackoff is the first wait of CheckWithRetry unless a Registry is
// made with WithBackoff.
const DefaultBackoff = 500 * time.Millisecond

// Forever, as the retries of CheckWithRetry, retries until the flag is
// Unlocked (the Elixir original's :infinity). Any negative count means the same.
const Forever = -1

// Registry is a set of named flags. The zero value is ready to use (with
// DefaultBackoff); a Registry must not be copied after first use. Its
// methods are safe for concurrent use.
type Registry struct {
	flags sync.Map // string -> *flag
	base  time.Duration

	// sleep waits d or until ctx ends (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error
}

// Option configures a Registry made by NewRegistry.
type Option func(*Registry)

// WithBackoff sets the first wait of CheckWithRetry (default
// DefaultBackoff, 500 ms); the later waits are 2, 4, 8 and then 16 times
// base. Tests use a few milliseconds.
func WithBackoff(base time.Duration) Option {
	return func(r *Registry) { r.base = base }
}

// NewRegistry returns an empty Registry configured by opts.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// Create creates the flag name, unlocked. Creating an existing flag unlocks
// it.
func (r *Registry) Create(name string) { r.Unlock(name) }

// Check returns the status of the flag name. For an unknown name it returns
// def[0] if given (further values are ignored), else Locked: a flag that
// was never created counts as locked.
func (r *Registry) Check(name string, def ...Status) Status {
	if v, ok := r.flags.Load(name); ok {
		return Status(v.(*flag).Load())
	}
	if len(def) > 0 {
		return def[0]
	}
	return Locked
}

// Lock sets the flag name to Locked, creating it if needed. It neither waits
// nor fails, even if the flag is locked already.
func (r *Registry) Lock(name string) { r.set(name, Locked) }

// Unlock sets the flag name to Unlocked, creating it if needed.
func (r *Registry) Unlock(name string) { r.set(name, Unlocked) }

// flag holds a Status. Setting an existing flag is one atomic store, with no
// allocation; a set racing with a Delete of the same name may land in the
// deleted flag, which is as if it had happened just before the Delete.
type flag = atomic.Uint32

func (r *Registry) set(name string, s Status) {
	if v, ok := r.flags.Load(name); ok {
		v.(*flag).Store(uint32(s))
		return
	}
	f := new(flag)
	f.Store(uint32(s))
	if v, loaded := r.flags.LoadOrStore(name, f); loaded {
		v.(*flag).Store(uint32(s))
	}
}

// Delete deletes the flag name and reports whether it existed. A deleted
// flag checks as unknown (Locked by default).
func (r *Registry) Delete(name string) bool {
	_, existed := r.flags.LoadAndDelete(name)
	return existed
}

// WithLock locks the flag name, runs fn and unlocks the flag when fn
// returns or panics (the panic goes on after the unlock; the Elixir original forgot to
// unlock on an exception). It returns fn's error. It does not wait for the
// flag to be Unlocked first: it only signals, see the package doc.
func (r *Registry) WithLock(name string, fn func() error) error {
	r.Lock(name)
	defer r.Unlock(name)
	return fn()
}

// Backoff returns the wait after the attempt-th check (from 1) of
// CheckWithRetry: base, 2×, 4×, 8× base, then 16× base for every further
// attempt; with the default base, 500 ms, 1 s, 2 s, 4 s, then 8 s.
func (r *Registry) Backoff(attempt int) time.Duration {
	base := r.base
	if base <= 0 {
		base = DefaultBackoff
	}
	return base << (min(max(attempt, 1), 5) - 1)
}

// CheckWithRetry checks the flag name until it is Unlocked, waiting
// Backoff(1), Backoff(2), … between checks, and returns the last status
// seen: Unlocked as soon as a check sees it, or Locked when the waits run
// out. An unknown name counts as Locked (Check's default).
//
// retries gives the number of waits as the Elixir original does: max(1, retries-1)
// waits, so 0, 1 and 2 all wait once, 3 waits twice, and 6 waits five times
// (0.5+1+2+4+8 = 15.5 s at the default base). A negative retries ([Forever])
// never stops retrying. It checks before the first wait and after every
// wait, so it checks max(2, retries) times at most.
//
// Difference from the Elixir original: after its last wait it does not check
// again and reports Locked even if the flag was unlocked during that wait;
// CheckWithRetry checks once more, with the same waits. So
// CheckWithRetry(name, 3) checks at 0, 0.5 and 1.5 s, where the original checks
// at 0 and 0.5 s and gives up at 1.5 s.
//
// See the package function [CheckWithRetry] for the original's form, which calls
// a function with the final status.
func (r *Registry) CheckWithRetry(name string, retries int) Status {
	s, _ := r.CheckWithRetryContext(context.Background(), name, retries)
	return s
}

// CheckWithRetryContext is CheckWithRetry whose waits end with ctx. When ctx
// ends first it returns Locked and an error that names the flag and wraps
// ctx.Err(). The first check is made even if ctx is done already.
func (r *Registry) CheckWithRetryContext(ctx context.Context, name string, retries int) (Status, error) {
	waits := max(1, retries-1)
	for attempt := 1; ; attempt++ {
		if r.Check(name) == Unlocked {
			return Unlocked, nil
		}
		if retries >= 0 && attempt > waits {
			return Locked, nil
		}
		if err := r.wait(ctx, r.Backoff(attempt)); err != nil {
			return Locked, fmt.Errorf("lockflag: waiting for flag %q to be unlocked (check %d): %w", name, attempt, err)
		}
	}
}

func (r *Registry) wait(ctx context.Context, d time.Duration) error {
	if r.sleep != nil {
		return r.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var std Registry

// Default returns the process-wide Registry used by the package-level
// functions.
func Default() *Registry { return &std }

// Create creates the flag name in the default Registry, unlocked (see
// [Registry.Create]).
func Create(name string) { std.Create(name) }

// Check returns the status of the flag name in the default Registry: def[0]
// or Locked for an unknown name (see [Registry.Check]).
func Check(name string, def ...Status) Status { return std.Check(name, def...) }

// Lock locks the flag name in the default Registry (see [Registry.Lock]).
func Lock(name string) { std.Lock(name) }

// Unlock unlocks the flag name in the default Registry (see
// [Registry.Unlock]).
func Unlock(name string) { std.Unlock(name) }

// Delete deletes the flag name from the default Registry and reports
// whether it existed (see [Registry.Delete]).
func Delete(name string) bool { return std.Delete(name) }

// WithLock runs fn with the flag name of the default Registry locked,
// unlocking it on return and on panic (see [Registry.WithLock]).
func WithLock(name string, fn func() error) error { return std.WithLock(name, fn) }

// CheckWithRetry waits, as [Registry.CheckWithRetry] does on the default
// Registry, for the flag name to be Unlocked, then calls fn once with the
// final status (Unlocked, or Locked if the retries ran out) and returns what
// fn returns: the original's check_with_retry/3. For another Registry write
// fn(r.CheckWithRetry(name, retries)).
func CheckWithRetry[T any](name string, retries int, fn func(Status) T) T {
	return fn(std.CheckWithRetry(name, retries))
}

// CheckWithRetryContext is CheckWithRetry whose waits end with ctx: fn is
// then called with Locked, and the error (naming the flag and wrapping
// ctx.Err()) is returned with fn's result.
func CheckWithRetryContext[T any](ctx context.Context, name string, retries int, fn func(Status) T) (T, error) {
	s, err := std.CheckWithRetryContext(ctx, name, retries)
	return fn(s), err
}
