package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// faultKind is one way to take a master away and bring it back.
type faultKind struct {
	name   string
	inject func(context.Context, redlocktest.Master) error
	heal   func(context.Context, redlocktest.Master) error // nil: inject is a complete event
	// keepsData: the master still has its keys after heal.
	keepsData bool
}

var (
	stopFault = faultKind{"stop",
		func(ctx context.Context, m redlocktest.Master) error { return m.Stop(ctx) },
		func(ctx context.Context, m redlocktest.Master) error { return m.Start(ctx) }, false}
	pauseFault = faultKind{"pause",
		func(ctx context.Context, m redlocktest.Master) error { return m.Pause(ctx) },
		func(ctx context.Context, m redlocktest.Master) error { return m.Unpause(ctx) }, true}
	partitionFault = faultKind{"partition",
		func(ctx context.Context, m redlocktest.Master) error { return m.Disconnect(ctx) },
		func(ctx context.Context, m redlocktest.Master) error { return m.Reconnect(ctx) }, true}
	restartAOFFault = faultKind{"restart-aof",
		func(ctx context.Context, m redlocktest.Master) error { return m.Restart(ctx, true) }, nil, true}
	restartEmptyFault = faultKind{"restart-empty",
		func(ctx context.Context, m redlocktest.Master) error { return m.Restart(ctx, false) }, nil, false}
)

func (k faultKind) injectAll(t *testing.T, ms ...redlocktest.Master) {
	t.Helper()
	for _, m := range ms {
		if err := k.inject(context.Background(), m); err != nil {
			t.Fatalf("%s %s: %v", k.name, m.Name(), err)
		}
	}
}

func (k faultKind) healAll(t *testing.T, ms ...redlocktest.Master) {
	t.Helper()
	if k.heal == nil {
		return
	}
	for _, m := range ms {
		if err := k.heal(context.Background(), m); err != nil {
			t.Fatalf("heal %s of %s: %v", m.Name(), k.name, err)
		}
	}
}

// TestMinorityFault: with one master of three stopped, paused, partitioned
// or restarted, Lock, Extend and Release keep working (rules 2, 4, 6);
// after the fault heals the client uses the master again within
// ReconnectInterval + slack and new locks land on it; a persisted master
// still has the keys it had.
func TestMinorityFault(t *testing.T) {
	f := startContainers(t, 1, 3)
	ms := masters(f, 0)
	ctx := context.Background()

	for i, k := range []faultKind{stopFault, pauseFault, partitionFault, restartAOFFault, restartEmptyFault} {
		t.Run(k.name, func(t *testing.T) {
			heal(t, f)
			c := newClient(t, faultConfig(f))
			victim := ms[(i+1)%3]
			var healthy []redlocktest.Master
			for _, m := range ms {
				if m != victim {
					healthy = append(healthy, m)
				}
			}

			// A lock taken before the fault, on all three masters.
			pre, err := c.TryLock(ctx, "pre/"+k.name, 20*time.Second)
			if err != nil {
				t.Fatalf("TryLock before the fault: %v", err)
			}
			eventually(t, slack, "pre-fault lock on every master", func() bool {
				for _, m := range ms {
					if v, _ := keyOn(t, m, pre.Resource()); v != pre.Token() {
						return false
					}
				}
				return true
			})

			k.injectAll(t, victim)

			// Acquire during the fault: a quorum of two answers.
			var l *redlock.Lock
			within(t, faultNodeTimeout+slack, "TryLock with a minority down", func() {
				l, err = c.TryLock(ctx, "during/"+k.name, 5*time.Second)
			})
			if err != nil {
				t.Fatalf("TryLock with %s %s: %v", k.name, victim.Name(), err)
			}
			if !l.Valid() || time.Until(l.Until()) > 5*time.Second {
				t.Fatalf("Until %v is not within the 5s TTL", time.Until(l.Until()))
			}
			eventually(t, slack, "the lock on both healthy masters", func() bool {
				for _, m := range healthy {
					if v, _ := keyOn(t, m, l.Resource()); v != l.Token() {
						return false
					}
				}
				return true
			})

			// Extend, both the lock taken during the fault and the one before.
			before := l.Until()
			within(t, faultNodeTimeout+slack, "Extend with a minority down", func() { err = l.Extend(ctx, 10*time.Second) })
			if err != nil {
				t.Fatalf("Extend with %s %s: %v", k.name, victim.Name(), err)
			}
			if !l.Until().After(before) {
				t.Fatalf("Extend did not move Until: %v → %v", before, l.Until())
			}
			if err := pre.Extend(ctx, 20*time.Second); err != nil {
				t.Fatalf("Extend of the pre-fault lock with %s %s: %v", k.name, victim.Name(), err)
			}

			// Release: a majority deletes.
			within(t, faultNodeTimeout+slack, "Release with a minority down", func() { err = l.Release(ctx) })
			if err != nil {
				t.Fatalf("Release with %s %s: %v", k.name, victim.Name(), err)
			}
			// Release returns at quorum: the last delete may still be on its way.
			eventually(t, slack, "the released key gone from both healthy masters", func() bool {
				for _, m := range healthy {
					if _, ok := keyOn(t, m, l.Resource()); ok {
						return false
					}
				}
				return true
			})

			if k.heal != nil {
				// Keep the fault until the client has noticed it, so that the
				// reconnection below is exercised for every kind.
				noticed := eventually(t, faultNodeTimeout+slack, "the client marks "+victim.Name()+" down", func() bool {
					return !stat(t, c, victim.Addr()).Up
				})
				t.Logf("%s: the client marked %s down after %v more", k.name, victim.Name(), noticed.Round(time.Millisecond))

				// Rule 6: while down, the master votes "no" at once: attempts
				// send it nothing (its command counter stands still).
				sent := stat(t, c, victim.Addr()).Commands
				for j := range 5 {
					l, err := c.TryLock(ctx, fmt.Sprintf("while-down/%s/%d", k.name, j), 5*time.Second)
					if err != nil {
						t.Fatalf("TryLock while %s is marked down: %v", victim.Name(), err)
					}
					_ = l.Release(ctx)
				}
				if st := stat(t, c, victim.Addr()); !st.Up && st.Commands != sent {
					t.Errorf("%s is marked down but was sent %d commands", victim.Name(), st.Commands-sent)
				}
			}
			k.healAll(t, victim)
			healed := time.Now()

			// The victim's data across the fault.
			v, ok := keyOn(t, victim, pre.Resource())
			switch {
			case k.keepsData && v != pre.Token():
				t.Errorf("%s kept its data but has %q (present %v) for the pre-fault lock, want its token", victim.Name(), v, ok)
			case !k.keepsData && ok:
				t.Errorf("%s came back empty but has %q for the pre-fault lock", victim.Name(), v)
			}

			// Reconnection: the client uses the master again.
			took := waitLandsOn(t, c, victim, "after/"+k.name, healed, reconnectInterval+slack)
			t.Logf("%s: a new lock landed on %s %v after it healed (ReconnectInterval %v)", k.name, victim.Name(), took.Round(time.Millisecond), reconnectInterval)

			// Rule 4: an Extend now reaches the victim too, and where the key
			// is gone (the master came back empty) it is not re-created.
			if err := pre.Extend(ctx, 20*time.Second); err != nil {
				t.Fatalf("Extend of the pre-fault lock after the fault: %v", err)
			}
			if v, ok := keyOn(t, victim, pre.Resource()); !k.keepsData && ok {
				t.Errorf("Extend re-created the key on %s, which had come back empty: %q", victim.Name(), v)
			}
			if locked, err := c.IsLocked(ctx, pre.Resource()); err != nil || !locked {
				t.Errorf("IsLocked of the pre-fault lock: %v, %v", locked, err)
			}
			if err := pre.Release(ctx); err != nil {
				t.Fatalf("Release of the pre-fault lock after the fault: %v", err)
			}
			for _, s := range c.MasterStats() {
				if !s.Up {
					t.Errorf("master %s still down after the fault healed: %+v", s.Addr, s)
				}
			}
		})
	}

	// Rule 6: startup succeeds with a master down; it is used once it is back.
	t.Run("startup-with-a-master-down", func(t *testing.T) {
		heal(t, f)
		victim := ms[2]
		stopFault.injectAll(t, victim)
		var c *redlock.Client
		within(t, dialTimeout+slack, "New with a master down", func() { c = newClient(t, faultConfig(f)) })
		if stat(t, c, victim.Addr()).Up {
			t.Errorf("MasterStats: %s is stopped but reported up", victim.Name())
		}
		l, err := c.TryLock(ctx, "startup", 5*time.Second)
		if err != nil {
			t.Fatalf("TryLock with a master down since startup: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		stopFault.healAll(t, victim)
		took := waitLandsOn(t, c, victim, "startup-after", time.Now(), reconnectInterval+slack)
		t.Logf("a lock landed on %s %v after it started", victim.Name(), took)
	})

	// A paused master accepts the connection but never answers: New waits
	// for it at most about DialTimeout + NodeTimeout, then goes on without it.
	t.Run("startup-with-a-master-paused", func(t *testing.T) {
		heal(t, f)
		victim := ms[0]
		pauseFault.injectAll(t, victim)
		var c *redlock.Client
		took := within(t, dialTimeout+faultNodeTimeout+slack, "New with a master paused", func() { c = newClient(t, faultConfig(f)) })
		t.Logf("New with a paused master returned after %v", took.Round(time.Millisecond))
		if stat(t, c, victim.Addr()).Up {
			t.Errorf("MasterStats: %s is paused but reported up", victim.Name())
		}
		l, err := c.TryLock(ctx, "startup-paused", 5*time.Second)
		if err != nil {
			t.Fatalf("TryLock with a master paused since startup: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		pauseFault.healAll(t, victim)
		took = waitLandsOn(t, c, victim, "startup-paused-after", time.Now(), reconnectInterval+dialTimeout+faultNodeTimeout+slack)
		t.Logf("a lock landed on %s %v after it resumed", victim.Name(), took.Round(time.Millisecond))
	})
}

// TestDoContextEndsWhenLockLost: the context Do gives fn ends (cause
// ErrLockLost) when the lock is lost to a fault, within the lock's validity
// plus slack, even with WithAutoExtend: when a majority is gone extensions
// fail and the validity runs out; when a majority restarted empty and
// another client took the resource, an extension finds it held by someone
// else.
func TestDoContextEndsWhenLockLost(t *testing.T) {
	f := startContainers(t, 1, 3)
	ms := masters(f, 0)
	ctx := context.Background()
	const ttl = 900 * time.Millisecond

	for _, tc := range []struct {
		name  string
		fault func(t *testing.T)
	}{
		{"majority-stopped", func(t *testing.T) { stopFault.injectAll(t, ms[1], ms[2]) }},
		{"majority-restarted-empty-and-taken", func(t *testing.T) {
			restartEmptyFault.injectAll(t, ms[1], ms[2])
			other := newClient(t, f.Config())
			if _, err := other.TryLock(ctx, "do/"+t.Name(), 10*time.Second); err != nil {
				t.Errorf("another client could not take the forgotten lock: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heal(t, f)
			c := newClient(t, f.Config())
			started := make(chan struct{})
			type lost struct {
				cause error
				at    time.Time
			}
			lostCh := make(chan lost, 1)
			done := make(chan error, 1)
			go func() {
				done <- c.DoWith(ctx, "do/"+t.Name(), ttl, func(fctx context.Context) error {
					close(started)
					select {
					case <-fctx.Done():
						lostCh <- lost{context.Cause(fctx), time.Now()}
						return nil
					case <-time.After(ttl + 2*slack):
						return errors.New("fn's context was not cancelled")
					}
				}, redlock.WithAutoExtend(), redlock.WithTryOnce())
			}()
			select {
			case <-started:
			case err := <-done:
				t.Fatalf("Do did not run fn: %v", err)
			}
			time.Sleep(ttl / 2) // at least one extension succeeds first
			faultAt := time.Now()
			tc.fault(t)
			faulted := time.Now()

			var l lost
			select {
			case l = <-lostCh:
			case <-time.After(ttl + 3*slack):
				t.Fatalf("fn's context did not end within %v of the fault", ttl+3*slack)
			}
			if !errors.Is(l.cause, redlock.ErrLockLost) {
				t.Fatalf("fn's context ended with cause %v, want ErrLockLost", l.cause)
			}
			// Validity runs at most ttl past the last successful extension,
			// which happened before the fault operations finished.
			if late := l.at.Sub(faulted); late > ttl+slack {
				t.Errorf("fn's context ended %v after the fault, bound %v", late, ttl+slack)
			}
			t.Logf("fn's context ended %v after the fault began (cause: %v)", l.at.Sub(faultAt).Round(time.Millisecond), l.cause)
			select {
			case err := <-done:
				t.Logf("Do returned: %v", err)
			case <-time.After(nodeTimeout + slack):
				t.Fatal("Do did not return after fn returned")
			}
		})
	}
}

// TestMajorityFault: with two masters of three stopped, paused or
// partitioned, TryLock fails at once with an error naming them, Lock gives
// up when its context ends, and Extend and Release fail with an error naming
// them instead of hanging (rules 2, 4, 5, 6). After the fault heals no key of
// the failed attempts is left on any master (rule 3) and locks work again.
func TestMajorityFault(t *testing.T) {
	f := startContainers(t, 1, 3)
	ms := masters(f, 0)
	ctx := context.Background()

	for _, k := range []faultKind{stopFault, pauseFault, partitionFault} {
		t.Run(k.name, func(t *testing.T) {
			heal(t, f)
			c := newClient(t, faultConfig(f))
			victims := ms[1:]

			pre, err := c.TryLock(ctx, "pre/"+k.name, 20*time.Second)
			if err != nil {
				t.Fatalf("TryLock before the fault: %v", err)
			}

			k.injectAll(t, victims...)

			// TryLock: not obtained, naming the masters, within about one NodeTimeout.
			within(t, faultNodeTimeout+slack, "TryLock with a majority down", func() {
				_, err = c.TryLock(ctx, "fail/"+k.name, 5*time.Second)
			})
			if !errors.Is(err, redlock.ErrNotObtained) {
				t.Fatalf("TryLock with a majority %s: %v, want ErrNotObtained", k.name, err)
			}
			checkNamesFailed(t, err, addrsOf(victims...)...)
			t.Logf("TryLock: %v", err)

			// Lock with many retries: the caller's context bounds it (rule 5).
			rc := newClient(t, redlock.Config{NodeTimeout: faultNodeTimeout, Servers: f.Addrs()[0]})
			lctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
			within(t, 600*time.Millisecond+slack, "Lock with retries until the context ends", func() {
				_, err = rc.Lock(lctx, "fail-retry/"+k.name, 5*time.Second)
			})
			cancel()
			if !errors.Is(err, redlock.ErrNotObtained) {
				t.Fatalf("Lock: %v, want ErrNotObtained", err)
			}

			// Extend: an error naming the masters, not ErrNotHeld, validity not extended.
			before := pre.Until()
			within(t, faultNodeTimeout+slack, "Extend with a majority down", func() { err = pre.Extend(ctx, 20*time.Second) })
			if err == nil || errors.Is(err, redlock.ErrNotHeld) {
				t.Fatalf("Extend with a majority %s: %v, want a *QuorumError", k.name, err)
			}
			checkNamesFailed(t, err, addrsOf(victims...)...)
			if pre.Until().After(before) {
				t.Errorf("a failed Extend moved Until from %v to %v", before, pre.Until())
			}

			// IsLocked: neither a majority yes nor a majority no.
			within(t, faultNodeTimeout+slack, "IsLocked with a majority down", func() { _, err = c.IsLocked(ctx, pre.Resource()) })
			if err == nil {
				t.Fatalf("IsLocked with a majority %s: no error", k.name)
			}
			checkNamesFailed(t, err, addrsOf(victims...)...)

			// Release: an error naming the masters.
			within(t, faultNodeTimeout+slack, "Release with a majority down", func() { err = pre.Release(ctx) })
			if err == nil || errors.Is(err, redlock.ErrNotHeld) {
				t.Fatalf("Release with a majority %s: %v, want a *QuorumError", k.name, err)
			}
			checkNamesFailed(t, err, addrsOf(victims...)...)

			// Lock keeps retrying while the fault lasts and obtains the lock
			// once it heals (rules 5 and 6).
			retrying := newClient(t, redlock.Config{NodeTimeout: faultNodeTimeout, Servers: f.Addrs()[0], RetryStrategy: redlock.LinearBackoff(1000, 50*time.Millisecond)})
			type result struct {
				l   *redlock.Lock
				err error
			}
			got := make(chan result, 1)
			lctx, lcancel := context.WithTimeout(ctx, 300*time.Millisecond+reconnectInterval+2*slack)
			defer lcancel()
			go func() {
				l, err := retrying.Lock(lctx, "retry-through/"+k.name, 5*time.Second)
				got <- result{l, err}
			}()
			time.Sleep(300 * time.Millisecond)

			healing := time.Now()
			k.healAll(t, victims...)
			healed := time.Now()

			r := <-got
			if r.err != nil {
				t.Fatalf("Lock retrying through the fault: %v", r.err)
			}
			t.Logf("%s: Lock retrying through the fault obtained the lock %v after healing began (healing took %v)",
				k.name, time.Since(healing).Round(time.Millisecond), healed.Sub(healing).Round(time.Millisecond))
			if err := r.l.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}

			// The failed attempts left no key anywhere, including on the
			// masters whose SET may have landed late (rule 3).
			took := eventually(t, reconnectInterval+slack, "no key of a failed attempt on any master", func() bool {
				for _, m := range ms {
					for _, key := range []string{"fail/" + k.name, "fail-retry/" + k.name} {
						if _, ok := keyOn(t, m, key); ok {
							return false
						}
					}
				}
				return true
			})
			t.Logf("%s: failed attempts cleaned up everywhere %v after healing", k.name, took)

			for _, v := range victims {
				waitLandsOn(t, c, v, "after/"+k.name+"/"+v.Name(), healed, reconnectInterval+slack)
			}
		})
	}
}

// TestFailedAttemptLeavesNoKey: rule 3. A failed attempt releases its key
// on every master of the group, including masters that timed out (their SET
// lands when they resume) and when the caller's context ended mid-attempt;
// it never deletes another holder's key.
func TestFailedAttemptLeavesNoKey(t *testing.T) {
	f := startContainers(t, 1, 3)
	ms := masters(f, 0)
	ctx := context.Background()

	noKeyAnywhere := func(t *testing.T, key string, except redlocktest.Master) {
		t.Helper()
		took := eventually(t, reconnectInterval+slack, "no key of the failed attempt on any master", func() bool {
			for _, m := range ms {
				if m == except {
					continue
				}
				if _, ok := keyOn(t, m, key); ok {
					return false
				}
			}
			return true
		})
		t.Logf("no key left %v after healing", took)
	}

	t.Run("busy-and-a-paused-master", func(t *testing.T) {
		heal(t, f)
		c := newClient(t, f.Config())
		const key = "busy-paused"
		if _, err := ms[0].Do(ctx, "SET", key, "someone-else", "PX", 30000); err != nil {
			t.Fatal(err)
		}
		pauseFault.injectAll(t, ms[2])
		_, err := c.TryLock(ctx, key, 10*time.Second)
		if !errors.Is(err, redlock.ErrNotObtained) {
			t.Fatalf("TryLock: %v, want ErrNotObtained", err)
		}
		checkNamesFailed(t, err, ms[2].Addr())
		pauseFault.healAll(t, ms[2])
		noKeyAnywhere(t, key, ms[0])
		if v, _ := keyOn(t, ms[0], key); v != "someone-else" {
			t.Fatalf("the cleanup touched another holder's key: %q", v)
		}
	})

	t.Run("caller-context-ends-mid-attempt", func(t *testing.T) {
		heal(t, f)
		c := newClient(t, f.Config())
		const key = "cancelled"
		pauseFault.injectAll(t, ms[1], ms[2])
		cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		_, err := c.TryLock(cctx, key, 10*time.Second)
		cancel()
		if !errors.Is(err, redlock.ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("TryLock with a cancelled context: %v, want ErrNotObtained joined with DeadlineExceeded", err)
		}
		// The master that answered must be cleaned at once, paused or not.
		eventually(t, slack, "the key released on the master that said yes", func() bool {
			_, ok := keyOn(t, ms[0], key)
			return !ok
		})
		pauseFault.healAll(t, ms[1], ms[2])
		noKeyAnywhere(t, key, nil)
	})

	t.Run("partitioned-majority", func(t *testing.T) {
		heal(t, f)
		c := newClient(t, f.Config())
		const key = "partitioned"
		partitionFault.injectAll(t, ms[0], ms[1])
		_, err := c.TryLock(ctx, key, 10*time.Second)
		if !errors.Is(err, redlock.ErrNotObtained) {
			t.Fatalf("TryLock: %v, want ErrNotObtained", err)
		}
		checkNamesFailed(t, err, ms[0].Addr(), ms[1].Addr())
		partitionFault.healAll(t, ms[0], ms[1])
		noKeyAnywhere(t, key, nil)
	})
}

// TestRoutingWithDegradedGroup: rule 1 under faults. Routing does not depend
// on the order of groups or masters in the config; with the majority of one
// group down, resources routed to the other groups lock, extend and release
// as usual, and those routed to the degraded group fail fast with an error
// naming its masters only.
func TestRoutingWithDegradedGroup(t *testing.T) {
	f := startContainers(t, 3, 3)
	ctx := context.Background()
	addrs := f.Addrs()
	c := newClient(t, f.Config())

	// Another service with the same fleet listed in another order.
	var shuffled [][]string
	for g := len(addrs) - 1; g >= 0; g-- {
		grp := append([]string(nil), addrs[g]...)
		grp[0], grp[len(grp)-1] = grp[len(grp)-1], grp[0]
		shuffled = append(shuffled, grp)
	}
	c2 := newClient(t, redlock.Config{Cluster: shuffled})
	groupOf := make(map[string]int)
	for g, grp := range addrs {
		for _, a := range grp {
			groupOf[a] = g
		}
	}
	byGroup := make([][]string, len(addrs))
	for i := range 3000 {
		res := fmt.Sprintf("route/%d", i)
		r1, r2 := c.Route(res), c2.Route(res)
		g1, g2 := groupOf[r1[0]], groupOf[r2[0]]
		if g1 != g2 {
			t.Fatalf("%q routes to group %d, or %d with the config in another order", res, g1, g2)
		}
		if len(byGroup[g1]) < 4 {
			byGroup[g1] = append(byGroup[g1], res)
		}
	}
	for g, gi := range c.Groups() {
		if gi.Share > 1.3/float64(len(addrs)) {
			t.Errorf("group %d carries %.1f%% of the ring, more than 1.3 × average", g, 100*gi.Share)
		}
		if len(byGroup[g]) < 4 {
			t.Fatalf("group %d got only %d of 3000 resources", g, len(byGroup[g]))
		}
	}

	const degraded = 1
	for _, k := range []faultKind{stopFault, pauseFault} {
		t.Run(k.name, func(t *testing.T) {
			heal(t, f)
			victims := masters(f, degraded)[:2]
			k.injectAll(t, victims...)

			for g, resources := range byGroup {
				for _, res := range resources {
					var l *redlock.Lock
					var err error
					within(t, nodeTimeout+slack, "TryLock", func() { l, err = c.TryLock(ctx, res, 5*time.Second) })
					if g == degraded {
						if !errors.Is(err, redlock.ErrNotObtained) {
							t.Fatalf("TryLock %q on the degraded group: %v, want ErrNotObtained", res, err)
						}
						qe := quorumErr(t, err)
						for _, v := range qe.Votes {
							if groupOf[v.Addr] != degraded {
								t.Errorf("the error for %q names %s of group %d", res, v.Addr, groupOf[v.Addr])
							}
						}
						checkNamesFailed(t, err, addrsOf(victims...)...)
						continue
					}
					if err != nil {
						t.Fatalf("TryLock %q on healthy group %d while group %d is degraded: %v", res, g, degraded, err)
					}
					if locked, err := c.IsLocked(ctx, res); err != nil || !locked {
						t.Errorf("IsLocked %q = %v, %v", res, locked, err)
					}
					if err := l.Extend(ctx, 5*time.Second); err != nil {
						t.Errorf("Extend %q on healthy group %d: %v", res, g, err)
					}
					if err := l.Release(ctx); err != nil {
						t.Errorf("Release %q on healthy group %d: %v", res, g, err)
					}
				}
			}
			for _, s := range c.MasterStats() {
				victim := s.Addr == victims[0].Addr() || s.Addr == victims[1].Addr()
				if s.Up == victim {
					t.Errorf("MasterStats: %s (group %d) Up=%v", s.Addr, s.Group, s.Up)
				}
			}

			k.healAll(t, victims...)
			healed := time.Now()
			for _, v := range victims {
				waitLandsOn(t, c, v, "after/"+k.name+"/"+v.Name(), healed, reconnectInterval+slack)
			}
			for _, res := range byGroup[degraded] {
				l, err := c.TryLock(ctx, res, 5*time.Second)
				if err != nil {
					t.Fatalf("TryLock %q after group %d healed: %v", res, degraded, err)
				}
				_ = l.Release(ctx)
			}
		})
	}
}
