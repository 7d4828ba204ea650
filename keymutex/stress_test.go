package keymutex_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/keymutex"
)

// stressLiveness bounds a whole stress test: hitting it means a deadlock or a
// lost wake-up, not slowness.
const stressLiveness = 30 * time.Second

// 32 goroutines increment a plain (non-atomic) counter per key under the
// key's lock; the race detector and the exact totals check mutual exclusion.
func TestContentionCounters(t *testing.T) {
	const (
		goroutines = 32
		iterations = 150
		nkeys      = 4
	)
	m := keymutex.New[int]()
	var counters [nkeys]int
	ctx, cancel := context.WithTimeout(context.Background(), stressLiveness)
	defer cancel()

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := keymutex.NewOwner(fmt.Sprint("g", g))
			for i := range iterations {
				k := (g + i) % nkeys
				switch i % 3 {
				case 0: // Await / Release
					l, err := m.Await(ctx, owner, k)
					if err != nil {
						t.Error(err)
						return
					}
					counters[k]++
					runtime.Gosched() // let others queue up behind us
					if err := m.Release(l); err != nil {
						t.Error(err)
						return
					}
				case 1: // WithLock
					if err := m.WithLock(ctx, owner, k, func() error { counters[k]++; runtime.Gosched(); return nil }); err != nil {
						t.Error(err)
						return
					}
				case 2: // TryLock, falling back on Await
					l, err := m.TryLock(owner, k)
					if errors.Is(err, keymutex.ErrBusy) {
						l, err = m.Await(ctx, owner, k)
					}
					if err != nil {
						t.Error(err)
						return
					}
					counters[k]++
					m.ReleaseAsync(l)
				}
			}
		}()
	}
	wg.Wait()
	if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
		t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
	}
	for k, n := range counters {
		if want := goroutines * iterations / nkeys; n != want {
			t.Errorf("counter %d = %d, want %d", k, n, want)
		}
	}
}

// Owners lock random overlapping key sets with AwaitAll, some with tiny
// timeouts (which give up holding nothing) and some saying goodbye halfway.
// Nothing may deadlock and every completed increment must be counted.
func TestAwaitAllStress(t *testing.T) {
	const (
		goroutines = 16
		iterations = 80
		nkeys      = 8
	)
	m := keymutex.New[int]()
	var counters [nkeys]int
	var want [goroutines][nkeys]int
	ctx, cancel := context.WithTimeout(context.Background(), stressLiveness)
	defer cancel()

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for i := range iterations {
				keys := rng.Perm(nkeys)[:1+rng.IntN(4)]
				owner := keymutex.NewOwner(fmt.Sprint("g", g, "/", i))
				actx, acancel := ctx, context.CancelFunc(func() {})
				quitter := rng.IntN(8) == 0
				if quitter {
					actx, acancel = context.WithTimeout(ctx, time.Duration(rng.IntN(200))*time.Microsecond)
				}
				l, err := m.AwaitAll(actx, owner, keys...)
				acancel()
				if err != nil {
					if quitter && errors.Is(err, context.DeadlineExceeded) {
						continue
					}
					t.Errorf("AwaitAll(%v): %v", keys, err)
					return
				}
				for _, k := range keys {
					counters[k]++
					want[g][k]++
				}
				runtime.Gosched()
				if rng.IntN(10) == 0 {
					owner.Goodbye() // frees the lock
					continue
				}
				if err := m.Release(l); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("stress test did not finish within %v: deadlock?", stressLiveness)
	}
	for k := range nkeys {
		total := 0
		for g := range goroutines {
			total += want[g][k]
		}
		if counters[k] != total {
			t.Errorf("counter %d = %d, want %d", k, counters[k], total)
		}
	}
	if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
		t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
	}
}

// Owners tied to contexts that end at random moments, while holding keys,
// awaiting keys or receiving given-away keys: all keys end up free.
func TestOwnerContextStress(t *testing.T) {
	const (
		goroutines = 8
		iterations = 60
	)
	m := keymutex.New[string]()
	keys := []string{"a", "b", "c"}
	ctx, cancel := context.WithTimeout(context.Background(), stressLiveness)
	defer cancel()
	heir := keymutex.NewOwner("heir")
	heirDone := make(chan struct{})
	go func() { // the heir releases whatever it is given
		defer close(heirDone)
		for tr := range m.Transfers(heir) {
			if err := m.Release(tr.Lock); err != nil && !errors.Is(err, keymutex.ErrNotHeld) {
				t.Error(err)
			}
		}
	}()

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range iterations {
				octx, ocancel := context.WithCancel(ctx)
				owner := keymutex.NewOwnerContext(octx, fmt.Sprint("g", g, "/", i))
				if rng.IntN(3) == 0 {
					go ocancel() // dies at some point during the work
				}
				k := keys[rng.IntN(len(keys))]
				l, err := m.Await(ctx, owner, k)
				switch {
				case errors.Is(err, keymutex.ErrOwnerGone):
				case err != nil:
					t.Error(err)
				case rng.IntN(4) == 0:
					err := m.GiveAway(l, heir, i)
					if err != nil && !errors.Is(err, keymutex.ErrNotHeld) && !errors.Is(err, keymutex.ErrTransferFull) {
						t.Error(err)
					}
					if errors.Is(err, keymutex.ErrTransferFull) {
						m.Release(l)
					}
				default:
					if err := m.Release(l); err != nil && !errors.Is(err, keymutex.ErrNotHeld) {
						t.Error(err)
					}
				}
				ocancel()
			}
		}()
	}
	wg.Wait()
	heir.Goodbye()
	<-heirDone
	if ctx.Err() != nil {
		t.Fatalf("stress test did not finish within %v: deadlock?", stressLiveness)
	}
	eventually(t, "all keys free", func() bool { keys, owners := m.HeldKeys(); return keys == 0 && owners == 0 })
}
