package redlock

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// Tests of the rule "Until is never later than any master's possible expiry
// of the key" (issue 9, items 1–3), against real redis-server processes.

// pttlOn reads the key's PTTL on one master (-2 when absent, -1 without TTL).
func pttlOn(t *testing.T, s *redisproc.Server, key string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := s.Do(ctx, "PTTL", key)
	if err != nil || !strings.HasPrefix(v, ":") {
		t.Fatalf("PTTL %s on %s: %q %v", key, s.Addr(), v, err)
	}
	ms, err := strconv.ParseInt(v[1:], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// pauseCommands holds every command of s for d (CLIENT PAUSE d ALL): they
// run when the pause ends.
func pauseCommands(t *testing.T, s *redisproc.Server, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v, err := s.Do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "ALL"); err != nil || v != "+OK" {
		t.Fatalf("CLIENT PAUSE on %s: %q %v", s.Addr(), v, err)
	}
}

// barrier waits until every master of resource's group has answered a
// command sent after everything already queued for the resource's key (the
// same writer, so the same order): whatever the client had queued for the
// key has then reached the masters.
func barrier(t *testing.T, c *Client, resource string) {
	t.Helper()
	g, h := c.route(resource)
	barrierGroup(t, g, h, c.s.KeyPrefix+resource)
}

// barrierGroup is barrier on the masters of g for the key of hash h (a
// moved resource's previous group in migration mode, say).
func barrierGroup(t *testing.T, g *group, h uint64, key string) {
	t.Helper()
	out := make(chan reply, len(g.nodes))
	q := request{op: opExists, key: key, hash: h, timeout: 30 * time.Second}
	args := newCmdArgs(q.key, "")
	calls := make([]call, len(g.nodes))
	for i, nd := range g.nodes {
		calls[i] = q.call(i, args, time.Now().Add(q.timeout), out)
		nd.submit(&calls[i], h, false)
	}
	for range g.nodes {
		select {
		case rp := <-out:
			if errors.Is(rp.err, errQueueFull) {
				t.Fatal("barrier: a writer queue is full: nothing is ordered")
			}
		case <-time.After(40 * time.Second):
			t.Fatal("barrier: a master did not answer within 40s")
		}
	}
}

// majorityGoneBy returns the latest time by which the key is gone from a
// majority of masters (another client can then acquire it), from PTTLs read
// now. Masters without the key count as gone already.
func majorityGoneBy(t *testing.T, masters []*redisproc.Server, key string) time.Time {
	t.Helper()
	ttls := make([]time.Duration, len(masters))
	for i, s := range masters {
		ttls[i] = max(pttlOn(t, s, key), 0)
	}
	after := time.Now()
	sort.Slice(ttls, func(i, j int) bool { return ttls[i] < ttls[j] })
	return after.Add(ttls[len(masters)/2])
}

// checkNoSecondHolder waits (bounded) until another client obtains the
// resource and fails if l still reports Valid at that moment: two holders.
func checkNoSecondHolder(t *testing.T, other *Client, l *Lock, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l2, err := other.TryLock(context.Background(), l.Resource(), 30*time.Second)
		if err == nil {
			valid := l.Valid()
			until := l.Until()
			_ = l2.Release(context.Background())
			if valid {
				t.Fatalf("two holders: another client obtained %q while the first still reports Valid (Until in %v)", l.Resource(), time.Until(until))
			}
			return
		}
		if !errors.Is(err, ErrNotObtained) {
			t.Fatalf("second client: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("second client did not obtain %q within %v (key should have expired)", l.Resource(), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExtendUnknownOutcomeCapsUntil (item 1): an Extend to a shorter TTL
// whose PEXPIREs may have landed — the masters hold them (CLIENT PAUSE) past
// the caller's ctx, or SIGSTOP past NodeTimeout — fails, yet the masters apply
// it. Until must not stay at the old, longer validity; an Extend whose ctx is
// already done sends nothing.
func TestExtendUnknownOutcomeCapsUntil(t *testing.T) {
	const long, short = 30 * time.Second, time.Second

	t.Run("ctx ends while the masters hold the commands", func(t *testing.T) {
		f := fleet(t, 1, 3)
		cfg := clusterConfig(f)
		cfg.NodeTimeout = 10 * time.Second // the held commands are answered, not cut off
		c := newClient(t, cfg)
		other := newClient(t, clusterConfig(f))
		l, err := c.Lock(context.Background(), "ext-pause", long)
		if err != nil {
			t.Fatal(err)
		}
		barrier(t, c, "ext-pause")
		for _, s := range f[0] {
			pauseCommands(t, s, 2*time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		before := time.Now()
		err = l.Extend(ctx, short)
		returned := time.Now()
		cancel()
		if err == nil {
			t.Fatal("Extend succeeded while every master was paused past its ctx")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Extend = %v; want the ctx error joined", err)
		}
		if bound := validUntil(returned, short, cfg.DriftFactor); l.Until().After(bound) {
			t.Fatalf("Until is %v away after a failed Extend(%v) that may have landed; want ≤ start + %v − drift", l.Until().Sub(before), short, short)
		}
		barrier(t, c, "ext-pause") // the held PEXPIREs ran when the pause ended
		if gone := majorityGoneBy(t, f[0], "ext-pause"); l.Until().After(gone) {
			t.Fatalf("Until (%v away) is later than the masters' expiry (%v away)", time.Until(l.Until()), time.Until(gone))
		}
		checkNoSecondHolder(t, other, l, 20*time.Second)
	})

	t.Run("every master misses NodeTimeout", func(t *testing.T) {
		f := fleet(t, 1, 3)
		cfg := faultConfig(f) // NodeTimeout 300 ms
		c := newClient(t, cfg)
		other := newClient(t, clusterConfig(f))
		l, err := c.Lock(context.Background(), "ext-stop", long)
		if err != nil {
			t.Fatal(err)
		}
		barrier(t, c, "ext-stop")
		for _, s := range f[0] {
			if err := s.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		err = l.Extend(context.Background(), short)
		returned := time.Now()
		for _, s := range f[0] {
			if err := s.Resume(); err != nil {
				t.Fatal(err)
			}
		}
		var qe *QuorumError
		if !errors.As(err, &qe) {
			t.Fatalf("Extend with every master stopped = %v; want a *QuorumError", err)
		}
		if bound := validUntil(returned, short, cfg.DriftFactor); l.Until().After(bound) {
			t.Fatalf("Until is %v away after a timed-out Extend(%v); want ≤ its start + %v − drift", time.Until(l.Until()), short, short)
		}
		eventually(t, 10*time.Second, "stopped masters applied the PEXPIRE on resume", func() bool {
			for _, s := range f[0] {
				if d := pttlOn(t, s, "ext-stop"); d > short {
					return false
				}
			}
			return true
		})
		checkNoSecondHolder(t, other, l, 20*time.Second)
	})

	t.Run("ctx already done: nothing is sent", func(t *testing.T) {
		for _, masters := range []int{1, 3} {
			t.Run(fmt.Sprint(masters, " masters"), func(t *testing.T) {
				f := fleet(t, 1, masters)
				c := newClient(t, clusterConfig(f))
				l, err := c.Lock(context.Background(), "ext-done", long)
				if err != nil {
					t.Fatal(err)
				}
				until := l.Until()
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if err := l.Extend(ctx, short); !errors.Is(err, context.Canceled) {
					t.Fatalf("Extend with a cancelled ctx = %v; want context.Canceled", err)
				}
				barrier(t, c, "ext-done")
				for _, s := range f[0] {
					if d := pttlOn(t, s, "ext-done"); d <= short {
						t.Fatalf("%s: PTTL %v: an Extend with a cancelled ctx sent its PEXPIRE", s.Addr(), d)
					}
				}
				if !l.Until().Equal(until) {
					t.Fatalf("Until moved (%v → %v) for an Extend that sent nothing", until, l.Until())
				}
			})
		}
	})
}

// TestDoFollowsShortenedValidity (item 2): inside Do, an Extend by hand to a
// shorter TTL moves the end of fn's context to the new Until; an Extend to a
// longer one moves it later.
func TestDoFollowsShortenedValidity(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	c := newClient(t, cfg)
	other := newClient(t, cfg)
	ctx := context.Background()

	t.Run("shorter", func(t *testing.T) {
		err := c.Do(ctx, "do-short", 30*time.Second, func(ctx context.Context) error {
			l := LockFromContext(ctx)
			if err := l.Extend(ctx, time.Second); err != nil {
				return fmt.Errorf("Extend(1s) inside Do: %w", err)
			}
			until := l.Until()
			select {
			case <-ctx.Done():
			case <-time.After(15 * time.Second):
				return fmt.Errorf("fn's ctx still live %v after Until", time.Since(until))
			}
			if !errors.Is(context.Cause(ctx), ErrLockLost) {
				return fmt.Errorf("cause = %w, want ErrLockLost", context.Cause(ctx))
			}
			if time.Now().Before(until) {
				return fmt.Errorf("fn's ctx ended %v before Until", time.Until(until))
			}
			// The key really expires on the masters: another client gets it.
			checkNoSecondHolder(t, other, l, 20*time.Second)
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotHeld) {
			t.Fatal(err)
		}
	})

	t.Run("longer", func(t *testing.T) {
		err := c.Do(ctx, "do-long", time.Second, func(ctx context.Context) error {
			l := LockFromContext(ctx)
			if err := l.Extend(ctx, 30*time.Second); err != nil {
				return fmt.Errorf("Extend(30s) inside Do: %w", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("fn's ctx ended (%w) although the lock was extended to 30s", context.Cause(ctx))
			case <-time.After(2 * time.Second):
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestConcurrentExtendsDifferentTTLs (item 3): Extend(30s) and Extend(2s) at
// once, as an auto-extender and a hand Extend would. Whatever order the
// masters apply them in, Until must not be later than the time a majority of
// masters lets the key expire.
func TestConcurrentExtendsDifferentTTLs(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	const rounds = 40
	shortWon := 0
	for i := 0; i < rounds; i++ {
		res := fmt.Sprint("cx", i)
		l, err := c.Lock(ctx, res, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, ttl := range []time.Duration{30 * time.Second, 2 * time.Second} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = l.Extend(ctx, ttl)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		barrier(t, c, res)
		gone := majorityGoneBy(t, f[0], res)
		if u := l.Until(); u.After(gone) {
			t.Fatalf("round %d: Until is %v away but a majority of masters expire the key in %v: two holders possible",
				i, time.Until(u).Round(time.Millisecond), time.Until(gone).Round(time.Millisecond))
		}
		if time.Until(gone) < 5*time.Second {
			shortWon++
		}
		_ = l.Release(ctx)
	}
	t.Logf("%d of %d rounds ended with the 2s extension applied last", shortWon, rounds)
}

// TestExtendCancelledAtAnyPointKeepsUntilSafe cancels Extend(2s) of a 30 s
// lock at spread-out points (before sending, while queued, in flight, after
// some answers): whatever reached the masters, Until is never later than
// the time a majority of them lets the key expire.
func TestExtendCancelledAtAnyPointKeepsUntilSafe(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	bg := context.Background()
	outcomes := map[string]int{}
	for i := 0; i < 40; i++ {
		res := fmt.Sprint("cancel-at-", i)
		l, err := c.Lock(bg, res, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(bg)
		go func() {
			time.Sleep(time.Duration(i%8) * 100 * time.Microsecond)
			cancel()
		}()
		err = l.Extend(ctx, 2*time.Second)
		cancel()
		switch {
		case err == nil:
			outcomes["extended"]++
		case errors.Is(err, context.Canceled):
			outcomes["cancelled"]++
		default:
			t.Fatalf("round %d: Extend = %v", i, err)
		}
		barrier(t, c, res)
		if gone := majorityGoneBy(t, f[0], res); l.Until().After(gone) {
			t.Fatalf("round %d (%v): Until is %v away but a majority of masters expire the key in %v",
				i, err, time.Until(l.Until()).Round(time.Millisecond), time.Until(gone).Round(time.Millisecond))
		}
		_ = l.Release(bg)
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestReleaseRacesExtend: Release and Extend of one lock at once. Whatever
// the order, the lock ends released: Until zero, and no master keeps the
// key (a PEXPIRE before the delete is deleted with it; one after it finds
// no key to extend).
func TestReleaseRacesExtend(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		res := fmt.Sprint("rel-ext-", i)
		l, err := c.Lock(ctx, res, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var relErr, extErr error
		wg.Add(2)
		go func() { defer wg.Done(); relErr = l.Release(ctx) }()
		go func() { defer wg.Done(); extErr = l.Extend(ctx, 30*time.Second) }()
		wg.Wait()
		if relErr != nil {
			t.Fatalf("round %d: Release = %v", i, relErr)
		}
		if extErr != nil && !errors.Is(extErr, ErrNotHeld) {
			t.Fatalf("round %d: Extend = %v", i, extErr)
		}
		if !l.Until().IsZero() || l.Valid() {
			t.Fatalf("round %d: Until %v after Release (Extend: %v)", i, l.Until(), extErr)
		}
		barrier(t, c, res)
		for _, s := range f[0] {
			if v := keyOn(t, s, res); v != "" {
				t.Fatalf("round %d: %s still has the key after Release raced Extend (%v)", i, s.Addr(), extErr)
			}
		}
	}
}
