package integration

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// quarantined returns the addresses whose vote in err is a quarantine.
func quarantined(err error) map[string]*redlock.QuarantineError {
	out := map[string]*redlock.QuarantineError{}
	var qe *redlock.QuorumError
	if errors.As(err, &qe) {
		for _, v := range qe.Votes {
			var q *redlock.QuarantineError
			if errors.As(v.Err, &q) {
				out[v.Addr] = q
			}
		}
	}
	return out
}

// quarantineScenario: a majority of a group restarts without its data while
// holder A's lock is valid.
//
//   - Without quarantine (client C) a second holder gets the resource while
//     A is still valid: the unsafe case, reproduced.
//   - With RestartQuarantine = the TTL (client B), the restarted masters
//     vote no, saying they are quarantined and for how long: B is refused
//     until the window has passed — by then A's lock has expired — and the
//     first attempt after the window works.
//   - A minority restart (one master) costs no availability: B's next lock
//     succeeds at once, and the restarted master shows as quarantined.
//
// window is both the RestartQuarantine and the TTL of the locks (a
// quarantine at least as long as the longest TTL); it must leave A valid
// through the restarts.
func quarantineScenario(t *testing.T, f redlocktest.Fleet, quarantineWindow time.Duration) {
	ms := masters(f, 0)
	ctx := context.Background()
	const resource = "quarantine/resource"
	clientA := newClient(t, f.Config())
	a, err := clientA.TryLock(ctx, resource, quarantineWindow)
	if err != nil {
		t.Fatalf("A: TryLock: %v", err)
	}
	eventually(t, slack, "A's key on all three masters", func() bool {
		for _, m := range ms {
			if v, _ := keyOn(t, m, resource); v != a.Token() {
				return false
			}
		}
		return true
	})

	// A majority restarts empty (in parallel: container restarts are slow).
	restarted := time.Now()
	var wg sync.WaitGroup
	for _, m := range ms[:2] {
		wg.Go(func() {
			if err := m.Restart(ctx, false); err != nil {
				t.Errorf("restart %s: %v", m.Name(), err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("a majority restarted empty in %v", time.Since(restarted).Round(time.Millisecond))

	// Without quarantine: a second holder while A is valid.
	clientC := newClient(t, f.Config())
	var c *redlock.Lock
	retry(t, slack, func() error { c, err = clientC.TryLock(ctx, resource, quarantineWindow); return err },
		func(err error) bool { return err == nil || !a.Valid() })
	if c == nil || !a.Valid() {
		t.Fatalf("setup: A's validity ran out before C tried (restarts took %v); C: %v", time.Since(restarted), err)
	}
	t.Logf("UNSAFE without quarantine: C holds %q (token %s) while A (token %s) is valid for %v more",
		resource, c.Token(), a.Token(), time.Until(a.Until()).Round(time.Millisecond))
	if err := c.Release(ctx); err != nil {
		t.Fatalf("C: Release: %v", err)
	}

	// With quarantine: refused, naming the restarted masters, until the window passed.
	cfgB := f.Config()
	cfgB.RestartQuarantine = quarantineWindow
	clientB := newClient(t, cfgB)
	_, err = clientB.TryLock(ctx, resource, quarantineWindow)
	if !a.Valid() {
		t.Fatalf("setup: A's validity ran out before B tried (%v after the restarts)", time.Since(restarted))
	}
	if !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("B got the lock A holds, %v after a majority restarted empty, with RestartQuarantine %v: %v",
			time.Since(restarted), quarantineWindow, err)
	}
	// The attempt ends as soon as a quorum is out of reach: at least one
	// restarted master's vote is there, and it says why and for how long.
	q := quarantined(err)
	if len(q) == 0 {
		t.Fatalf("B's error names no master as quarantined: %v", err)
	}
	for addr, v := range q {
		if addr != ms[0].Addr() && addr != ms[1].Addr() && addr != ms[2].Addr() {
			t.Errorf("quarantine vote of an unknown master %s", addr)
		}
		if v.Left <= 0 || v.Left > quarantineWindow {
			t.Errorf("%s: %v left; want within (0, %v]", addr, v.Left, quarantineWindow)
		}
	}
	for _, m := range ms[:2] {
		if stat(t, clientB, m.Addr()).QuarantinedUntil.IsZero() {
			t.Errorf("MasterStats does not show the restarted %s as quarantined", m.Addr())
		}
	}
	t.Logf("SAFE with quarantine: %v", err)

	var b *redlock.Lock
	refused := 0
	retry(t, quarantineWindow+2*slack, func() error {
		b, err = clientB.TryLock(ctx, resource, quarantineWindow)
		if err != nil {
			refused++
		}
		return err
	}, func(err error) bool { return err == nil })
	got := time.Now()
	if a.Valid() {
		t.Errorf("B obtained the lock while A is still valid (A until %v)", a.Until())
	}
	if got.Before(restarted.Add(quarantineWindow)) {
		t.Errorf("B obtained the lock %v after the restarts, before the %v window passed", got.Sub(restarted), quarantineWindow)
	}
	t.Logf("first lock after the window: %v after the restarts (%d attempts refused before)", got.Sub(restarted).Round(time.Millisecond), refused)
	if err := b.Release(ctx); err != nil {
		t.Fatalf("B: Release: %v", err)
	}

	// A minority restart costs no availability.
	if err := ms[0].Restart(ctx, false); err != nil {
		t.Fatalf("restart %s: %v", ms[0].Name(), err)
	}
	var l *redlock.Lock
	retry(t, slack, func() error { l, err = clientB.TryLock(ctx, resource+"/minority", quarantineWindow); return err },
		func(err error) bool { return err == nil })
	_ = l.Release(ctx)
	eventually(t, slack, ms[0].Name()+" shows as quarantined", func() bool {
		return !stat(t, clientB, ms[0].Addr()).QuarantinedUntil.IsZero()
	})
}

// TestQuarantineMajorityRestart is the quarantine scenario on containers.
func TestQuarantineMajorityRestart(t *testing.T) {
	quarantineScenario(t, startContainers(t, 1, 3), 20*time.Second)
}

// TestQuarantineMajorityRestartProcesses is the same on redis-server processes.
func TestQuarantineMajorityRestartProcesses(t *testing.T) {
	quarantineScenario(t, startProcesses(t, 1, 3), 8*time.Second)
}
