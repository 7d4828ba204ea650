package redlock

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPooledFanoutChaos: three clients (one, two and four writers
// per master) lock, extend and release long-named resources, LockAll pairs
// and cancel contexts mid-flight while one master at a time is stopped
// (SIGSTOP past NodeTimeout), slowed (DEBUG SLEEP, CLIENT PAUSE), loses its
// connections (CLIENT KILL) or its scripts (SCRIPT FLUSH). Outcomes: never
// two holders within validity, no stray reply, and once every master
// answers again no key is left behind (every release reached the masters
// after its SET), nor a goroutine after Close.
func TestPooledFanoutChaos(t *testing.T) {
	f := fleet(t, 1, 3)
	ms := f[0]
	g0 := runtime.NumGoroutine()
	var clients []*Client
	for _, ps := range []int{1, 2, 4} {
		cfg := clusterConfig(f)
		cfg.NodeTimeout = 150 * time.Millisecond
		cfg.ReconnectInterval = 20 * time.Millisecond
		cfg.PoolSize = ps
		clients = append(clients, newClient(t, cfg))
	}
	closeAll := sync.OnceFunc(func() {
		for _, c := range clients {
			_ = c.Close()
		}
	})
	defer closeAll()
	stray0 := strayReplies.Load()
	long := strings.Repeat("r", 4000)
	ctx := context.Background()

	stopFaults := untilStopped(func(round int) bool {
		s := ms[round%3]
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		switch round % 5 {
		case 0:
			_ = s.Pause()
			time.Sleep(300 * time.Millisecond)
			_ = s.Resume()
		case 1:
			_, _ = s.Do(dctx, "CLIENT", "KILL", "TYPE", "normal")
		case 2:
			_, _ = s.Do(dctx, "SCRIPT", "FLUSH")
		case 3:
			_, _ = s.Do(dctx, "DEBUG", "SLEEP", "0.2")
		case 4:
			_, _ = s.Do(dctx, "CLIENT", "PAUSE", "80", "ALL")
		}
		cancel()
		time.Sleep(60 * time.Millisecond)
		return true
	})

	var (
		holders  sync.Map
		ops, got atomic.Int64
	)
	runWorkers(clients, 24, 3000, 5*time.Second, func(c *Client, w, i int) {
		ops.Add(1)
		res := fmt.Sprintf("%s:%d", long[:1000*(i%5)], i%6)
		switch i % 4 {
		case 0, 1: // contended, extended once
			l, err := c.TryLock(ctx, res, 60*time.Second)
			if err != nil {
				return
			}
			got.Add(1)
			if prev, loaded := holders.Swap(res, l); loaded && prev.(*Lock).Valid() && l.Valid() {
				t.Errorf("%d-byte resource held twice within validity", len(res))
			}
			if i%2 == 1 {
				_ = l.Extend(ctx, 60*time.Second)
			}
			holders.CompareAndDelete(res, l)
			_ = l.Release(ctx)
		case 2: // cancelled mid-flight
			cctx, cancel := context.WithTimeout(ctx, time.Duration(i%7)*50*time.Microsecond)
			if l, err := c.TryLock(cctx, fmt.Sprintf("free:%d:%d:%s", w, i, long[:i%4000]), 60*time.Second); err == nil {
				_ = l.Release(ctx)
			}
			cancel()
		case 3:
			m, err := c.LockAll(ctx, []string{fmt.Sprintf("all:%d", i%3), fmt.Sprintf("all:%d", (i+1)%3)}, 60*time.Second)
			if err == nil {
				for _, r := range m.Resources() {
					if prev, loaded := holders.Swap(r, m); loaded && prev.(*MultiLock).Until().After(time.Now()) {
						t.Errorf("%s held twice (LockAll)", r)
					}
				}
				for _, r := range m.Resources() {
					holders.CompareAndDelete(r, m)
				}
				_ = m.Release(ctx)
			}
		}
	})
	stopFaults()
	for _, s := range ms {
		_ = s.Resume()
	}
	t.Logf("%d operations, %d locks obtained", ops.Load(), got.Load())
	if got.Load() < 50 {
		t.Errorf("only %d locks obtained", got.Load())
	}
	waitStart := time.Now()
	defer func() { t.Logf("keys gone after %v", time.Since(waitStart)) }()
	for _, s := range ms {
		v, _ := s.Do(ctx, "DBSIZE")
		t.Logf("%s DBSIZE %s", s.Addr(), v)
		if v != ":0" {
			keys, _ := s.Do(ctx, "KEYS", "*")
			t.Logf("%s keys: %.300s", s.Addr(), keys)
		}
	}
	eventually(t, 30*time.Second, "no key left on any master (their TTL is 60 s)", func() bool {
		for _, s := range ms {
			v, err := s.Do(ctx, "DBSIZE")
			if err != nil || strings.TrimPrefix(v, ":") != "0" {
				return false
			}
		}
		return true
	})
	if s := strayReplies.Load() - stray0; s != 0 {
		t.Errorf("%d replies reached a fan-out of another use", s)
	}
	closeAll()
	gStart := time.Now()
	defer func() { t.Logf("goroutines back after %v", time.Since(gStart)) }()
	eventually(t, 30*time.Second, "goroutines back to "+strconv.Itoa(g0), func() bool {
		return runtime.NumGoroutine() <= g0
	})
}
