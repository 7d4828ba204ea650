package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// TestDemoUnsafeRestartWithoutPersistence is a DEMONSTRATION of the limit
// the README documents, not a property of the client: when a majority of a
// group restarts without persistence while a lock is held, the masters forget
// it and a second client obtains the same resource while the first holder is
// still within its validity. Both outcomes are asserted, so the warning is
// backed by a reproduction: without persistence two holders exist; with
// "appendonly yes, appendfsync always" (Restart with persist) the second
// client is refused.
func TestDemoUnsafeRestartWithoutPersistence(t *testing.T) {
	f := startContainers(t, 1, 3)
	ms := masters(f, 0)
	ctx := context.Background()
	const resource = "demo/unsafe-restart"
	const ttl = 30 * time.Second // A stays well within validity throughout

	run := func(t *testing.T, persist bool) (a, b *redlock.Lock, errB error) {
		heal(t, f)
		clientA := newClient(t, f.Config()) // service A
		a, err := clientA.TryLock(ctx, resource, ttl)
		if err != nil {
			t.Fatalf("A: TryLock: %v", err)
		}
		eventually(t, time.Second, "A's key on all three masters", func() bool {
			for _, m := range ms {
				if v, _ := keyOn(t, m, resource); v != a.Token() {
					return false
				}
			}
			return true
		})
		for _, m := range ms[:2] {
			if err := m.Restart(ctx, persist); err != nil {
				t.Fatalf("restart %s (persist=%v): %v", m.Name(), persist, err)
			}
		}
		if !a.Valid() {
			t.Fatalf("A's validity ran out during the restarts (%v): the demonstration needs A still valid", a.Until())
		}
		// Service B connects now (its connections are fresh, so all three
		// masters answer its first attempt: the outcome is conclusive).
		clientB := newClient(t, f.Config())
		b, errB = clientB.TryLock(ctx, resource, ttl)
		return a, b, errB
	}

	t.Run("without-persistence-two-holders", func(t *testing.T) {
		a, b, err := run(t, false)
		if err != nil {
			t.Fatalf("expected the unsafe outcome (B obtains the lock A still holds), but B was refused: %v", err)
		}
		now := time.Now()
		if !now.Before(a.Until()) || !now.Before(b.Until()) || a.Token() == b.Token() {
			t.Fatalf("expected two valid holders: A until %v, B until %v, now %v", a.Until(), b.Until(), now)
		}
		t.Logf("UNSAFE, as documented: A (token %s) is valid for %v more and B (token %s) for %v: two holders of %q",
			a.Token(), time.Until(a.Until()).Round(time.Millisecond), b.Token(), time.Until(b.Until()).Round(time.Millisecond), resource)
		for _, m := range ms {
			v, _ := keyOn(t, m, resource)
			owner := "A"
			if v == b.Token() {
				owner = "B"
			}
			t.Logf("  %s holds %s's token", m.Name(), owner)
		}
		// A only learns it lost the lock when it next talks to the masters
		// (and once its client has reconnected to the restarted ones).
		err = retry(t, slack, func() error { return a.Extend(ctx, ttl) },
			func(err error) bool { return errors.Is(err, redlock.ErrNotHeld) })
		t.Logf("A's Extend: %v", err)
		if err := b.Release(ctx); err != nil {
			t.Errorf("B's Release: %v", err)
		}
	})

	t.Run("with-AOF-always-refused", func(t *testing.T) {
		a, b, err := run(t, true)
		if err == nil {
			t.Fatalf("with persistence B must be refused, but it got the lock (token %s) while A (token %s) holds it", b.Token(), a.Token())
		}
		if !errors.Is(err, redlock.ErrNotObtained) {
			t.Fatalf("B: %v, want ErrNotObtained", err)
		}
		if qe := quorumErr(t, err); len(qe.Failed()) != 0 || qe.Yes() != 0 {
			t.Fatalf("B's refusal is not conclusive (want three \"no\" votes): %v", err)
		}
		for _, m := range ms {
			if v, _ := keyOn(t, m, resource); v != a.Token() {
				t.Errorf("%s lost A's key across a persisted restart: %q", m.Name(), v)
			}
		}
		t.Logf("SAFE: with persistence B is refused: %v", err)
		// A's client notices the restarts on its next command; Release then
		// succeeds once it has reconnected.
		retry(t, slack, func() error { return a.Release(ctx) }, func(err error) bool { return err == nil })
	})
}

// retry calls fn until done(its error) or bound passes (then the test
// fails), and returns the last error.
func retry(t *testing.T, bound time.Duration, fn func() error, done func(error) bool) error {
	t.Helper()
	t0 := time.Now()
	for {
		err := fn()
		if done(err) {
			return err
		}
		if time.Since(t0) > bound {
			t.Fatalf("not done within %v; last error: %v", bound, err)
		}
		time.Sleep(reconnectInterval)
	}
}
