package redlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

func TestLockUnlockEveryMaster(t *testing.T) {
	f := fleet(t, 1, 5)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c.Lock(ctx, "res", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Token()) < 22 { // 128 bits, base64
		t.Fatalf("token %q shorter than 128 bits", l.Token())
	}
	eventually(t, 2*time.Second, "key on every master", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "res") != l.Token() {
				return false
			}
		}
		return true
	})
	locked, err := c.IsLocked(ctx, "res")
	if err != nil || !locked {
		t.Fatalf("IsLocked = %v, %v; want true", locked, err)
	}
	_, err = c.TryLock(ctx, "res", time.Second)
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("TryLock on a held resource: %v, want ErrNotObtained", err)
	}
	var qe *QuorumError
	if !errors.As(err, &qe) || qe.Op != "lock" || qe.Quorum != 3 || len(qe.Votes) != 5 {
		t.Fatalf("want a *QuorumError with 5 votes, got %#v", qe)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "key gone from every master", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "res") != "" {
				return false
			}
		}
		return true
	})
	if locked, err := c.IsLocked(ctx, "res"); err != nil || locked {
		t.Fatalf("IsLocked after release = %v, %v", locked, err)
	}
	if !l.Until().IsZero() {
		t.Fatal("Until not zero after Release")
	}
}

func TestKeyPrefixAndRoute(t *testing.T) {
	f := fleet(t, 3, 3)
	cfg := clusterConfig(f)
	cfg.KeyPrefix = "app:"
	c := newClient(t, cfg)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		res := fmt.Sprintf("r%d", i)
		route := c.Route(res)
		l, err := c.Lock(ctx, res, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The key lives exactly on the routed group's masters.
		for _, g := range f {
			for _, s := range g {
				routed := false
				for _, a := range route {
					routed = routed || a == s.Addr()
				}
				eventually(t, time.Second, "key placement", func() bool {
					got := keyOn(t, s, "app:"+res)
					return (got == l.Token()) == routed
				})
			}
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRouteIgnoresConfigOrder(t *testing.T) {
	a := Config{Cluster: [][]string{{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, {"127.0.0.1:4", "127.0.0.1:5", "127.0.0.1:6"}, {"127.0.0.1:7", "127.0.0.1:8", "127.0.0.1:9"}},
		DialTimeout: 50 * time.Millisecond, Logger: quietLogger}
	b := Config{Cluster: [][]string{{"redis://127.0.0.1:9", "127.0.0.1:8", "127.0.0.1:7"}, {"127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2"}, {"127.0.0.1:6", "127.0.0.1:4", "127.0.0.1:5"}},
		DialTimeout: 50 * time.Millisecond, Logger: quietLogger}
	ca, cb := newClient(t, a), newClient(t, b)
	norm := func(addrs []string) string {
		out := make([]string, len(addrs))
		for i, s := range addrs {
			p, _ := parseAddress(s)
			out[i] = p.identity()
		}
		return groupIdentity(func() []address {
			as := make([]address, len(out))
			for i, s := range addrs {
				as[i], _ = parseAddress(s)
			}
			return as
		}())
	}
	for i := 0; i < 2000; i++ {
		r := fmt.Sprintf("resource-%d", i)
		if norm(ca.Route(r)) != norm(cb.Route(r)) {
			t.Fatalf("%q routed differently: %v vs %v", r, ca.Route(r), cb.Route(r))
		}
	}
	// Route returns the masters exactly as written.
	found := false
	for i := 0; i < 100 && !found; i++ {
		for _, s := range cb.Route(fmt.Sprint(i)) {
			found = found || s == "redis://127.0.0.1:9"
		}
	}
	if !found {
		t.Fatal("Route did not return the address as written in Config")
	}
}

// TestMutualExclusion: two clients, three groups, many goroutines; a
// non-atomic counter per resource, guarded only by the lock, must end exact.
func TestMutualExclusion(t *testing.T) {
	f := fleet(t, 3, 3)
	cfg := clusterConfig(f)
	cfg.RetryInterval = 2 * time.Millisecond
	cfg.MaxRetry = 1000
	c1, c2 := newClient(t, cfg), newClient(t, cfg)
	resources := []string{"a", "b", "c", "d", "e", "f"}
	counters := make(map[string]*int, len(resources))
	for _, r := range resources {
		counters[r] = new(int)
	}
	const workers, iters = 8, 40
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := 0; w < workers; w++ {
		c := c1
		if w%2 == 1 {
			c = c2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				r := resources[(w+i)%len(resources)]
				err := c.Do(ctx, r, 2*time.Second, func(context.Context) error {
					v := *counters[r]
					time.Sleep(100 * time.Microsecond) // widen the race window
					*counters[r] = v + 1
					return nil
				})
				if err != nil {
					failures.Add(1)
					t.Errorf("Do(%s): %v", r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range resources {
		total += *counters[r]
	}
	if total != workers*iters {
		t.Fatalf("counters sum to %d, want %d: mutual exclusion violated", total, workers*iters)
	}
}

func faultConfig(f [][]*redisproc.Server) Config {
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 300 * time.Millisecond
	cfg.DialTimeout = 300 * time.Millisecond
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.MaxRetry = 0
	cfg.RetryStrategy = NoRetry()
	return cfg
}

func TestMinorityDownStillLocks(t *testing.T) {
	f := fleet(t, 1, 5)
	c := newClient(t, faultConfig(f))
	ctx := context.Background()
	_ = f[0][0].Kill()
	_ = f[0][1].Kill()
	for i := 0; i < 10; i++ {
		l, err := c.TryLock(ctx, fmt.Sprint("m", i), time.Second)
		if err != nil {
			t.Fatalf("attempt %d with 2 of 5 masters down: %v", i, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("release with 2 of 5 masters down: %v", err)
		}
	}
}

func TestMajorityDownFailsFastAndLeavesNoKey(t *testing.T) {
	f := fleet(t, 1, 5)
	cfg := faultConfig(f)
	c := newClient(t, cfg)
	ctx := context.Background()
	for _, s := range f[0][:3] {
		_ = s.Kill()
	}
	for i := 0; i < 3; i++ { // first attempt meets live connections, later ones masters marked down
		start := time.Now()
		_, err := c.TryLock(ctx, "maj", time.Second)
		took := time.Since(start)
		if !errors.Is(err, ErrNotObtained) {
			t.Fatalf("TryLock with 3 of 5 masters down: %v", err)
		}
		var qe *QuorumError
		if !errors.As(err, &qe) || len(qe.Failed()) < 3 {
			t.Fatalf("want 3 failed masters in %v", err)
		}
		for _, v := range qe.Failed() {
			if !strings.Contains(v.String(), "127.0.0.1:") {
				t.Fatalf("vote does not name its master: %v", v)
			}
			// A master marked down says why: the error that put it down.
			if errors.Is(v.Err, errNodeDown) && !strings.Contains(v.String(), "master is down (") {
				t.Fatalf("down vote does not carry its cause: %v", v)
			}
		}
		// Liveness bound, not a benchmark: about one NodeTimeout (+ dial), far below go-redis's 5 s defaults.
		if took > cfg.NodeTimeout+cfg.DialTimeout+time.Second {
			t.Fatalf("TryLock took %v with a majority down", took)
		}
	}
	// The live minority keeps no key of the failed attempts.
	eventually(t, 2*time.Second, "live masters clean", func() bool {
		return keyOn(t, f[0][3], "maj") == "" && keyOn(t, f[0][4], "maj") == ""
	})
}

func TestRestartedMastersUsedAgain(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	c := newClient(t, cfg)
	ctx := context.Background()
	for _, s := range f[0][:2] {
		_ = s.Kill()
	}
	if _, err := c.TryLock(ctx, "r", time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("want ErrNotObtained with 2 of 3 down, got %v", err)
	}
	eventually(t, 2*time.Second, "masters marked down", func() bool {
		down := 0
		for _, st := range c.MasterStats() {
			if !st.Up {
				down++
			}
		}
		return down == 2
	})
	for _, s := range f[0][:2] {
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// Used again within ReconnectInterval (+ slack for a loaded machine).
	eventually(t, 20*cfg.ReconnectInterval+2*time.Second, "masters back up", func() bool {
		for _, st := range c.MasterStats() {
			if !st.Up {
				return false
			}
		}
		return true
	})
	l, err := c.TryLock(ctx, "r", time.Second)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	for _, s := range f[0] { // the lock returns at quorum: the last master may answer a moment later
		eventually(t, 2*time.Second, "restarted master "+s.Addr()+" used again", func() bool { return keyOn(t, s, "r") == l.Token() })
	}
	_ = l.Release(ctx)
}

func TestPausedMinorityAddsNoLatency(t *testing.T) {
	f := fleet(t, 1, 5)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 3 * time.Second // a wait for a paused master would be obvious
	cfg.Logger = quietLogger
	c := newClient(t, cfg)
	ctx := context.Background()
	if err := f[0][0].Pause(); err != nil {
		t.Fatal(err)
	}
	if err := f[0][1].Pause(); err != nil {
		t.Fatal(err)
	}
	defer f[0][0].Resume()
	defer f[0][1].Resume()
	for i := 0; i < 5; i++ {
		start := time.Now()
		l, err := c.TryLock(ctx, fmt.Sprint("p", i), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if took > time.Second { // early quorum: never waits NodeTimeout (3 s) for the paused two
			t.Fatalf("lock with a paused minority took %v: waited for the slowest master", took)
		}
		start = time.Now()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("release with a paused minority took %v", took)
		}
	}
}

func TestPausedMajorityFailsFast(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	c := newClient(t, cfg)
	ctx := context.Background()
	for _, s := range f[0][:2] {
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := c.TryLock(ctx, "pm", 10*time.Second)
	took := time.Since(start)
	for _, s := range f[0][:2] {
		_ = s.Resume()
	}
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("want ErrNotObtained, got %v", err)
	}
	if took > cfg.NodeTimeout+time.Second {
		t.Fatalf("TryLock against a paused majority took %v (NodeTimeout %v)", took, cfg.NodeTimeout)
	}
	// Once the paused masters answer again, the failed attempt leaves no key
	// anywhere (their SET may have landed after the timeout).
	eventually(t, 5*time.Second, "no key left after resume", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "pm") != "" {
				return false
			}
		}
		return true
	})
}

func TestValidityBounds(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.DriftFactor = 0.1
	c := newClient(t, cfg)
	ttl := time.Second
	before := time.Now()
	l, err := c.Lock(context.Background(), "v", ttl)
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	drift := time.Duration(float64(ttl)*0.1) + 2*time.Millisecond
	u := l.Until()
	if u.After(after.Add(ttl-drift)) || u.Before(before.Add(ttl-drift)) {
		t.Fatalf("Until %v outside [start+ttl-drift, end+ttl-drift] = [%v, %v]", u, before.Add(ttl-drift), after.Add(ttl-drift))
	}
	if l.TTL() > ttl-drift || l.TTL() <= 0 {
		t.Fatalf("TTL %v out of (0, %v]", l.TTL(), ttl-drift)
	}
	// The server-side TTL covers the validity.
	pttl, err := f[0][0].Do(context.Background(), "PTTL", "v")
	if err != nil {
		t.Fatal(err)
	}
	var ms int64
	fmt.Sscanf(pttl, ":%d", &ms)
	if time.Duration(ms)*time.Millisecond < l.TTL() {
		t.Fatalf("server PTTL %dms shorter than the client's validity %v", ms, l.TTL())
	}
	_ = l.Release(context.Background())

	// A TTL the drift allowance consumes is an input error, not ErrNotObtained.
	_, err = c.Lock(context.Background(), "v", 2*time.Millisecond)
	var ie *InputError
	if !errors.As(err, &ie) || errors.Is(err, ErrNotObtained) {
		t.Fatalf("ttl 2ms: want *InputError, got %v", err)
	}
}

func TestStaleHolder(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	old, err := c.Lock(ctx, "s", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond) // it expires
	cur, err := c.Lock(ctx, "s", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("stale Extend: %v, want ErrNotHeld", err)
	}
	if err := old.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("stale Release: %v, want ErrNotHeld", err)
	}
	for _, s := range f[0] { // the stale calls must not have touched it; the lock returned at quorum, so wait for the last master
		eventually(t, 2*time.Second, "current holder's key on "+s.Addr(), func() bool { return keyOn(t, s, "s") == cur.Token() })
	}
	if err := cur.Extend(ctx, 10*time.Second); err != nil {
		t.Fatalf("current holder Extend: %v", err)
	}
	if time.Until(cur.Until()) < 9*time.Second {
		t.Fatalf("Until after Extend(10s) = %v from now", time.Until(cur.Until()))
	}
	if err := cur.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExtendNeverRecreatesExpiredKey(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c.Lock(ctx, "x", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Delete the key behind the lock's back on every master: the lock is gone.
	for _, s := range f[0] {
		_, _ = s.Do(ctx, "DEL", "x")
	}
	if err := l.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend of a deleted key: %v, want ErrNotHeld", err)
	}
	for _, s := range f[0] {
		if keyOn(t, s, "x") != "" {
			t.Fatalf("Extend re-created the key on %s", s.Addr())
		}
	}
	// Refused locally once Until has passed.
	l2, err := c.Lock(ctx, "y", 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(160 * time.Millisecond)
	if err := l2.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after Until: %v, want ErrNotHeld", err)
	}
}

func TestDo(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.RetryStrategy = NoRetry()
	c := newClient(t, cfg)
	ctx := context.Background()

	t.Run("returns fn's error and releases", func(t *testing.T) {
		boom := errors.New("boom")
		err := c.Do(ctx, "d1", time.Second, func(ctx context.Context) error {
			if LockFromContext(ctx) == nil {
				t.Error("no lock in fn's context")
			}
			if keyOn(t, f[0][0], "d1") == "" {
				t.Error("key absent while fn runs")
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Do = %v, want fn's error", err)
		}
		if keyOn(t, f[0][0], "d1") != "" {
			t.Fatal("not released after fn returned")
		}
	})

	t.Run("releases on panic, which propagates", func(t *testing.T) {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
			// Release returns at quorum: the last master may get it a
			// moment later.
			eventually(t, 10*time.Second, "released on every master after panic", func() bool {
				return keyOn(t, f[0][0], "d2") == ""
			})
		}()
		_ = c.Do(ctx, "d2", time.Second, func(context.Context) error { panic("kaboom") })
	})

	t.Run("does not run fn when not obtained", func(t *testing.T) {
		held, err := c.Lock(ctx, "d3", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Release(ctx)
		ran := false
		err = c.Do(ctx, "d3", time.Second, func(context.Context) error { ran = true; return nil })
		if ran || !errors.Is(err, ErrNotObtained) {
			t.Fatalf("ran=%v err=%v", ran, err)
		}
	})

	t.Run("lost lock cancels fn's context", func(t *testing.T) {
		start := time.Now()
		err := c.Do(ctx, "d4", 200*time.Millisecond, func(ctx context.Context) error {
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), ErrLockLost) {
				t.Errorf("cause = %v, want ErrLockLost", context.Cause(ctx))
			}
			// Validity ends before the servers' TTL (drift allowance);
			// overrun the TTL itself so the key is really gone.
			time.Sleep(200 * time.Millisecond)
			return nil
		})
		if time.Since(start) > 5*time.Second {
			t.Fatal("fn's context not cancelled at Until")
		}
		if !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Do after losing the lock = %v, want ErrNotHeld from the release", err)
		}
	})

	t.Run("auto-extend keeps the lock past its ttl", func(t *testing.T) {
		err := c.DoWith(ctx, "d5", 400*time.Millisecond, func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return fmt.Errorf("lost: %w", context.Cause(ctx))
			case <-time.After(1200 * time.Millisecond):
			}
			if keyOn(t, f[0][0], "d5") == "" {
				return errors.New("key gone while auto-extended")
			}
			return nil
		}, WithAutoExtend())
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("extension finding the lock gone cancels fn", func(t *testing.T) {
		err := c.DoWith(ctx, "d6", 300*time.Millisecond, func(ctx context.Context) error {
			for _, s := range f[0] {
				_, _ = s.Do(ctx, "DEL", "d6") // stolen behind our back
			}
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), ErrNotHeld) {
				t.Errorf("cause = %v, want ErrNotHeld inside ErrLockLost", context.Cause(ctx))
			}
			return nil
		}, WithAutoExtend())
		if !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Do = %v", err)
		}
	})
}

func TestContextCancellation(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.RetryInterval = 50 * time.Millisecond
	cfg.MaxRetry = 1000
	c := newClient(t, cfg)
	held, err := c.Lock(context.Background(), "cc", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Lock(ctx, "cc", time.Second)
	if !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want ErrNotObtained joined with DeadlineExceeded, got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("Lock ignored its context")
	}
	// An already-cancelled context: no attempt.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := c.Lock(cctx, "other", time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if keyOn(t, f[0][0], "other") != "" {
		t.Fatal("a cancelled Lock left a key")
	}
}

func TestBadArguments(t *testing.T) {
	f := fleet(t, 1, 1)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	long := strings.Repeat("x", DefaultMaxResourceLen+1)
	for _, tc := range []struct {
		name     string
		resource string
		ttl      time.Duration
		arg      string
	}{
		{"empty resource", "", time.Second, "resource"},
		{"too long", long, time.Second, "resource"},
		{"zero ttl", "r", 0, "ttl"},
		{"negative ttl", "r", -time.Second, "ttl"},
		{"ttl eaten by drift", "r", time.Millisecond, "ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, call := range map[string]func() error{
				"Lock":    func() error { _, err := c.Lock(ctx, tc.resource, tc.ttl); return err },
				"TryLock": func() error { _, err := c.TryLock(ctx, tc.resource, tc.ttl); return err },
				"Do":      func() error { return c.Do(ctx, tc.resource, tc.ttl, func(context.Context) error { return nil }) },
			} {
				err := call()
				var ie *InputError
				if !errors.As(err, &ie) || ie.Arg != tc.arg || errors.Is(err, ErrNotObtained) {
					t.Errorf("%s: %v, want *InputError on %s", name, err, tc.arg)
				}
			}
		})
	}
	if _, err := c.IsLocked(ctx, ""); err == nil {
		t.Error("IsLocked(\"\") accepted")
	}
}

func TestClosedClient(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.Logger = quietLogger
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Lock(context.Background(), "c", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := c.Lock(context.Background(), "c2", time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
	if err := l.Release(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Release after Close: %v", err)
	}
}

func TestStartupWithMastersDown(t *testing.T) {
	f := fleet(t, 1, 3)
	_ = f[0][2].Kill()
	cfg := faultConfig(f)
	c := newClient(t, cfg)
	st := c.MasterStats()
	if !st[0].Up || !st[1].Up || st[2].Up {
		t.Fatalf("want masters up, up, down; got %+v", st)
	}
	if st[2].LastError == "" {
		t.Fatal("down master has no LastError")
	}
	l, err := c.TryLock(context.Background(), "s", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Release(context.Background())
	if err := f[0][2].Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "master up after restart", func() bool { return c.MasterStats()[2].Up })
}

func TestBatching(t *testing.T) {
	f := fleet(t, 1, 1)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				l, err := c.Lock(ctx, fmt.Sprintf("b%d-%d", w, i), time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := c.MasterStats()[0]
	t.Logf("%d commands in %d pipelines (%.1f per pipeline)", st.Commands, st.Pipelines, float64(st.Commands)/float64(st.Pipelines))
	if st.Commands != 64*50*2 {
		t.Fatalf("commands = %d, want %d", st.Commands, 64*50*2)
	}
	if st.Pipelines >= st.Commands {
		t.Fatalf("no batching under 64 concurrent callers: %d commands in %d pipelines", st.Commands, st.Pipelines)
	}
}

func TestScriptFlushFallsBackToEval(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c.Lock(ctx, "nos", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f[0] {
		if _, err := s.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Extend(ctx, 5*time.Second); err != nil {
		t.Fatalf("Extend after SCRIPT FLUSH: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release after SCRIPT FLUSH: %v", err)
	}
	// Release returns at quorum; the last master answers a moment later.
	eventually(t, 2*time.Second, "key released on every master", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "nos") != "" {
				return false
			}
		}
		return true
	})
}

func TestReleaseToken(t *testing.T) {
	f := fleet(t, 1, 3)
	c1, c2 := newClient(t, clusterConfig(f)), newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c1.Lock(ctx, "rt", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Lock returned at quorum: let the last master's SET land before another
	// client (another connection, no ordering with it) releases.
	for _, s := range f[0] {
		eventually(t, 2*time.Second, "key on "+s.Addr(), func() bool { return keyOn(t, s, "rt") == l.Token() })
	}
	if err := c2.ReleaseToken(ctx, "rt", "not-the-token"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ReleaseToken with a wrong token: %v, want ErrNotHeld", err)
	}
	if keyOn(t, f[0][0], "rt") != l.Token() {
		t.Fatal("a wrong token deleted the key")
	}
	if err := c2.ReleaseToken(ctx, "rt", l.Token()); err != nil {
		t.Fatalf("ReleaseToken by another client: %v", err)
	}
	for _, s := range f[0] {
		eventually(t, 2*time.Second, "key released on "+s.Addr(), func() bool { return keyOn(t, s, "rt") == "" })
	}
	var ie *InputError
	if err := c2.ReleaseToken(ctx, "rt", ""); !errors.As(err, &ie) {
		t.Fatalf("empty token: %v", err)
	}
}

// TestReleaseReachesAPausedMaster: a master that misses a release (paused)
// gets it when it is back, instead of keeping the key until its TTL.
func TestReleaseReachesAPausedMaster(t *testing.T) {
	f, c := oneGroupClient(t, faultConfig, nil)
	ctx := context.Background()
	l, err := c.Lock(ctx, "rp", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	paused := f[0][2]
	eventually(t, 2*time.Second, "key on the master to pause", func() bool { return keyOn(t, paused, "rp") == l.Token() })
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	defer paused.Resume()
	// Another lock's traffic times out on the paused master: it is marked
	// down, so the release below is not even sent to it.
	other, err := c.TryLock(ctx, "rp-other", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "paused master marked down", func() bool { return !c.MasterStats()[2].Up })
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release with one of 3 masters down: %v", err)
	}
	_ = other.Release(ctx)
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	// Far sooner than the 30 s TTL: the kept release is sent on reconnect.
	eventually(t, 10*time.Second, "released on the master that was paused", func() bool { return keyOn(t, paused, "rp") == "" })
}

// TestNoReleaseKeptForMastersThatNeverGotTheSet: a master that is down when
// locks are taken cannot hold them; releases it misses are not kept for it
// (they would crowd out the ones that matter and slow its reconnection).
func TestNoReleaseKeptForMastersThatNeverGotTheSet(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	cfg.ReconnectInterval = time.Hour // stays down for the whole test
	c := newClient(t, cfg)
	ctx := context.Background()
	_ = f[0][2].Kill()
	if _, err := c.TryLock(ctx, "warm", time.Second); err != nil { // meets the dead connection, marks it down
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "master marked down", func() bool { return !c.MasterStats()[2].Up })
	for i := 0; i < 300; i++ {
		l, err := c.TryLock(ctx, fmt.Sprint("k", i), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	nd := c.groups[0].nodes[2]
	nd.keptMu.Lock()
	kept := len(nd.kept)
	nd.keptMu.Unlock()
	if kept > 1 { // at most the "warm" lock, whose SET was sent before the master was known down
		t.Fatalf("%d releases kept for a master that was down before their locks were taken", kept)
	}
}
