package bench_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// BenchmarkWaitingCost shows what waiting without polling (issue 12) costs a
// lock nobody contends for: nothing. Interleaved in 5 rounds on one group of
// 5 masters, each round measures the uncontended lock+unlock cycle of
//
//   - plain:   Lock + Release on a client nobody waits on;
//   - waiters: the same, on a client whose 64 other goroutines are waiting in
//     Await on 8 resources held by another client (so its subscriptions
//     per master are open and its waiter queues are full);
//   - await:   Await + Release of a free resource.
//
// It reports ns/op and allocations, p50-µs (the median cycle), and cmds/op:
// the commands sent to the 5 masters per cycle (MasterStats). A cycle that
// found no contention sends 10 (a SET and a release per master) on every
// path: no SUBSCRIBE, no PUBLISH listener round trip, no extra script.
func BenchmarkWaitingCost(b *testing.B) {
	servers := addrs(b, 5)
	for round := 1; round <= 5; round++ {
		for _, mode := range []string{"plain", "waiters", "await"} {
			b.Run(fmt.Sprintf("round=%d/%s", round, mode), func(b *testing.B) {
				c := newClientWith(b, redlock.Config{Servers: servers, NodeTimeout: time.Second})
				if mode == "waiters" {
					stop := parkWaiters(b, c, servers, 8, 64)
					defer stop()
				}
				cycle := quorumlockCycle(c)
				if mode == "await" {
					cycle = func(ctx context.Context, res string) error {
						l, err := c.Await(ctx, res, ttl)
						if err != nil {
							return err
						}
						return l.Release(ctx)
					}
				}
				runTimedCycles(b, c, "waitcost", cycle)
			})
		}
	}
}

// parkWaiters has another client hold `resources` resources and n
// goroutines of c wait for them in Await; it returns once every waiter is
// subscribed (the holder's masters count the subscriptions) and its stop
// function ends the waits (ctx cancelled) and releases the holds. The
// waiters ask for a TTL whose drift would be fine; the holds last a minute,
// longer than any round.
func parkWaiters(b *testing.B, c *redlock.Client, servers []string, resources, n int) (stop func()) {
	b.Helper()
	holder := newClientWith(b, redlock.Config{Servers: servers, NodeTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var held []*redlock.Lock
	for i := range resources {
		l, err := holder.Lock(ctx, fmt.Sprintf("waitcost-held:%d:%d", seq.Add(1), i), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		held = append(held, l)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Await(ctx, held[i%len(held)].Resource(), ttl)
			if err == nil {
				_ = l.Release(context.Background())
			}
		}()
	}
	// The heads of the waiter queues have found their resources busy (and
	// subscribed) once every master answered an attempt for each resource;
	// after that the waiters send nothing until a release.
	deadline := time.Now().Add(time.Minute)
	for last := int64(-1); ; {
		if time.Now().After(deadline) {
			b.Fatalf("the %d waiters did not settle within a minute", n)
		}
		time.Sleep(200 * time.Millisecond)
		now := commands(c)
		if now >= int64(5*resources) && now == last {
			break
		}
		last = now
	}
	return func() {
		cancel()
		wg.Wait()
		for _, l := range held {
			_ = l.Release(context.Background())
		}
	}
}
