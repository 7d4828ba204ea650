package redlock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/leakcheck"
	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// heapObjectsBytes reads the live+unswept heap object bytes without stopping
// the world (cheap enough to sample every few milliseconds).
func heapObjectsBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// settledGoroutines waits until the goroutine count stops moving and returns it.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// TestBoundsConcurrentLockers runs 10,000 concurrent Lock calls on one busy
// resource (each with a short context) and measures the goroutines and heap
// the client adds: it must not start goroutines per call.
func TestBoundsConcurrentLockers(t *testing.T) {
	const callers = 10_000
	const callTimeout = 300 * time.Millisecond
	f := fleet(t, 1, 3)
	c := newClient(t, Config{Servers: redisproc.Addrs(f[0]), MaxRetry: 1 << 20, RetryInterval: 20 * time.Millisecond})
	ctx := context.Background()
	holder, err := c.Lock(ctx, "bounds-busy", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release(ctx)

	runtime.GC()
	baseHeap := heapObjectsBytes()

	// Every call's context ends callTimeout after the start. They share one
	// parent deadline: 10,000 deadlines of their own would fire 10,000
	// time.AfterFunc goroutines at once (measured: up to ≈1,500 alive under
	// -race), which belong to the test, not to the client.
	var deadline context.Context
	start := make(chan struct{})
	var wg, ready sync.WaitGroup
	var obtained, notObtained, other atomic.Int64
	var slowest atomic.Int64
	for i := 0; i < callers; i++ {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-start
			t0 := time.Now()
			// The shared deadline itself, not a child context per caller:
			// 10,000 children registering on one parent contend on its
			// mutex (seconds under -race on a loaded machine), which would
			// measure the context package, not the client.
			l, err := c.Lock(deadline, "bounds-busy", time.Second)
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d) // racy max: good enough for a log line and a liveness bound
			}
			switch {
			case err == nil:
				obtained.Add(1)
				_ = l.Release(ctx)
			case errors.Is(err, ErrNotObtained):
				notObtained.Add(1)
			default:
				other.Add(1)
				t.Errorf("Lock: %v", err)
			}
		}()
	}
	ready.Wait()
	// Every caller is parked on start: this is callers + the client + the test.
	baseline := settledGoroutines()

	var peakG, peakHeap atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			if g := int64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
			if i%5 == 0 {
				if h := int64(heapObjectsBytes()); h > peakHeap.Load() {
					peakHeap.Store(h)
				}
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	t0 := time.Now()
	deadline, cancelAll := context.WithTimeout(ctx, callTimeout)
	defer cancelAll()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	close(stop)
	<-sampled

	extra := int(peakG.Load()) - baseline - 1 // − the sampler
	heapGrowth := peakHeap.Load() - int64(baseHeap)
	var st []string
	for _, s := range c.MasterStats() {
		st = append(st, s.Addr+": "+time.Duration(s.Pool.AcquireWait).String()+" pool wait")
	}
	t.Logf("%d concurrent Lock calls on one busy resource, context of %v: %d not obtained, %d obtained, %d other errors; all done in %v, slowest call %v",
		callers, callTimeout, notObtained.Load(), obtained.Load(), other.Load(), took.Round(time.Millisecond), time.Duration(slowest.Load()).Round(time.Millisecond))
	t.Logf("goroutines: baseline %d (callers + client + test), peak %d: the client added at most %d (bound asserted: 64)", baseline, peakG.Load(), extra)
	t.Logf("heap objects: before %.1f MiB, peak %.1f MiB: +%.1f MiB, ≈ %d bytes per concurrent caller (goroutine stacks not included)",
		float64(baseHeap)/(1<<20), float64(peakHeap.Load())/(1<<20), float64(heapGrowth)/(1<<20), heapGrowth/callers)
	t.Logf("pools: %s", strings.Join(st, "; "))
	if extra > 64 {
		t.Errorf("the client added %d goroutines beyond the %d callers: want ≈ none per call (≤ 64)", extra, callers)
	}
	if heapGrowth > 256<<20 {
		t.Errorf("heap grew by %d MiB for %d callers (bound 256 MiB)", heapGrowth>>20, callers)
	}
	if obtained.Load() != 0 {
		t.Errorf("%d callers obtained a busy lock", obtained.Load())
	}
	// Every caller's attempt and its detached cleanup go to the one writer
	// of the key on each master: this storm overflows writerQueueLen (on
	// main before the queues grew on demand, too: ≈ 95,000 refusals under
	// -race). A refusal is a vote of no, never a wrong outcome (asserted
	// above and below); the count is logged for bench/RESULTS.md.
	var full []string
	for _, s := range c.MasterStats() {
		full = append(full, fmt.Sprintf("%s: %d", s.Addr, s.QueueFull))
	}
	t.Logf("commands refused with a full writer queue: %s", strings.Join(full, "; "))
	if notObtained.Load() != callers-other.Load() {
		t.Errorf("%d of %d callers ended with ErrNotObtained", notObtained.Load(), callers)
	}
	// Liveness, not performance: every call honours its context.
	if s := time.Duration(slowest.Load()); s > callTimeout+20*time.Second {
		t.Errorf("slowest Lock took %v with a %v context", s, callTimeout)
	}
	// The holder still holds it: none of the failed attempts' cleanups deleted it.
	for _, s := range f[0] {
		if got := keyOn(t, s, "bounds-busy"); got != holder.Token() {
			t.Errorf("%s: the holder's key = %q after the storm, want its token", s.Addr(), got)
		}
	}
}

// TestBoundsMasterFlapping takes a master down and up 1,000 times (a
// loopback proxy in front of it, stopped and restarted) with a 5 ms
// ReconnectInterval, and checks that neither goroutines nor the heap grow,
// and that nothing outlives Close. It is not about speed: NodeTimeout and
// the waits are generous, so that a loaded machine cannot fail it.
func TestBoundsMasterFlapping(t *testing.T) {
	const cycles = 1000
	srv := redisproc.StartT(t, 1, redisproc.Options{})[0]
	leaks := leakcheck.Current()

	proxy := startProxy(t, srv.Addr())
	c, err := New(Config{Servers: []string{proxy.Addr()}, Logger: quietLogger,
		ReconnectInterval: 5 * time.Millisecond, NodeTimeout: 2 * time.Second, DialTimeout: 2 * time.Second, RetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = c.Close()
		}
	}()
	ctx := context.Background()
	wait := func(what string, up bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for c.MasterStats()[0].Up != up {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("%s: master not %v within 30s: %+v; a reconnect loop is running: %v",
					what, map[bool]string{true: "up", false: "down"}[up], c.MasterStats()[0], bytes.Contains(buf, []byte("reconnectLoop")))
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	type snap struct {
		heap       uint64
		goroutines int
	}
	measure := func() snap {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return snap{heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
	}
	var at100 snap
	t0 := time.Now()
	for i := 1; i <= cycles; i++ {
		proxy.Stop() // listener and every proxied connection closed: the master is gone
		if l, err := c.TryLock(ctx, "flap", 30*time.Second); err == nil {
			_ = l.Release(ctx)
			t.Fatalf("cycle %d: locked through a stopped proxy", i)
		}
		wait("after stop", false)
		if err := proxy.Start(); err != nil {
			t.Fatalf("cycle %d: restart proxy: %v", i, err)
		}
		wait("after start", true)
		l, err := c.Lock(ctx, "flap", 30*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: Lock after the master came back: %v", i, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("cycle %d: Release: %v", i, err)
		}
		if i == 100 {
			at100 = measure()
		}
	}
	at1000 := measure()
	st := c.MasterStats()[0]
	t.Logf("%d down/up cycles in %v; master marked down %d times; LastError %q", cycles, time.Since(t0).Round(time.Millisecond), st.Downs, st.LastError)
	t.Logf("after GC — cycle 100: heap %d KiB, %d goroutines; cycle %d: heap %d KiB, %d goroutines (growth %+d KiB; bounds asserted: 2048 KiB, 4 goroutines)",
		at100.heap>>10, at100.goroutines, cycles, at1000.heap>>10, at1000.goroutines, (int64(at1000.heap)-int64(at100.heap))>>10)
	if st.Downs < cycles {
		t.Errorf("master marked down %d times in %d cycles", st.Downs, cycles)
	}
	if g := at1000.goroutines - at100.goroutines; g > 4 {
		t.Errorf("goroutines grew by %d between cycle 100 and %d", g, cycles)
	}
	if h := int64(at1000.heap) - int64(at100.heap); h > 2<<20 {
		t.Errorf("heap grew by %d KiB between cycle 100 and %d (bound 2048 KiB)", h>>10, cycles)
	}
	_ = c.Close()
	proxy.Stop()
	closed = true
	leakcheck.VerifyNone(t, leaks)
}
