package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	goredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/bench/latency"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

// The waiting scenario (issue 12): two clients take turns on one resource,
// every library with its DEFAULT settings, and we measure the handoff — the
// time from a holder starting its Release to the other client's lock
// returning — against one uncontended lock+unlock cycle measured in the
// same run.

// waiter is one client of one implementation.
type waiter interface {
	acquire(ctx context.Context, res string) (release func() error, err error)
}

type awaitWaiter struct{ c *redlock.Client }

func (w awaitWaiter) acquire(ctx context.Context, res string) (func() error, error) {
	l, err := w.c.Await(ctx, res, ttl)
	if err != nil {
		return nil, err
	}
	return func() error { return l.Release(context.Background()) }, nil
}

type lockWaiter struct{ c *redlock.Client }

func (w lockWaiter) acquire(ctx context.Context, res string) (func() error, error) {
	for {
		l, err := w.c.Lock(ctx, res, ttl) // default: 1 + 3 attempts, 200 ms ± 50 %; loop until ctx ends
		if err == nil {
			return func() error { return l.Release(context.Background()) }, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
}

// pollWaiter is what Lock did before issue 12: TryLock, then sleep the
// default RetryInterval (jittered ±50 %).
type pollWaiter struct{ c *redlock.Client }

func (w pollWaiter) acquire(ctx context.Context, res string) (func() error, error) {
	for {
		l, err := w.c.TryLock(ctx, res, ttl)
		if err == nil {
			return func() error { return l.Release(context.Background()) }, nil
		}
		d := redlock.DefaultRetryInterval/2 + rand.N(redlock.DefaultRetryInterval)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

type redsyncWaiter struct{ rs *redsync.Redsync }

func (w redsyncWaiter) acquire(ctx context.Context, res string) (func() error, error) {
	for {
		m := w.rs.NewMutex(res, redsync.WithExpiry(ttl)) // default tries (32) and delays (50–250 ms)
		err := m.LockContext(ctx)
		if err == nil {
			return func() error { _, uerr := m.UnlockContext(context.Background()); return uerr }, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
}

type waitStats struct {
	name       string
	hist       latency.Histogram // cross-client handoffs
	acq        [2]atomic.Int64
	violations atomic.Int64
	errs       atomic.Int64
	elapsed    time.Duration
	minShare   float64 // the smallest share of one client in a round
	rounds     int
}

// turns runs the two waiters of one implementation on one resource for dur.
func turns(ws [2]waiter, dur time.Duration, hold time.Duration, res string, s *waitStats) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	start := time.Now()
	before := [2]int64{s.acq[0].Load(), s.acq[1].Load()}
	var mu sync.Mutex
	lastBy, lastAt := -1, time.Time{}
	var holders atomic.Int32
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				release, err := w.acquire(ctx, res)
				if err != nil {
					if ctx.Err() == nil {
						s.errs.Add(1)
					}
					continue
				}
				now := time.Now()
				if holders.Add(1) != 1 {
					s.violations.Add(1)
				}
				mu.Lock()
				if lastBy >= 0 && lastBy != i {
					s.hist.Record(now.Sub(lastAt))
				}
				mu.Unlock()
				s.acq[i].Add(1)
				time.Sleep(hold)
				holders.Add(-1)
				mu.Lock()
				lastBy, lastAt = i, time.Now()
				mu.Unlock()
				if err := release(); err != nil {
					s.errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	s.elapsed += time.Since(start)
	a0, a1 := s.acq[0].Load()-before[0], s.acq[1].Load()-before[1]
	share := 0.0
	if a0+a1 > 0 {
		share = float64(min(a0, a1)) / float64(a0+a1)
	}
	if s.rounds == 0 || share < s.minShare {
		s.minShare = share
	}
	s.rounds++
}

// cycles measures n uncontended lock+unlock cycles of a default client.
func cycles(c *redlock.Client, n int, h *latency.Histogram) {
	ctx := context.Background()
	for i := range n {
		t := time.Now()
		l, err := c.Lock(ctx, fmt.Sprintf("cycle:%d:%d", time.Now().UnixNano(), i), ttl)
		if err != nil {
			continue
		}
		_ = l.Release(ctx)
		h.Record(time.Since(t))
	}
}

func runWaiting(out string, rounds int, dur time.Duration) error {
	if !redisproc.Available() {
		return redisproc.ErrNotInstalled
	}
	progress("waiting: starting 5 redis-server processes on 127.0.0.1")
	servers, err := redisproc.StartN(5, redisproc.Options{})
	if err != nil {
		return err
	}
	defer redisproc.StopAll(servers)
	addrs := redisproc.Addrs(servers)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newDefault := func() (*redlock.Client, error) {
		return redlock.New(redlock.Config{Servers: addrs, Logger: quiet}) // DEFAULT Config
	}
	var clients []*redlock.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	pair := func() ([2]*redlock.Client, error) {
		var p [2]*redlock.Client
		for i := range p {
			c, cerr := newDefault()
			if cerr != nil {
				return p, cerr
			}
			clients = append(clients, c)
			p[i] = c
		}
		return p, nil
	}
	aw, err := pair()
	if err != nil {
		return err
	}
	lk, err := pair()
	if err != nil {
		return err
	}
	pl, err := pair()
	if err != nil {
		return err
	}
	var rsClients []*redis.Client
	defer func() {
		for _, c := range rsClients {
			_ = c.Close()
		}
	}()
	newRS := func() *redsync.Redsync {
		var pools []redsyncPool
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a})
			rsClients = append(rsClients, c)
			pools = append(pools, goredis.NewPool(c))
		}
		return redsync.New(pools...)
	}
	impls := []struct {
		s  *waitStats
		ws [2]waiter
	}{
		{&waitStats{name: "quorumlock Await"}, [2]waiter{awaitWaiter{aw[0]}, awaitWaiter{aw[1]}}},
		{&waitStats{name: "quorumlock Lock (retries woken by releases)"}, [2]waiter{lockWaiter{lk[0]}, lockWaiter{lk[1]}}},
		{&waitStats{name: "polling: TryLock + RetryInterval (Lock before #12)"}, [2]waiter{pollWaiter{pl[0]}, pollWaiter{pl[1]}}},
		{&waitStats{name: "redsync v4 defaults"}, [2]waiter{redsyncWaiter{newRS()}, redsyncWaiter{newRS()}}},
	}
	base, err := newDefault()
	if err != nil {
		return err
	}
	clients = append(clients, base)
	var cycle latency.Histogram
	cycles(base, 300, &latency.Histogram{}) // warm-up
	const hold = 500 * time.Microsecond
	for r := range rounds {
		for k := range impls {
			im := impls[(k+r)%len(impls)]
			cycles(base, 200, &cycle)
			progress("waiting: round %d/%d: %s", r+1, rounds, im.s.name)
			turns(im.ws, dur, hold, fmt.Sprintf("waiting:%d:%d", r, k), im.s)
		}
	}
	cycles(base, 200, &cycle)

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	c50 := cycle.Quantile(0.5)
	w("## Waiting: two clients taking turns on one resource (issue 12)\n\n")
	w("Generated by `cd bench/compare && go run . -waiting -out …` on %s (nproc %d, load %s). 5 redis-server processes on 127.0.0.1; every client with its DEFAULT settings (quorumlock `redlock.Config{Servers: …}`; redsync `NewMutex(res, WithExpiry(10s))`). Two clients in one process each loop: wait for the lock, hold it %v, release. *Handoff* is the time from one client starting its release to the *other* client's lock returning. %d rounds × %v per implementation, interleaved; %d uncontended lock+unlock cycles of a default client measured between the rounds.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), strings.TrimSpace(loadAvg()), hold, rounds, dur, cycle.Count())
	w("| implementation | acquisitions/s | cross-client handoffs/s | handoff p50 | p90 | p99 | p50 / uncontended cycle p50 | least-served client's share (worst round) | violations | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, im := range impls {
		s := im.s
		total := s.acq[0].Load() + s.acq[1].Load()
		share := s.minShare
		h := &s.hist
		ratio := "–"
		if h.Count() > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(h.Quantile(0.5))/float64(c50))
		}
		w("| %s | %.0f | %.1f | %s | %s | %s | %s | %.0f%% | %d | %d |\n", s.name, float64(total)/s.elapsed.Seconds(), float64(h.Count())/s.elapsed.Seconds(),
			usq(h.Quantile(0.5), h.Count()), usq(h.Quantile(0.9), h.Count()), usq(h.Quantile(0.99), h.Count()), ratio, share*100,
			s.violations.Load(), s.errs.Load())
	}
	w("\nUncontended lock+unlock cycle (quorumlock, default Config, same run): p50 %v, p99 %v.\n", c50.Round(time.Microsecond), cycle.Quantile(0.99).Round(time.Microsecond))
	aw50 := impls[0].s.hist.Quantile(0.5)
	verdict := "**met**"
	if impls[0].s.hist.Count() == 0 || aw50 > 3*c50 {
		verdict = "**not met**"
	}
	w("\nTarget: Await handoff p50 ≤ 3× the uncontended cycle p50: %v vs 3 × %v = %v — %s.\n",
		aw50.Round(time.Microsecond), c50.Round(time.Microsecond), (3 * c50).Round(time.Microsecond), verdict)
	if out == "-" {
		_, err := os.Stdout.WriteString(b.String())
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

func usq(d time.Duration, n uint64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}
