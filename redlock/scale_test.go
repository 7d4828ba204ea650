package redlock

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// unreachableCluster is groups × masters distinct loopback addresses on
// port 1, where nothing listens: every dial is refused at once.
func unreachableCluster(groups, masters int) [][]string {
	out := make([][]string, groups)
	n := 0
	for g := range out {
		for range masters {
			n++
			out[g] = append(out[g], fmt.Sprintf("127.%d.%d.%d:1", 1+n/65536, n/256%256, n%256))
		}
	}
	return out
}

// BenchmarkNewFleet measures New over 1000 groups × 5 masters, every one
// unreachable (ring construction plus a refused dial each), and the ring
// construction alone. Target (issue 14): New ≤ 1 s.
func BenchmarkNewFleet(b *testing.B) {
	cl := unreachableCluster(1000, 5)
	b.Run("New/1000x5-unreachable", func(b *testing.B) {
		cpu := processCPU()
		for b.Loop() {
			c, err := New(Config{Cluster: cl, Logger: quietLogger, ReconnectInterval: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
		reportCPU(b, cpu)
	})
	b.Run("ring/1000", func(b *testing.B) {
		ids := groupIDs(1000)
		cpu := processCPU()
		for b.Loop() {
			newRing(ids)
		}
		reportCPU(b, cpu)
	})
}

// reportCPU reports the process's CPU time per op since since (all
// threads: the GC's and the dials' included) — steadier than wall time on a
// shared machine.
func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(processCPU()-since)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// TestIdleMasterCost measures what a connected, idle master costs the
// client with the default PoolSize: heap (after GC) and goroutines. The
// ring's partition table (256 KiB for any fleet of more than one group: a
// cost per client, not per master) is counted apart; what remains, the
// client's own small structures included, is divided among the masters.
// Target (issue 14): ≤ 32 KiB and ≤ 2 goroutines per master.
func TestIdleMasterCost(t *testing.T) {
	const groups, masters = 3, 5
	f := fleet(t, groups, masters)
	cfg := clusterConfig(f)
	cfg.Logger = quietLogger
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Locks on every group: pools dialed, scripts loaded, writers used.
	for i := 0; i < 200; i++ {
		if l, err := c.TryLock(context.Background(), fmt.Sprintf("idle:%d", i), time.Second); err == nil {
			_ = l.Release(context.Background())
		}
	}
	time.Sleep(100 * time.Millisecond) // detached cleanups done
	runtime.GC()
	runtime.GC() // idle: the pools' victim caches are emptied too
	runtime.ReadMemStats(&after)
	n := groups * masters
	ringBytes := cap(c.ring.owner) * int(unsafe.Sizeof(c.ring.owner[0]))
	perMaster := (float64(after.HeapAlloc) - float64(before.HeapAlloc) - float64(ringBytes)) / float64(n) / 1024
	goroutines := runtime.NumGoroutine() - g0
	t.Logf("connected idle master: %.1f KiB heap, %.2f goroutines (%d masters, PoolSize %d; one health loop per client; the ring's table, %d KiB per client, apart)",
		perMaster, float64(goroutines)/float64(n), n, DefaultPoolSize, ringBytes>>10)
	for _, st := range c.MasterStats() {
		if !st.Up || st.Pool.Total < 1 {
			t.Fatalf("%s: up %v, %d connections", st.Addr, st.Up, st.Pool.Total)
		}
	}
	if goroutines > n*DefaultPoolSize+1 {
		t.Fatalf("%d goroutines for %d masters: more than one writer per connection plus the health loop", goroutines, n)
	}
	if perMaster > 32 {
		t.Fatalf("a connected idle master costs %.1f KiB of heap: want ≤ 32 KiB", perMaster)
	}
}
