package redlock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// partialLocks holds resource on each of servers alone — what a
// competitor's split attempt leaves on the masters where its SET landed,
// until its cleanup — and returns the locks (each released by a client of
// its one master, with the same release script as a cleanup).
func partialLocks(t *testing.T, ctx context.Context, servers []*redisproc.Server, resource string, ttl time.Duration) []*Lock {
	t.Helper()
	var out []*Lock
	for _, s := range servers {
		c := newClient(t, Config{Servers: []string{s.Addr()}, NodeTimeout: time.Second})
		l, err := c.TryLock(ctx, resource, ttl)
		if err != nil {
			t.Fatalf("partial lock on %s: %v", s.Addr(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestAwaitWokenWhenSplitKeysCleanedUp: the resource is held on no
// majority, only by two competitors' partial keys (one on each of two
// masters of three, as split attempts leave them before their cleanups).
// The waiter's attempt is refused there and it waits; then both partial
// keys are deleted (each announced by its one master). The resource is
// free on every master, so the waiter must be woken and get it — not wait
// out the partial keys' minute-long PTTL (the bound the masters gave it).
func TestAwaitWokenWhenSplitKeysCleanedUp(t *testing.T) {
	f := fleet(t, 1, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, kind := range []string{"Await", "Lock"} {
		t.Run(kind, func(t *testing.T) {
			res := "split-cleanup-" + kind
			parts := partialLocks(t, ctx, f[0][:2], res, time.Minute)
			c := newClient(t, wakeOnly(clusterConfig(f)))
			var got <-chan *Lock
			var errc <-chan error
			if kind == "Await" {
				got, errc = awaitAsync(c, ctx, res, 20*time.Second)
			} else {
				got, errc = lockAsync(func() (*Lock, error) { return c.Lock(ctx, res, 10*time.Second) })
			}
			waitSubscribed(t, f[0], res, 1)
			quiet(t, c)
			expectWaiting(t, got, errc, "waiter behind the partial keys")
			for _, p := range parts {
				if err := p.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			l := expectLock(t, got, errc, "waiter after the partial keys were cleaned up")
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAwaitSplitRacersUnderMinorityDown: two masters of five are killed
// and six clients take the resource in turns with Await (TTL a minute):
// with only the bare majority left, competing attempts often split, and
// the waiters must still be woken when the resource becomes free — all
// rounds end well within one TTL, and no two hold it at once.
func TestAwaitSplitRacersUnderMinorityDown(t *testing.T) {
	f := fleet(t, 1, 5)
	cfg := clusterConfig(f) // NodeTimeout 1 s: releases must not time out under load
	cfg.ReconnectInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range f[0][3:] {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	const clients, rounds = 6, 8
	var check holdCheck
	var wg sync.WaitGroup
	var done atomic.Int32
	var longest atomic.Int64
	start := make(chan struct{})
	for i := range clients {
		c := newClient(t, cfg)
		who := fmt.Sprint("client ", i)
		wg.Go(func() {
			<-start
			for range rounds {
				asked := time.Now()
				l, err := c.Await(ctx, "split-racers", time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if d := int64(time.Since(asked)); d > longest.Load() {
					longest.Store(d)
				}
				check.enter(t, who, l)
				time.Sleep(time.Millisecond)
				check.leave(who)
				if err := l.Release(ctx); err != nil {
					t.Error(err)
				}
				done.Add(1)
			}
		})
	}
	close(start)
	deadline := time.Now().Add(40 * time.Second)
	for done.Load() < clients*rounds && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	n := done.Load()
	cancel()
	wg.Wait()
	t.Logf("longest Await: %v", time.Duration(longest.Load()).Round(time.Millisecond))
	if n < clients*rounds {
		t.Fatalf("%d of %d acquisitions within 40 s (TTL a minute): a waiter was not woken when the resource became free", n, clients*rounds)
	}
}

// TestAwaitSubscriptionLateOnOneMaster: two masters of five are down, so a
// release is announced by the three others and a waiter must hear all
// three. The waiter's client is new and reaches one of the three through a
// slow link (1 s per command): its subscription there is confirmed long
// after the two down masters' (whose failed dials must not count as
// confirmations) and the two fast ones'. The holder releases before that
// subscription is active, so that master's announcement is not heard; the
// waiter must still get the lock when its subscription there is confirmed
// — not wait out the holder's minute-long TTL.
func TestAwaitSubscriptionLateOnOneMaster(t *testing.T) {
	f := fleet(t, 1, 5)
	for _, s := range f[0][3:] {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Servers: []string{f[0][3].Addr(), f[0][4].Addr(), f[0][0].Addr(), f[0][1].Addr(), f[0][2].Addr()},
		NodeTimeout: 5 * time.Second, ReconnectInterval: time.Minute}
	holder := newClient(t, cfg)
	l, err := holder.TryLock(ctx, "late-sub", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	heldEverywhere(t, f[0][:3], l)
	slow := &tcpProxy{upstream: f[0][2].Addr(), addr: "127.0.0.1:0", delay: time.Second}
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Stop)
	wcfg := wakeOnly(cfg)
	wcfg.Servers = slices.Clone(cfg.Servers)
	wcfg.Servers[4] = slow.Addr()
	c := newClient(t, wcfg)
	got, errc := awaitAsync(c, ctx, "late-sub", 20*time.Second)
	waitSubscribed(t, f[0][:1], "late-sub", 1)
	if n := subscribers(t, f[0][2], "late-sub"); n != 0 {
		t.Fatalf("the slow master's subscription was active before the release (%d): the test needs it later", n)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := expectLock(t, got, errc, "waiter whose subscription on one master came after the release")
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
