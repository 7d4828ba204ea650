package redlock

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestLockDone: Done is closed when the validity runs out or an Extend finds
// the lock gone; an Extend in time keeps it open; Release does not close it.
func TestLockDone(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()

	t.Run("validity runs out", func(t *testing.T) {
		l, err := c.Lock(ctx, "done-expire", 400*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		done := l.Done()
		if isClosed(done) && l.Valid() {
			t.Fatal("Done closed while the lock is valid")
		}
		select {
		case <-done:
			if l.Valid() {
				t.Error("Done closed before Until")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Done not closed after the validity ran out")
		}
	})
	t.Run("extended in time", func(t *testing.T) {
		l, err := c.Lock(ctx, "done-extend", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		done := l.Done()
		if err := l.Extend(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // past the first TTL
		if isClosed(done) {
			t.Error("Done closed although the lock was extended")
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if isClosed(done) {
			t.Error("Release closed Done")
		}
	})
	t.Run("Extend finds it gone", func(t *testing.T) {
		l, err := c.Lock(ctx, "done-gone", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		done := l.Done()
		for _, s := range f[0] {
			eventually(t, 5*time.Second, "key set", func() bool { return s.GetT(t, "done-gone") == l.Token() })
			if _, err := s.Do(ctx, "DEL", "done-gone"); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Extend(ctx, time.Minute); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Extend of a deleted lock = %v", err)
		}
		if !isClosed(done) {
			t.Error("Done not closed after Extend found the lock gone")
		}
		if l2 := l.Done(); !isClosed(l2) {
			t.Error("a later Done() is not closed")
		}
	})
}

// TestWithMaxHold: automatic extension stops after the hold limit; fn's
// context then ends at Until with cause ErrLockLost, and the key expires on
// the masters (no renewal after it).
func TestWithMaxHold(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	const ttl = time.Second
	var token string
	var lasted time.Duration
	var cause error
	err := c.DoWith(ctx, "maxhold", ttl, func(ctx context.Context) error {
		token = LockFromContext(ctx).Token()
		start := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
			return errors.New("fn's context did not end")
		}
		lasted, cause = time.Since(start), context.Cause(ctx)
		return nil
	}, WithMaxHold(2500*time.Millisecond))
	if err != nil && !errors.Is(err, ErrNotHeld) {
		t.Fatal(err)
	}
	if !errors.Is(cause, ErrLockLost) {
		t.Errorf("cause = %v, want ErrLockLost", cause)
	}
	if lasted <= ttl {
		t.Errorf("the section lasted %v: the lock was not extended (ttl %v)", lasted, ttl)
	}
	t.Logf("section lasted %v with ttl %v, max hold 2.5s", lasted, ttl)
	for _, s := range f[0] {
		if v := s.GetT(t, "maxhold"); v == token {
			t.Errorf("%s still holds the key after the section", s.Addr())
		}
	}
	if err := c.DoWith(ctx, "maxhold", ttl, func(context.Context) error { return nil }, WithMaxHold(0)); err == nil {
		t.Error("WithMaxHold(0) accepted")
	} else {
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Errorf("WithMaxHold(0) = %v, want an InputError", err)
		}
	}
}

// TestSharedExtender10000: 10,000 sections auto-extended at once cost the
// client a handful of goroutines (not one per lock) and, per master and
// tick, one pipeline per maxRenewBatch renewals due; after they end, no
// renewal is sent.
func TestSharedExtender10000(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 locks")
	}
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 2 * time.Second // the race detector on a shared 2-core machine
	cfg.ReleaseTimeout = 20 * time.Second
	cfg.RetryStrategy = LinearBackoff(100, 100*time.Millisecond) // a master overloaded by 10,000 acquisitions may drop out for a moment
	cfg.ReconnectInterval = 100 * time.Millisecond
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const n = 10000
	const ttl = 30 * time.Second // renewed every 10 s: a loaded machine has 20 s to get one through
	baseG := runtime.NumGoroutine()
	release := make(chan struct{})
	var started, ended sync.WaitGroup
	errs := make(chan error, n)
	gate := make(chan struct{}, 64) // acquire 64 at a time: the writers' queues are bounded
	for i := range n {
		started.Add(1)
		ended.Add(1)
		gate <- struct{}{}
		go func() {
			defer ended.Done()
			once := sync.OnceFunc(func() { <-gate; started.Done() })
			defer once()
			released := false
			err := c.DoWith(ctx, fmt.Sprintf("ext-%d", i), ttl, func(ctx context.Context) error {
				once()
				select {
				case <-release:
					gate <- struct{}{} // release 64 at a time too
					released = true
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}, WithAutoExtend())
			if released {
				<-gate
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	started.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a section failed: %v; masters: %+v", err, c.MasterStats())
	default:
	}
	// The library's goroutines beyond the 10,000 callers.
	extra := runtime.NumGoroutine() - baseG - n
	// Watch the extender until every lock was renewed (at least n renewals
	// sent to each master), however slowly the loaded machine ticks.
	before := c.MasterStats()
	sent0, ticks0 := c.ext.sent.Load(), c.ext.ticks.Load()
	eventually(t, 2*time.Minute, "every lock renewed", func() bool {
		return c.ext.sent.Load()-sent0 >= int64(n*len(f[0]))
	})
	after := c.MasterStats()
	ticks := c.ext.ticks.Load() - ticks0 + 1 // the tick in flight at the start may land in the window
	c.ext.mu.Lock()
	period, registered := c.ext.period, len(c.ext.locks)
	c.ext.mu.Unlock()
	for i := range after {
		cmds := after[i].Commands - before[i].Commands
		pipes := after[i].Pipelines - before[i].Pipelines
		t.Logf("%s: %d renewals in %d pipelines over %d ticks (tick %v, %d locks registered, %d library goroutines beyond the callers)",
			after[i].Addr, cmds, pipes, ticks, period, registered, extra)
		perTick := int64((n + maxRenewBatch - 1) / maxRenewBatch)
		if pipes > (ticks+1)*perTick {
			t.Errorf("%s: %d pipelines in %d ticks: more than %d per tick", after[i].Addr, pipes, ticks, perTick)
		}
		if pipes == 0 || cmds/pipes < 100 {
			t.Errorf("%s: %d renewals in %d pipelines: not batched", after[i].Addr, cmds, pipes)
		}
	}
	if extra > 50 {
		t.Errorf("%d goroutines beyond the callers for %d auto-extended locks", extra, n)
	}
	close(release)
	ended.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a section failed: %v", err)
	}
	// No renewal after Release (the masters still get the releases that
	// Release did not wait for: it returns at quorum).
	quiet := c.ext.sent.Load()
	time.Sleep(3 * period)
	if d := c.ext.sent.Load() - quiet; d != 0 {
		t.Errorf("%d renewals sent after every lock was released", d)
	}
	c.ext.mu.Lock()
	left := len(c.ext.locks)
	c.ext.mu.Unlock()
	if left != 0 {
		t.Errorf("%d locks still registered with the extender", left)
	}
}
