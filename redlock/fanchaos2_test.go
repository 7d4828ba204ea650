package redlock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPooledFanoutChaosScripted: fenced locks (the fence write-back
// round), RWMutex readers and writers, and Do's shared extender, from two
// clients, while one master at a time loses its connections (CLIENT KILL),
// is stopped past NodeTimeout (SIGSTOP) or is killed and restarted empty
// (RestartQuarantine covers it). Outcomes: a writer never overlaps another
// writer or a reader within validity, fences grow, Do's holders never
// overlap while their ctx is live, and no reply reaches another fan-out.
func TestPooledFanoutChaosScripted(t *testing.T) {
	f := fleet(t, 1, 3)
	ms := f[0]
	var clients []*Client
	for _, ps := range []int{1, 3} {
		cfg := fencedConfig(f, 150*time.Millisecond)
		cfg.PoolSize = ps
		cfg.ReconnectInterval = 20 * time.Millisecond
		cfg.RestartQuarantine = 3 * time.Second // > every TTL below: a master restarted empty votes no
		clients = append(clients, newClient(t, cfg))
	}
	eventually(t, 30*time.Second, "the fresh masters out of quarantine", func() bool {
		for _, st := range clients[0].MasterStats() {
			if !st.QuarantinedUntil.IsZero() {
				return false
			}
		}
		return true
	})
	stray0 := strayReplies.Load()
	ctx := context.Background()
	stopFaults := untilStopped(func(round int) bool {
		s := ms[round%3]
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		switch round % 3 {
		case 0:
			_, _ = s.Do(dctx, "CLIENT", "KILL", "TYPE", "normal")
		case 1:
			_ = s.Pause()
			time.Sleep(300 * time.Millisecond)
			_ = s.Resume()
		case 2:
			if err := s.Kill(); err == nil {
				time.Sleep(50 * time.Millisecond)
				if err := s.Restart(); err != nil {
					t.Errorf("restart %s: %v", s.Addr(), err)
				}
			}
		}
		cancel()
		time.Sleep(150 * time.Millisecond)
		return true
	})

	type rwState struct {
		mu      sync.Mutex
		writer  *Lock
		readers map[*Lock]bool
	}
	states := make([]*rwState, 3)
	for i := range states {
		states[i] = &rwState{readers: map[*Lock]bool{}}
	}
	var (
		fenceMu  sync.Mutex
		lastDone = map[string]int64{}
		inDo     [3]sync.Map // of one key: the holder
		got      atomic.Int64
	)
	runWorkers(clients, 16, 2000, 6*time.Second, func(c *Client, w, i int) {
		k := i % 3
		switch i % 3 {
		case 0: // fenced plain lock
			res := fmt.Sprint("fenced:", k)
			fenceMu.Lock()
			before := lastDone[res]
			fenceMu.Unlock()
			l, err := c.TryLock(ctx, res, 2*time.Second)
			if err != nil {
				return
			}
			got.Add(1)
			if l.Fence() <= before {
				t.Errorf("%s: fence %d not above %d of an acquisition completed before", res, l.Fence(), before)
			}
			fenceMu.Lock()
			lastDone[res] = max(lastDone[res], l.Fence())
			fenceMu.Unlock()
			_ = l.Release(ctx)
		case 1: // RWMutex
			st := states[k]
			m := c.RWMutex(fmt.Sprint("rw:", k))
			var l *Lock
			var err error
			reader := w%2 == 0
			if reader {
				l, err = m.TryRLock(ctx, 2*time.Second)
			} else {
				l, err = m.TryLock(ctx, 2*time.Second)
			}
			if err != nil {
				return
			}
			got.Add(1)
			st.mu.Lock()
			if st.writer != nil && st.writer.Valid() && l.Valid() {
				t.Errorf("rw:%d: a writer holds it while another %s gets it", k, map[bool]string{true: "reader", false: "writer"}[reader])
			}
			if !reader {
				for r := range st.readers {
					if r.Valid() && l.Valid() {
						t.Errorf("rw:%d: a writer gets it while a reader holds it", k)
						break
					}
				}
				st.writer = l
			} else {
				st.readers[l] = true
			}
			st.mu.Unlock()
			time.Sleep(time.Millisecond)
			st.mu.Lock()
			if st.writer == l {
				st.writer = nil
			}
			delete(st.readers, l)
			st.mu.Unlock()
			_ = l.Release(ctx)
		case 2: // Do with the shared extender
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = c.Do(dctx, fmt.Sprint("do:", k), 300*time.Millisecond, func(fctx context.Context) error {
				got.Add(1)
				l := LockFromContext(fctx)
				// A holder leaves inDo before it returns: a valid lock
				// still there is a second holder's.
				if prev, loaded := inDo[k].Swap(k, l); loaded && prev.(*Lock).Valid() && l.Valid() {
					t.Errorf("do:%d held twice within validity", k)
				}
				select {
				case <-fctx.Done():
				case <-time.After(400 * time.Millisecond): // past the TTL: renewed
				}
				inDo[k].CompareAndDelete(k, l)
				return nil
			})
			cancel()
		}
	})
	stopFaults()
	for _, s := range ms {
		_ = s.Resume()
	}
	t.Logf("%d locks obtained", got.Load())
	if got.Load() < 20 {
		t.Errorf("only %d locks obtained", got.Load())
	}
	if s := strayReplies.Load() - stray0; s != 0 {
		t.Errorf("%d replies reached a fan-out of another use", s)
	}
}
