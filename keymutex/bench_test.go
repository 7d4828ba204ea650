package keymutex_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quorumlock/quorumlock/keymutex"
)

// mapMutex is the usual hand-rolled baseline: a map of *sync.Mutex guarded by
// a sync.Mutex. It never frees its per-key mutexes, has no owners, no
// timeouts, no FIFO order and no multi-key locks.
type mapMutex[K comparable] struct {
	mu sync.Mutex
	m  map[K]*sync.Mutex
}

func (mm *mapMutex[K]) get(k K) *sync.Mutex {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	if mm.m == nil {
		mm.m = make(map[K]*sync.Mutex)
	}
	mu := mm.m[k]
	if mu == nil {
		mu = new(sync.Mutex)
		mm.m[k] = mu
	}
	return mu
}

func (mm *mapMutex[K]) Lock(k K)   { mm.get(k).Lock() }
func (mm *mapMutex[K]) Unlock(k K) { mm.get(k).Unlock() }

// BenchmarkUncontended locks and releases one key in one goroutine.
func BenchmarkUncontended(b *testing.B) {
	b.Run("keymutex/TryLock", func(b *testing.B) {
		b.ReportAllocs()
		m := keymutex.New[string]()
		o := keymutex.NewOwner("bench")
		for b.Loop() {
			l, err := m.TryLock(o, "key")
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Release(l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("keymutex/Await", func(b *testing.B) {
		b.ReportAllocs()
		m := keymutex.New[string]()
		o := keymutex.NewOwner("bench")
		ctx := context.Background()
		for b.Loop() {
			l, err := m.Await(ctx, o, "key")
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Release(l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map-of-sync.Mutex", func(b *testing.B) {
		b.ReportAllocs()
		var mm mapMutex[string]
		for b.Loop() {
			mm.Lock("key")
			mm.Unlock("key")
		}
	})
}

// BenchmarkParallelDistinctKeys: every goroutine locks its own key, so the
// only contention is on the structures' internal locks.
func BenchmarkParallelDistinctKeys(b *testing.B) {
	var ids atomic.Int64
	b.Run("keymutex", func(b *testing.B) {
		b.ReportAllocs()
		m := keymutex.New[string]()
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			key := fmt.Sprint("key", ids.Add(1))
			o := keymutex.NewOwner(key)
			for pb.Next() {
				l, err := m.Await(ctx, o, key)
				if err != nil {
					b.Error(err)
					return
				}
				m.Release(l)
			}
		})
	})
	b.Run("map-of-sync.Mutex", func(b *testing.B) {
		b.ReportAllocs()
		var mm mapMutex[string]
		b.RunParallel(func(pb *testing.PB) {
			key := fmt.Sprint("key", ids.Add(1))
			for pb.Next() {
				mm.Lock(key)
				mm.Unlock(key)
			}
		})
	})
}

// BenchmarkParallelSharedKeys: all goroutines fight over 4 keys, so lockers
// wait (keymutex hands keys over in FIFO order; sync.Mutex lets newcomers
// barge in, which is faster but unfair).
func BenchmarkParallelSharedKeys(b *testing.B) {
	keys := []string{"a", "b", "c", "d"}
	var ids atomic.Int64
	b.Run("keymutex", func(b *testing.B) {
		b.ReportAllocs()
		m := keymutex.New[string]()
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			id := ids.Add(1)
			o := keymutex.NewOwner(fmt.Sprint("g", id))
			for i := int(id); pb.Next(); i++ {
				l, err := m.Await(ctx, o, keys[i%len(keys)])
				if err != nil {
					b.Error(err)
					return
				}
				m.Release(l)
			}
		})
	})
	b.Run("map-of-sync.Mutex", func(b *testing.B) {
		b.ReportAllocs()
		var mm mapMutex[string]
		b.RunParallel(func(pb *testing.PB) {
			for i := int(ids.Add(1)); pb.Next(); i++ {
				k := keys[i%len(keys)]
				mm.Lock(k)
				mm.Unlock(k)
			}
		})
	})
}

// BenchmarkAwaitAll locks three keys at once, uncontended.
func BenchmarkAwaitAll(b *testing.B) {
	b.ReportAllocs()
	m := keymutex.New[string]()
	o := keymutex.NewOwner("bench")
	ctx := context.Background()
	for b.Loop() {
		l, err := m.AwaitAll(ctx, o, "c", "a", "b")
		if err != nil {
			b.Fatal(err)
		}
		m.Release(l)
	}
}
