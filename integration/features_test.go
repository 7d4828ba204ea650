package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/integration/safety"
	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// The fault suites of Await, LockAll and Fencing on redis-server process
// fleets. Each hold is kept as a safety.Record (from the moment the call
// returned the lock to the moment the holder was done with it, before its
// release) and safety.Check looks for two holds of one resource within
// their validity, and for fences out of order.

// holdLog collects the holds of a test, from any goroutine.
type holdLog struct {
	mu   sync.Mutex
	recs []safety.Record
}

// add records that who held resource with token (unique per record) from
// got until now, valid until until, after asking at asked.
func (h *holdLog) add(who, resource, token string, fence int64, asked, got, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, safety.Record{Holder: who, Resource: resource, Attempt: asked.UnixNano(), Got: true,
		Token: token, Start: got.UnixNano(), End: time.Now().UnixNano(), Until: until.UnixNano(), Fence: fence})
}

// lock records a hold of l.
func (h *holdLog) lock(who string, l *redlock.Lock, asked, got time.Time) {
	h.add(who, l.Resource(), l.Token(), l.Fence(), asked, got, l.Until())
}

// check fails the test on any overlap or fence inversion and returns the report.
func (h *holdLog) check(t *testing.T, name string) safety.Report {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := safety.Check(name, h.recs, nil)
	for _, o := range rep.Overlaps {
		t.Errorf("%s: TWO HOLDERS: %v", name, o)
	}
	if rep.DuplicateTokens != 0 {
		t.Errorf("%s: %d tokens handed out twice", name, rep.DuplicateTokens)
	}
	if rep.FenceInversions != 0 {
		t.Errorf("%s: %d holds got a fence not above that of a hold obtained before they asked", name, rep.FenceInversions)
	}
	return rep
}

// minorityFault is a fault a test injects into masters and heals.
type minorityFault struct {
	name         string
	inject, heal func(redlocktest.Master, context.Context) error // method expressions
}

var killAndPause = []minorityFault{
	{"killed", redlocktest.Master.Stop, redlocktest.Master.Start},
	{"paused", redlocktest.Master.Pause, redlocktest.Master.Unpause},
}

// apply runs op on every master of ms in parallel and fails the test on error.
func apply(t *testing.T, what string, op func(redlocktest.Master, context.Context) error, ms ...redlocktest.Master) {
	t.Helper()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = op(m, context.Background()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestAwaitUnderMinorityFault: three clients wait (Await) for a resource
// held by a fourth; two of the group's five masters are killed or paused
// while they wait (or none: the baseline), then the holder releases. Every
// waiter gets the lock in turn, three times each — woken by the release
// announced by the healthy masters, well before the holder's 30 s TTL — and
// no two ever hold it at once; after the masters heal, waiting works as
// before.
func TestAwaitUnderMinorityFault(t *testing.T) {
	f := startProcesses(t, 1, 5)
	ms := masters(f, 0)
	healthy := minorityFault{"healthy (baseline)",
		func(redlocktest.Master, context.Context) error { return nil },
		func(redlocktest.Master, context.Context) error { return nil }}
	for _, fault := range append([]minorityFault{healthy}, killAndPause...) {
		t.Run(fault.name, func(t *testing.T) {
			defer heal(t, f)
			res := "await-fault/" + fault.name
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			holder := newClient(t, faultConfig(f))
			var log holdLog
			hAsked := time.Now()
			l, err := holder.TryLock(ctx, res, 30*time.Second)
			if err != nil {
				t.Fatalf("holder: %v", err)
			}
			hGot := time.Now()

			const waiters, rounds = 3, 3
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }() // on a failure, end the waiters before the test ends
			var mu sync.Mutex
			done, afterHeal := 0, make(chan struct{})
			var longest time.Duration // the longest single wait (a missed wake-up waits out the 5 s TTL)
			for w := range waiters {
				c := newClient(t, faultConfig(f))
				who := fmt.Sprintf("waiter %d", w)
				wg.Go(func() {
					for r := range rounds + 1 {
						if r == rounds { // one more round with the masters healed
							select {
							case <-afterHeal:
							case <-ctx.Done():
								return
							}
						}
						asked := time.Now()
						wl, err := c.Await(ctx, res, 5*time.Second)
						if err != nil {
							t.Errorf("%s, round %d: Await: %v", who, r, err)
							return
						}
						got := time.Now()
						mu.Lock()
						longest = max(longest, got.Sub(asked))
						mu.Unlock()
						time.Sleep(2 * time.Millisecond)
						log.lock(who, wl, asked, got)
						if err := wl.Release(ctx); err != nil {
							t.Errorf("%s: release: %v", who, err)
						}
						mu.Lock()
						done++
						mu.Unlock()
					}
				})
			}
			time.Sleep(200 * time.Millisecond) // let them start waiting (a later start is only an easier case)
			apply(t, fault.name, fault.inject, ms[3], ms[4])
			log.lock("holder", l, hAsked, hGot)
			if err := l.Release(ctx); err != nil {
				t.Fatalf("holder's release with 2 of 5 %s: %v", fault.name, err)
			}
			took := eventually(t, 25*time.Second, "every waiter served 3 times with 2 of 5 masters "+fault.name, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return done == waiters*rounds
			})
			t.Logf("2 of 5 masters %s: %d acquisitions through Await in %v after the holder's release (its TTL: 30s)",
				fault.name, waiters*rounds, took.Round(time.Millisecond))
			apply(t, "heal", fault.heal, ms[3], ms[4])
			close(afterHeal)
			wg.Wait()
			t.Logf("longest single Await: %v", longest.Round(time.Millisecond))
			if rep := log.check(t, "Await, 2 of 5 "+fault.name); rep.Holds != waiters*(rounds+1)+1 {
				t.Errorf("%d holds, want %d", rep.Holds, waiters*(rounds+1)+1)
			}
		})
	}
}

// perGroup returns n resources routed to each group of f (by c's routing),
// group by group.
func perGroup(t *testing.T, c *redlock.Client, f redlocktest.Fleet, prefix string, n int) [][]string {
	t.Helper()
	out := make([][]string, f.Groups())
	left := n * f.Groups()
	for i := 0; left > 0; i++ {
		if i > 100_000 {
			t.Fatalf("could not route %d resources to each of %d groups", n, f.Groups())
		}
		res := fmt.Sprintf("%s/%d", prefix, i)
		for g := range out {
			if len(out[g]) < n && slices.Equal(c.Route(res), f.Addrs()[g]) {
				out[g] = append(out[g], res)
				left--
			}
		}
	}
	return out
}

// keysGone waits until, on every master of every resource's group, the
// resource's key is absent, and fails the test if that does not happen
// within bound (a late SET of a paused master must be cleaned up once it
// resumes).
func keysGone(t *testing.T, c *redlock.Client, f redlocktest.Fleet, resources []string, bound time.Duration) {
	t.Helper()
	for _, res := range resources {
		for _, addr := range c.Route(res) {
			m := f.ByAddr(addr)
			eventually(t, bound, fmt.Sprintf("%s gone from %s", res, m.Name()), func() bool {
				_, ok := keyOn(t, m, res)
				return !ok
			})
		}
	}
}

// TestLockAllUnderMinorityFault: LockAll over 6 resources spread over 3
// groups of 3 masters, with one master of every group killed or paused:
//
//   - it obtains all of them, Extend and Release act on all;
//   - with one of them busy it fails (ErrNotObtained) and leaves nothing
//     locked on any master, also on the faulted ones once they are back
//     (a paused master's SET lands when it resumes, and must be undone):
//     once the busy lock is released, no key of the set is left anywhere;
//   - with a majority of one group paused it fails, naming it unavailable,
//     and leaves nothing behind in any group;
//   - three clients locking overlapping sets listed in different orders,
//     while a rotating minority of every group is paused, all make progress
//     and no resource ever has two holders.
func TestLockAllUnderMinorityFault(t *testing.T) {
	f := startProcesses(t, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, fault := range killAndPause {
		t.Run(fault.name, func(t *testing.T) {
			defer heal(t, f)
			c := newClient(t, faultConfig(f))
			other := newClient(t, faultConfig(f))
			groups := perGroup(t, c, f, "lockall-"+fault.name, 2)
			all := slices.Concat(groups...)
			hit := []redlocktest.Master{f.Master(0, 0), f.Master(1, 1), f.Master(2, 2)}
			apply(t, fault.name, fault.inject, hit...)

			m, err := c.LockAll(ctx, all, 10*time.Second)
			if err != nil {
				t.Fatalf("LockAll with 1 of 3 masters %s in every group: %v", fault.name, err)
			}
			if !slices.Equal(m.Resources(), slices.Sorted(slices.Values(all))) {
				t.Errorf("Resources() = %v, want %v sorted", m.Resources(), all)
			}
			until := m.Until()
			if err := m.Extend(ctx, 20*time.Second); err != nil {
				t.Errorf("Extend: %v", err)
			} else if !m.Until().After(until) {
				t.Errorf("Extend did not move Until (%v → %v)", until, m.Until())
			}
			for _, res := range all {
				if _, err := other.TryLock(ctx, res, time.Second); !errors.Is(err, redlock.ErrNotObtained) {
					t.Errorf("%s: another client got it while the MultiLock held it: %v", res, err)
				}
			}
			if err := m.Release(ctx); err != nil {
				t.Fatalf("Release: %v", err)
			}

			// One resource busy: all or nothing.
			busy, err := other.TryLock(ctx, groups[1][0], time.Minute)
			if err != nil {
				t.Fatalf("TryLock %s: %v", groups[1][0], err)
			}
			if _, err := c.LockAll(ctx, all, 10*time.Second); !errors.Is(err, redlock.ErrNotObtained) {
				t.Fatalf("LockAll with %s busy = %v, want ErrNotObtained", groups[1][0], err)
			}
			apply(t, "heal", fault.heal, hit...)
			if err := busy.Release(ctx); err != nil {
				t.Fatal(err)
			}
			keysGone(t, c, f, all, 10*time.Second)

			// A majority of group 1 paused: unavailable, nothing left anywhere.
			apply(t, "pause 2 of 3", redlocktest.Master.Pause, f.Master(1, 0), f.Master(1, 1))
			_, err = c.LockAll(ctx, all, 10*time.Second)
			if !errors.Is(err, redlock.ErrNotObtained) {
				t.Fatalf("LockAll with a majority of a group paused = %v, want ErrNotObtained", err)
			}
			checkNamesFailed(t, err, f.Master(1, 0).Addr(), f.Master(1, 1).Addr())
			t.Logf("LockAll, a majority of group 1 paused: %v", err)
			apply(t, "unpause", redlocktest.Master.Unpause, f.Master(1, 0), f.Master(1, 1))
			keysGone(t, c, f, all, 10*time.Second)
		})
	}

	t.Run("contention under rotating pauses", func(t *testing.T) {
		defer heal(t, f)
		sets := perGroup(t, newClient(t, faultConfig(f)), f, "lockall-race", 2)
		all := slices.Concat(sets...)
		// Overlapping sets, listed in different orders.
		lists := [][]string{
			{all[0], all[2], all[4]},
			{all[4], all[3], all[0], all[1]},
			{all[5], all[2], all[1]},
		}
		pause := safety.Pause(300 * time.Millisecond)
		pause.Gap = 200 * time.Millisecond
		clients := make([]*redlock.Client, len(lists))
		for i := range clients {
			cfg := faultConfig(f)
			cfg.RetryStrategy = redlock.LinearBackoff(1000, 5*time.Millisecond)
			clients[i] = newClient(t, cfg)
		}
		deadline := time.Now().Add(3 * time.Second)
		var log holdLog
		var wg sync.WaitGroup
		held := make([]int, len(lists))
		for i, list := range lists {
			c, who := clients[i], fmt.Sprintf("client %d", i)
			wg.Go(func() {
				for n := 0; n < 500 && time.Now().Before(deadline); n++ {
					asked := time.Now()
					lctx, lcancel := context.WithDeadline(ctx, deadline.Add(500*time.Millisecond))
					m, err := c.LockAll(lctx, list, 2*time.Second)
					lcancel()
					if err != nil {
						continue // busy, or a fault's timing: the next round retries
					}
					got := time.Now()
					time.Sleep(time.Millisecond)
					for _, res := range m.Resources() {
						log.add(who, res, m.Token()+"/"+res, 0, asked, got, m.Until())
					}
					held[i]++
					if err := m.Release(ctx); err != nil {
						t.Logf("%s: release: %v", who, err)
					}
				}
			})
		}
		sched := safety.RunMinority(ctx, f, pause, deadline)
		wg.Wait()
		for _, e := range sched.Errors {
			t.Error(e)
		}
		log.check(t, "LockAll under rotating pauses")
		t.Logf("LockAll with %d pause cycles: holds per client %v", len(sched.Cycles), held)
		for i, n := range held {
			if n == 0 {
				t.Errorf("client %d never obtained its set", i)
			}
		}
		if len(sched.Cycles) == 0 {
			t.Error("no fault was injected")
		}
	})
}

// TestFencingAcrossAOFRestart: two clients take turns on one resource with
// Fencing on while the group's masters restart with AOF always — two of
// five, then all five at once. Holds never overlap, and in the order of the
// holds the fences are strictly increasing across both clients and both
// restarts. Across the restart of all five, the fence moves on by a few
// (the counters survived on disk), not by the downtime in microseconds (what
// a counter re-seeded from the masters' clocks would show).
func TestFencingAcrossAOFRestart(t *testing.T) {
	f := startProcesses(t, 1, 5)
	ms := masters(f, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const res = "fence-aof"
	var log holdLog
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	defer func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }() // also when a restart fails the test
	for i := range 2 {
		cfg := faultConfig(f)
		cfg.Fencing = true
		cfg.RetryStrategy = redlock.LinearBackoff(100, 5*time.Millisecond)
		c := newClient(t, cfg)
		who := fmt.Sprintf("client %d", i)
		wg.Go(func() {
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				asked := time.Now()
				l, err := c.Lock(ctx, res, 2*time.Second)
				if err != nil {
					continue // the whole group restarting: the next round retries
				}
				got := time.Now()
				time.Sleep(time.Millisecond)
				log.lock(who, l, asked, got)
				_ = l.Release(ctx)
			}
		})
	}
	pauseFor := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	restart := func(what string, ms ...redlocktest.Master) (from, to time.Time) {
		from = time.Now()
		apply(t, "restart "+what+" with AOF always", func(m redlocktest.Master, ctx context.Context) error { return m.Restart(ctx, true) }, ms...)
		return from, time.Now()
	}
	pauseFor(400 * time.Millisecond)
	restart("2 of 5", ms[0], ms[1])
	pauseFor(400 * time.Millisecond)
	from, to := restart("all 5", ms...)
	pauseFor(600 * time.Millisecond)
	stopOnce.Do(func() { close(stop) })
	wg.Wait()

	rep := log.check(t, "fencing across restarts with AOF always")
	recs := slices.Clone(log.recs)
	slices.SortFunc(recs, func(a, b safety.Record) int { return int(a.Start - b.Start) })
	var before, after *safety.Record
	for i := range recs {
		if i > 0 && recs[i].Fence <= recs[i-1].Fence {
			t.Errorf("fence %d of %s's hold at %d is not above %d of %s's hold before it",
				recs[i].Fence, recs[i].Holder, recs[i].Start, recs[i-1].Fence, recs[i-1].Holder)
		}
		if recs[i].End < from.UnixNano() {
			before = &recs[i]
		}
		if after == nil && recs[i].Attempt > to.UnixNano() {
			after = &recs[i]
		}
	}
	if before == nil || after == nil || rep.Holds < 10 {
		t.Fatalf("%d holds: too few around the restart of all masters to compare fences", rep.Holds)
	}
	step := after.Fence - before.Fence
	t.Logf("%d holds; across the restart of all 5 masters (%v) the fence went from %d to %d (+%d)",
		rep.Holds, to.Sub(from).Round(time.Millisecond), before.Fence, after.Fence, step)
	if step <= 0 || step > 1000 {
		t.Errorf("across the restart with AOF always the fence moved by %d: want a small step up (the counters kept on disk)", step)
	}
}
