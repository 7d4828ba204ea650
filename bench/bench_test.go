package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/bench/floor"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

const ttl = 10 * time.Second

// The fleet is started on first use (so that plain `go test` starts only
// what the tests need) and stopped by TestMain.
var fleet struct {
	once    sync.Once
	servers []*redisproc.Server
	err     error
}

type nopLogger struct{}

func (nopLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(nopLogger{}) // go-redis logs its pool's events on its own
	code := m.Run()
	redisproc.StopAll(fleet.servers)
	os.Exit(code)
}

// addrs returns the addresses of n (1..5) masters of the shared fleet.
func addrs(tb testing.TB, n int) []string {
	tb.Helper()
	fleet.once.Do(func() { fleet.servers, fleet.err = redisproc.StartN(5, redisproc.Options{}) })
	if fleet.err != nil {
		tb.Fatalf("start redis-server processes: %v", fleet.err)
	}
	return redisproc.Addrs(fleet.servers[:n])
}

func newClient(tb testing.TB, servers []string) *redlock.Client {
	return newClientWith(tb, redlock.Config{Servers: servers})
}

func newClientWith(tb testing.TB, cfg redlock.Config) *redlock.Client {
	tb.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := redlock.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	// Warm up: connections dialed, scripts loaded.
	l, err := c.Lock(context.Background(), "warmup", ttl)
	if err != nil {
		tb.Fatal(err)
	}
	if err := l.Release(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return c
}

var seq atomic.Int64

func resource(prefix string) string { return fmt.Sprintf("%s:%d", prefix, seq.Add(1)) }

// BenchmarkLockUnlock is one caller's lock+unlock cycle (Lock, then Release).
func BenchmarkLockUnlock(b *testing.B) {
	for _, n := range []int{5, 1} {
		b.Run(fmt.Sprintf("masters=%d", n), func(b *testing.B) {
			runCycles(b, "lu", quorumlockCycle(newClient(b, addrs(b, n))))
		})
	}
}

// BenchmarkLockUnlockParallel runs lock+unlock cycles from GOMAXPROCS ×
// parallelism goroutines, each on its own resource: the batching writers
// turn concurrency into throughput.
func BenchmarkLockUnlockParallel(b *testing.B) {
	for _, p := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", p*runtimeProcs()), func(b *testing.B) {
			runParallelCycles(b, "par", p, quorumlockCycle(newClient(b, addrs(b, 5))))
		})
	}
}

// cycleFunc is one lock+unlock cycle of resource res.
type cycleFunc func(ctx context.Context, res string) error

// quorumlockCycle is c.Lock then Release.
func quorumlockCycle(c *redlock.Client) cycleFunc {
	return func(ctx context.Context, res string) error {
		l, err := c.Lock(ctx, res, ttl)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	}
}

// floorCycle is the floor's Lock then Unlock.
func floorCycle(f *floor.Floor) cycleFunc {
	return func(ctx context.Context, res string) error {
		l, err := f.Lock(ctx, res, ttl)
		if err != nil {
			return err
		}
		if !f.Unlock(ctx, l) {
			return errors.New("floor unlock: no quorum")
		}
		return nil
	}
}

// runCycles runs cycle b.N times from one goroutine, on one resource.
func runCycles(b *testing.B, prefix string, cycle cycleFunc) {
	ctx := context.Background()
	res := resource(prefix)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := cycle(ctx, res); err != nil {
			b.Fatal(err)
		}
	}
}

// runParallelCycles runs cycle b.N times from GOMAXPROCS × p goroutines,
// each on its own resource.
func runParallelCycles(b *testing.B, prefix string, p int, cycle cycleFunc) {
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(p)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		res := resource(prefix)
		for pb.Next() {
			if err := cycle(ctx, res); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// runTimedCycles runs cycle b.N times from one goroutine on one resource of
// client c, and reports the median cycle (p50-µs) and the commands c sent
// to its masters per cycle (cmds/op, from MasterStats).
func runTimedCycles(b *testing.B, c *redlock.Client, prefix string, cycle cycleFunc) {
	ctx := context.Background()
	res := resource(prefix)
	durs := make([]time.Duration, 0, 4096)
	before := commands(c)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := cycle(ctx, res); err != nil {
			b.Fatal(err)
		}
		if len(durs) < cap(durs) {
			durs = append(durs, time.Since(t0))
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	if len(durs) > 0 {
		b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds())/1e3, "p50-µs")
	}
	time.Sleep(100 * time.Millisecond) // the last cycle's top-ups and releases answered
	b.ReportMetric(float64(commands(c)-before)/float64(b.N), "cmds/op")
}

// BenchmarkFencing compares lock+unlock with Config.Fencing off and on, on
// one group of 5 masters, interleaved in rounds (off, on, off, on, …) so
// both see the same machine load: one goroutine (ns/op and p50-µs, the
// median cycle) and 16 × GOMAXPROCS goroutines on distinct resources
// (lock+unlock/s). Both clients share the masters; with Fencing on, the
// masters' counters stay in step, so the write-back round trip is rare
// (cmds/op: 10 without it). NodeTimeout is 1 s: the machine is shared, and a
// timeout would fail the benchmark, not measure it.
func BenchmarkFencing(b *testing.B) {
	servers := addrs(b, 5)
	for round := 1; round <= 5; round++ {
		for _, fencing := range []bool{false, true} {
			name := fmt.Sprintf("round=%d/fencing=%v", round, fencing)
			b.Run(name+"/goroutines=1", func(b *testing.B) {
				c := newClientWith(b, redlock.Config{Servers: servers, Fencing: fencing, NodeTimeout: time.Second})
				runTimedCycles(b, c, "fence1", func(ctx context.Context, res string) error {
					l, err := c.Lock(ctx, res, ttl)
					if err != nil {
						return err
					}
					if fencing != (l.Fence() > 0) {
						return fmt.Errorf("fencing %v but Fence() = %d", fencing, l.Fence())
					}
					return l.Release(ctx)
				})
			})
			b.Run(fmt.Sprintf("%s/goroutines=%d", name, 16*runtimeProcs()), func(b *testing.B) {
				c := newClientWith(b, redlock.Config{Servers: servers, Fencing: fencing, NodeTimeout: time.Second})
				ctx := context.Background()
				b.ReportAllocs()
				b.SetParallelism(16)
				before := commands(c)
				b.ResetTimer()
				t0 := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					res := resource("fencep")
					for pb.Next() {
						l, err := c.Lock(ctx, res, ttl)
						if err != nil {
							b.Error(err)
							return
						}
						if err := l.Release(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "lock+unlock/s")
				b.StopTimer()
				time.Sleep(100 * time.Millisecond) // the last cycles' top-ups and releases
				b.ReportMetric(float64(commands(c)-before)/float64(b.N), "cmds/op")
			})
		}
	}
}

// commands is the number of commands c has sent to all masters: with
// Fencing, a lock whose masters' counters disagree costs one more command per
// master (the write-back), so cmds/op shows how often that round trip is paid.
func commands(c *redlock.Client) int64 {
	var n int64
	for _, st := range c.MasterStats() {
		n += st.Commands
	}
	return n
}

// BenchmarkTryLockContended is a TryLock on a resource someone else holds:
// the cost of being told "busy" (the failed attempt's cleanup is sent in
// the background).
func BenchmarkTryLockContended(b *testing.B) {
	c := newClient(b, addrs(b, 5))
	ctx := context.Background()
	res := resource("busy")
	held, err := c.Lock(ctx, res, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = held.Release(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.TryLock(ctx, res, ttl); !errors.Is(err, redlock.ErrNotObtained) {
			b.Fatalf("TryLock on a held resource: %v", err)
		}
	}
}

// BenchmarkExtend extends a held lock.
func BenchmarkExtend(b *testing.B) {
	c := newClient(b, addrs(b, 5))
	ctx := context.Background()
	l, err := c.Lock(ctx, resource("ext"), ttl)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := l.Extend(ctx, ttl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFloor is the baseline: a hand-written go-redis Redlock (parallel
// SET NX PX, compare-and-delete script, both returning at quorum).
func BenchmarkFloor(b *testing.B) {
	for _, n := range []int{5, 1} {
		b.Run(fmt.Sprintf("masters=%d", n), func(b *testing.B) {
			runCycles(b, "floor", floorCycle(newFloor(b, addrs(b, n))))
		})
	}
}

// BenchmarkFloorParallel is the baseline under the same concurrency as
// BenchmarkLockUnlockParallel.
func BenchmarkFloorParallel(b *testing.B) {
	for _, p := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", p*runtimeProcs()), func(b *testing.B) {
			runParallelCycles(b, "floorpar", p, floorCycle(newFloor(b, addrs(b, 5))))
		})
	}
}

func newFloor(tb testing.TB, servers []string) *floor.Floor {
	tb.Helper()
	f := floor.New(servers, 0)
	tb.Cleanup(f.Close)
	if err := f.Warm(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return f
}

// TestFloor checks that the baseline is a correct lock, so that comparing
// with it is fair.
func TestFloor(t *testing.T) {
	for _, n := range []int{5, 1} {
		t.Run(fmt.Sprintf("masters=%d", n), func(t *testing.T) {
			f := newFloor(t, addrs(t, n))
			ctx := context.Background()
			res := resource("floortest")
			l, err := f.Lock(ctx, res, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Lock(ctx, res, ttl); !errors.Is(err, floor.ErrNotObtained) {
				t.Fatalf("second Lock: %v, want ErrNotObtained", err)
			}
			foreign := *l
			foreign.Token = "not-the-token"
			if f.Unlock(ctx, &foreign) {
				t.Fatal("Unlock with a foreign token succeeded")
			}
			if !f.Unlock(ctx, l) {
				t.Fatal("Unlock failed")
			}
			if f.Unlock(ctx, l) {
				t.Fatal("second Unlock succeeded")
			}
			if _, err := f.Lock(ctx, res, ttl); err != nil {
				t.Fatalf("Lock after Unlock: %v", err)
			}
		})
	}
}

// TestQuorumlockCycle checks the benchmarked cycle itself.
func TestQuorumlockCycle(t *testing.T) {
	c := newClient(t, addrs(t, 5))
	ctx := context.Background()
	res := resource("cycle")
	l, err := c.Lock(ctx, res, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryLock(ctx, res, ttl); !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("TryLock on a held resource: %v", err)
	}
	if err := l.Extend(ctx, ttl); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
