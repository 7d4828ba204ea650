package main

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumlock/quorumlock/bench/latency"
)

// stats accumulates the lock+unlock cycles of one implementation.
type stats struct {
	hist     latency.Histogram
	ok       atomic.Int64
	errs     atomic.Int64
	firstErr atomic.Pointer[string]
	elapsed  time.Duration // wall time the implementation ran (throughput)
	rounds   []float64     // ops/s of each throughput round
}

func (s *stats) fail(err error) {
	s.errs.Add(1)
	msg := err.Error()
	s.firstErr.CompareAndSwap(nil, &msg)
}

func (s *stats) throughput() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ok.Load()) / s.elapsed.Seconds()
}

func (s *stats) p(q float64) time.Duration { return s.hist.Quantile(q) }

// names hands out unique resource names: a fresh key per cycle, so that a
// key left on a minority of masters by an implementation that returns at
// quorum can never disturb a later cycle.
type names struct {
	prefix string
	n      atomic.Int64
}

func (n *names) next() string { return n.prefix + strconv.FormatInt(n.n.Add(1), 10) }

// cycle is one lock+unlock; it returns its duration.
func cycle(ctx context.Context, l locker, res string) (time.Duration, error) {
	t0 := time.Now()
	h, err := l.Lock(ctx, res)
	if err != nil {
		return 0, err
	}
	if err := l.Unlock(ctx, h); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// latencyRounds measures one goroutine's cycles, interleaving the
// implementations in rounds (each round starts with the next one) so that
// drift of a noisy machine spreads over all of them. Bounded by rounds and
// by maxTime.
func latencyRounds(impls []locker, warm, rounds, perRound int, maxTime time.Duration, prefix string) map[string]*stats {
	ctx := context.Background()
	out := make(map[string]*stats)
	nm := make(map[string]*names)
	for _, l := range impls {
		out[l.Name()] = &stats{}
		nm[l.Name()] = &names{prefix: prefix + ":" + l.Name() + ":"}
		for i := 0; i < warm; i++ {
			_, _ = cycle(ctx, l, nm[l.Name()].next())
		}
	}
	start := time.Now()
	for r := 0; r < rounds && time.Since(start) < maxTime; r++ {
		for k := range impls {
			l := impls[(r+k)%len(impls)]
			s, n := out[l.Name()], nm[l.Name()]
			for i := 0; i < perRound; i++ {
				d, err := cycle(ctx, l, n.next())
				if err != nil {
					s.fail(err)
					continue
				}
				s.hist.Record(d)
				s.ok.Add(1)
			}
		}
	}
	return out
}

// throughputRun runs cycles from conc goroutines for dur (at most maxOps
// cycles) and adds them to s.
func throughputRun(l locker, conc int, dur time.Duration, maxOps int64, nm *names, s *stats) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var claimed atomic.Int64
	var wg sync.WaitGroup
	before := s.ok.Load()
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && claimed.Add(1) <= maxOps {
				t0 := time.Now()
				h, err := l.Lock(ctx, nm.next())
				if err != nil {
					if ctx.Err() == nil {
						s.fail(err)
					}
					continue
				}
				if err := l.Unlock(context.Background(), h); err != nil {
					s.fail(err)
					continue
				}
				s.hist.Record(time.Since(t0))
				s.ok.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	s.elapsed += el
	s.rounds = append(s.rounds, float64(s.ok.Load()-before)/el.Seconds())
}

// throughputRounds interleaves the implementations: rounds × each one for
// dur at conc goroutines.
func throughputRounds(impls []locker, conc, rounds int, dur time.Duration, maxOps int64, prefix string) map[string]*stats {
	out := make(map[string]*stats)
	nm := make(map[string]*names)
	for _, l := range impls {
		out[l.Name()] = &stats{}
		nm[l.Name()] = &names{prefix: prefix + ":" + l.Name() + ":"}
		// Warm-up: fill the connection pools at this concurrency.
		throughputRun(l, conc, 200*time.Millisecond, int64(conc)*4, nm[l.Name()], &stats{})
	}
	for r := 0; r < rounds; r++ {
		for k := range impls {
			l := impls[(r+k)%len(impls)]
			runtime.GC()
			throughputRun(l, conc, dur, maxOps, nm[l.Name()], out[l.Name()])
		}
	}
	return out
}

// handoffStats is the outcome of goroutines competing for one resource.
type handoffStats struct {
	hist         latency.Histogram // release → next holder's acquire
	acquisitions atomic.Int64
	violations   atomic.Int64 // two holders at once: must stay 0
	errs         atomic.Int64
	firstErr     atomic.Pointer[string]
	elapsed      time.Duration
}

// handoffRun has conc goroutines take turns on one resource for dur (at
// most maxOps acquisitions), each waiting with its library's retries, and
// records the time from a holder's release to the next holder's acquire.
func handoffRun(l locker, conc int, dur time.Duration, maxOps int64, res string, s *handoffStats) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	start := time.Now()
	var lastRelease atomic.Int64 // ns since start; 0: nobody released yet in this run
	var holders atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && s.acquisitions.Load() < maxOps {
				h, err := l.Wait(ctx, res)
				if err != nil {
					if ctx.Err() == nil {
						s.errs.Add(1)
						msg := err.Error()
						s.firstErr.CompareAndSwap(nil, &msg)
					}
					continue
				}
				now := time.Since(start).Nanoseconds()
				if holders.Add(1) != 1 {
					s.violations.Add(1)
				}
				if lr := lastRelease.Load(); lr > 0 {
					s.hist.Record(time.Duration(now - lr))
				}
				s.acquisitions.Add(1)
				holders.Add(-1)
				lastRelease.Store(time.Since(start).Nanoseconds())
				if err := l.Unlock(context.Background(), h); err != nil {
					s.errs.Add(1)
					msg := "unlock: " + err.Error()
					s.firstErr.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}
	wg.Wait()
	s.elapsed += time.Since(start)
}

// allocsPerCycle measures heap allocations (count and bytes) per
// lock+unlock cycle over n sequential cycles: runtime.MemStats deltas,
// which include the allocations of the library's background goroutines
// (writers, go-redis readers) on behalf of the cycles.
func allocsPerCycle(l locker, n int, prefix string) (allocs, bytes float64, errs int) {
	ctx := context.Background()
	res := make([]string, n+100)
	for i := range res {
		res[i] = prefix + ":" + l.Name() + ":" + strconv.Itoa(i)
	}
	for i := 0; i < 100; i++ {
		_, _ = cycle(ctx, l, res[n+i])
	}
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for i := 0; i < n; i++ {
		if _, err := cycle(ctx, l, res[i]); err != nil {
			errs++
		}
	}
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(n), float64(b.TotalAlloc-a.TotalAlloc) / float64(n), errs
}
