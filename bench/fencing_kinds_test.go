package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// BenchmarkFencingKinds compares each scripted lock kind's acquire+release
// with Config.Fencing off and on, on one group of 5 masters, interleaved in
// rounds (for each kind: off, on) so both see the same machine load: an
// RWMutex's RLock and Lock, a one-permit Semaphore's Acquire, and LockAll
// of two resources. One goroutine: ns/op, p50-µs (the median cycle) and
// cmds/op (10 without a write-back: the acquire script and the release on
// each master; with Fencing on, more means the write-back round trip). Each
// cycle checks that Fence is > 0 exactly when Fencing is on.
func BenchmarkFencingKinds(b *testing.B) {
	servers := addrs(b, 5)
	fenced := func(fencing bool, fence int64) error {
		if fencing != (fence > 0) {
			return fmt.Errorf("fencing %v but Fence() = %d", fencing, fence)
		}
		return nil
	}
	// lock is one kind's acquire of res, returning its fence and release.
	type lock func(ctx context.Context, c *redlock.Client, res string) (int64, func(context.Context) error, error)
	held := func(l *redlock.Lock, err error) (int64, func(context.Context) error, error) {
		if err != nil {
			return 0, nil, err
		}
		return l.Fence(), l.Release, nil
	}
	kinds := []struct {
		name string
		lock lock
	}{
		{"rlock", func(ctx context.Context, c *redlock.Client, res string) (int64, func(context.Context) error, error) {
			return held(c.RWMutex(res).RLock(ctx, ttl))
		}},
		{"wlock", func(ctx context.Context, c *redlock.Client, res string) (int64, func(context.Context) error, error) {
			return held(c.RWMutex(res).Lock(ctx, ttl))
		}},
		{"permit", func(ctx context.Context, c *redlock.Client, res string) (int64, func(context.Context) error, error) {
			s, err := c.Semaphore(res, 1)
			if err != nil {
				return 0, nil, err
			}
			return held(s.Acquire(ctx, ttl))
		}},
		{"lockall2", func(ctx context.Context, c *redlock.Client, res string) (int64, func(context.Context) error, error) {
			m, err := c.LockAll(ctx, []string{res, res + ":b"}, ttl)
			if err != nil {
				return 0, nil, err
			}
			return m.Fence(res), m.Release, nil
		}},
	}
	for round := 1; round <= 3; round++ {
		for _, k := range kinds {
			for _, fencing := range []bool{false, true} {
				b.Run(fmt.Sprintf("round=%d/kind=%s/fencing=%v", round, k.name, fencing), func(b *testing.B) {
					c := newClientWith(b, redlock.Config{Servers: servers, Fencing: fencing, NodeTimeout: time.Second})
					runTimedCycles(b, c, "fencekind", func(ctx context.Context, res string) error {
						fence, release, err := k.lock(ctx, c, res)
						if err != nil {
							return err
						}
						if err := fenced(fencing, fence); err != nil {
							return err
						}
						return release(ctx)
					})
				})
			}
		}
	}
}
