package redlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/redis/go-redis/v9"
)

// holdCheck records holders of one resource and fails the test when two
// hold it at once (within their validity).
type holdCheck struct {
	mu      sync.Mutex
	holder  string
	overlap atomic.Int32
}

func (h *holdCheck) enter(t *testing.T, who string, l *Lock) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holder != "" && l.Valid() {
		h.overlap.Add(1)
		t.Errorf("%s got the lock while %s holds it", who, h.holder)
	}
	h.holder = who
}

func (h *holdCheck) leave(who string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holder == who {
		h.holder = ""
	}
}

// TestAwaitWokenByRelease: a waiter with a long TTL ahead of it gets the
// lock right after the holder releases — long before the TTL would have let
// it in, and without polling (its commands stay few).
func TestAwaitWokenByRelease(t *testing.T) {
	f := fleet(t, 1, 3)
	holderC := newClient(t, clusterConfig(f))
	waiterC := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := holderC.Lock(ctx, "await-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l2, err := waiterC.Await(ctx, "await-1", 10*time.Second)
		if err != nil {
			errc <- err
			return
		}
		got <- l2
	}()
	// Let it subscribe and settle into its wait (its wait is bounded by the
	// holder's minute-long PTTL).
	eventually(t, 10*time.Second, "waiter subscribed", func() bool {
		for _, s := range f[0] {
			if subscribers(t, s, "await-1") != 1 {
				return false
			}
		}
		return true
	})
	time.Sleep(100 * time.Millisecond) // its last attempt and PTTL are answered
	before := commandsSent(waiterC)
	time.Sleep(300 * time.Millisecond)
	if n := commandsSent(waiterC) - before; n > 0 {
		t.Errorf("the waiter sent %d commands while the holder held the lock: it polls", n)
	}
	released := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l2 := <-got:
		t.Logf("handed over %v after the release", time.Since(released))
		for _, s := range f[0] {
			if v := s.GetT(t, "await-1"); v != "" && v != l2.Token() {
				t.Errorf("%s holds %q, not the waiter's token", s.Addr(), v)
			}
		}
		if err := l2.Release(ctx); err != nil {
			t.Fatal(err)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter did not get the lock after the release (its TTL was a minute)")
	}
	eventually(t, 10*time.Second, "waiter unsubscribed", func() bool {
		return subscribers(t, f[0][0], "await-1") == 0
	})
}

// subscribers counts the subscribers of resource's release channel on s.
func subscribers(t *testing.T, s *redisproc.Server, key string) int {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rc.Close()
	got, err := rc.PubSubNumSub(context.Background(), releasedChannelPrefix+key).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return int(got[releasedChannelPrefix+key])
}

func commandsSent(c *Client) int64 {
	var n int64
	for _, st := range c.MasterStats() {
		n += st.Commands
	}
	return n
}

// TestAwaitContextEnds: a waiter whose ctx ends gets ErrNotObtained joined
// with ctx.Err(), and leaves no key and no subscription behind.
func TestAwaitContextEnds(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c.Lock(ctx, "await-ctx", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond} {
		wctx, cancel := context.WithTimeout(ctx, d)
		_, err := c.Await(wctx, "await-ctx", time.Second)
		cancel()
		if !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ctx %v: want ErrNotObtained joined with DeadlineExceeded, got %v", d, err)
		}
	}
	for _, s := range f[0] {
		if v := s.GetT(t, "await-ctx"); v != l.Token() {
			t.Errorf("%s: key holds %q, want the holder's token", s.Addr(), v)
		}
	}
	eventually(t, 10*time.Second, "no subscription left", func() bool {
		return subscribers(t, f[0][0], "await-ctx") == 0
	})
	// Cancelled while competing for a free resource: no key left.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(i)*50*time.Microsecond)
		l2, err := c.Await(wctx, "await-ctx", time.Minute)
		cancel()
		if err == nil {
			if err := l2.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 10*time.Second, "no key left by cancelled waiters", func() bool {
		for _, s := range f[0] {
			if s.GetT(t, "await-ctx") != "" {
				return false
			}
		}
		return true
	})
}

// TestAwaitHolderCrash: the holder never releases (crashed); the waiter gets
// the lock once the key expires, bounded by its PTTL.
func TestAwaitHolderCrash(t *testing.T) {
	f := fleet(t, 1, 3)
	holder := newClient(t, clusterConfig(f))
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := holder.Lock(ctx, "await-crash", 700*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	_ = holder.Close() // crashed: no release
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l2, err := c.Await(wctx, "await-crash", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Valid() {
		t.Errorf("the waiter got the lock while the crashed holder's validity lasts")
	}
	t.Logf("took over %v after the crash (TTL 700ms)", time.Since(start))
	_ = l2.Release(ctx)
}

// TestAwaitFIFO: waiters of one client are served in arrival order.
func TestAwaitFIFO(t *testing.T) {
	f := fleet(t, 1, 3)
	holderC := newClient(t, clusterConfig(f))
	c := newClient(t, clusterConfig(f))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := holderC.Lock(ctx, "fifo", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var mu sync.Mutex
	var order []int
	var check holdCheck
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wl, err := c.Await(ctx, "fifo", 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			who := fmt.Sprint(i)
			check.enter(t, who, wl)
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			check.leave(who)
			if err := wl.Release(ctx); err != nil {
				t.Error(err)
			}
		}()
		// Each waiter is queued before the next one starts.
		eventually(t, 10*time.Second, "waiter queued", func() bool {
			c.hub.mu.Lock()
			defer c.hub.mu.Unlock()
			q := c.hub.queues["fifo"]
			return q != nil && len(q.waiters) == i+1
		})
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("served in order %v, want 0..%d", order, n-1)
		}
	}
}

// TestAwaitNoStarvation: four clients, two waiters each, take a resource in
// turns for a while: every client gets a fair share and no two hold it at
// once.
func TestAwaitNoStarvation(t *testing.T) {
	f := fleet(t, 1, 3)
	const clients, perClient, rounds = 4, 2, 240
	cs := make([]*Client, clients)
	for i := range cs {
		cs[i] = newClient(t, clusterConfig(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var total atomic.Int32
	counts := make([]atomic.Int32, clients)
	var check holdCheck
	var wg sync.WaitGroup
	for ci, c := range cs {
		for w := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				who := fmt.Sprintf("client %d waiter %d", ci, w)
				for total.Load() < rounds && ctx.Err() == nil {
					l, err := c.Await(ctx, "starve", 5*time.Second)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						return
					}
					check.enter(t, who, l)
					total.Add(1)
					counts[ci].Add(1)
					time.Sleep(time.Millisecond)
					check.leave(who)
					if err := l.Release(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	got := make([]int32, clients)
	for i := range counts {
		got[i] = counts[i].Load()
	}
	t.Logf("acquisitions per client: %v", got)
	for i, n := range got {
		if n < rounds/clients/4 {
			t.Errorf("client %d got %d of %d acquisitions: starved (%v)", i, n, total.Load(), got)
		}
	}
}

// TestLockRetryWokenByRelease: Lock's retry happens at the release, not at
// the next retry tick.
func TestLockRetryWokenByRelease(t *testing.T) {
	f := fleet(t, 1, 3)
	holderC := newClient(t, clusterConfig(f))
	cfg := clusterConfig(f)
	cfg.RetryStrategy = LinearBackoff(2, 20*time.Second) // ticks far away
	c := newClient(t, cfg)
	ctx := context.Background()
	l, err := holderC.Lock(ctx, "retry-woken", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var l2 *Lock
	go func() {
		var err error
		l2, err = c.Lock(ctx, "retry-woken", 10*time.Second)
		got <- err
	}()
	eventually(t, 10*time.Second, "Lock subscribed", func() bool {
		return subscribers(t, f[0][0], "retry-woken") == 1
	})
	// (Subscribed: the subscription is confirmed by every master in turn.)
	eventually(t, 10*time.Second, "Lock subscribed everywhere", func() bool {
		return subscribers(t, f[0][1], "retry-woken") == 1 && subscribers(t, f[0][2], "retry-woken") == 1
	})
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
		_ = l2.Release(ctx)
	case <-time.After(8 * time.Second):
		t.Fatal("Lock waited for its 20 s retry tick instead of the release")
	}
}

// awaitAsync runs Await in the background.
func awaitAsync(c *Client, ctx context.Context, resource string, ttl time.Duration) (<-chan *Lock, <-chan error) {
	return lockAsync(func() (*Lock, error) { return c.Await(ctx, resource, ttl) })
}

// lockAsync runs an acquisition in the background.
func lockAsync(acquire func() (*Lock, error)) (<-chan *Lock, <-chan error) {
	got := make(chan *Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := acquire()
		if err != nil {
			errc <- err
			return
		}
		got <- l
	}()
	return got, errc
}

func waitSubscribed(t *testing.T, servers []*redisproc.Server, key string, n int) {
	t.Helper()
	eventually(t, 20*time.Second, "subscribed", func() bool {
		for _, s := range servers {
			if subscribers(t, s, key) != n {
				return false
			}
		}
		return true
	})
}

// TestAwaitSubscriptionKilled: the waiter's subscription connections are
// killed (CLIENT KILL TYPE pubsub) and the release happens while they are
// gone: the message is lost, yet the waiter gets the lock long before the
// holder's minute-long TTL — its subscriptions are renewed and the renewal
// wakes it to try.
func TestAwaitSubscriptionKilled(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.ReconnectInterval = 200 * time.Millisecond
	holderC := newClient(t, cfg)
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := holderC.Lock(ctx, "killed-sub", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, errc := awaitAsync(c, ctx, "killed-sub", 10*time.Second)
	waitSubscribed(t, f[0], "killed-sub", 1)
	for _, s := range f[0] {
		if _, err := s.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l2 := <-got:
		_ = l2.Release(ctx)
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not get the lock after its subscription was killed")
	}
	// The subscriptions came back (and were dropped when the waiter left).
	if got := c.hub.subs[c.nodes[0]]; got == nil {
		t.Fatal("no subscriber")
	}
}

// TestAwaitMasterPaused: one master of the waiter's group is paused
// (SIGSTOP) while it waits; the release announced by the two others wakes
// it, it gets the lock from them, and nobody else holds it meanwhile.
func TestAwaitMasterPaused(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 200 * time.Millisecond
	holderC := newClient(t, cfg)
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := holderC.Lock(ctx, "paused", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	heldEverywhere(t, f[0], l)
	got, errc := awaitAsync(c, ctx, "paused", 10*time.Second)
	waitSubscribed(t, f[0], "paused", 1)
	if err := f[0][2].Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f[0][2].Resume() }()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l2 := <-got:
		if l.Valid() {
			t.Error("two holders")
		}
		if !l2.Valid() {
			t.Error("the waiter's lock is not valid")
		}
		if _, err := holderC.TryLock(ctx, "paused", time.Second); !errors.Is(err, ErrNotObtained) {
			t.Errorf("another client got the lock from the waiter: %v", err)
		}
		_ = l2.Release(ctx)
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not get the lock with one master paused")
	}
}

// TestAwaitMasterDown: a master is killed while clients wait; every waiter
// still gets the lock in turn (never two at once), then the master comes
// back and waiting keeps working.
func TestAwaitMasterDown(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 200 * time.Millisecond
	cfg.ReconnectInterval = 100 * time.Millisecond
	holderC := newClient(t, cfg)
	cs := []*Client{newClient(t, cfg), newClient(t, cfg)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := holderC.Lock(ctx, "down", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	heldEverywhere(t, f[0], l)
	var check holdCheck
	var wg sync.WaitGroup
	var done atomic.Int32
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				wl, err := c.Await(ctx, "down", 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				who := fmt.Sprint("client ", i)
				check.enter(t, who, wl)
				time.Sleep(2 * time.Millisecond)
				check.leave(who)
				if err := wl.Release(ctx); err != nil {
					t.Error(err)
				}
				done.Add(1)
			}
		}()
	}
	waitSubscribed(t, f[0], "down", 2)
	if err := f[0][1].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "three acquisitions with a master down", func() bool { return done.Load() >= 3 })
	if err := f[0][1].Restart(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if done.Load() != 6 {
		t.Fatalf("%d of 6 acquisitions", done.Load())
	}
}

// TestAwaitClose: Close ends the waits in progress (ErrNotObtained joined
// with ErrClosed) and stops the subscription connections.
func TestAwaitClose(t *testing.T) {
	f := fleet(t, 1, 3)
	holderC := newClient(t, clusterConfig(f))
	cfg := clusterConfig(f)
	cfg.Logger = quietLogger
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := holderC.Lock(ctx, "await-close", time.Minute); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := c.Await(ctx, "await-close", time.Second)
			errc <- err
		}()
	}
	waitSubscribed(t, f[0], "await-close", 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case err := <-errc:
			if !errors.Is(err, ErrNotObtained) || !errors.Is(err, ErrClosed) {
				t.Errorf("Await after Close = %v, want ErrNotObtained joined with ErrClosed", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Await still waiting after Close")
		}
	}
	waitSubscribed(t, f[0], "await-close", 0)
}
