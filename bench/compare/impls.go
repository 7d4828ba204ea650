package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/bench/floor"
	"github.com/quorumlock/quorumlock/redlock"
)

// ttl is the lock TTL in every scenario.
const ttl = 10 * time.Second

// locker is one implementation under comparison. Lock makes one attempt
// (no contention in the scenarios that use it); Wait retries with the
// library's own retry mechanism, set to a delay drawn uniformly from
// [retryBase/2, 3×retryBase/2), until ctx ends.
type locker interface {
	Name() string
	Lock(ctx context.Context, res string) (any, error)
	Wait(ctx context.Context, res string) (any, error)
	Unlock(ctx context.Context, held any) error
	Close()
}

var errNoQuorum = errors.New("unlock: no quorum")

func jitter(base time.Duration) time.Duration { return base/2 + rand.N(base) }

// --- the floor: hand-written go-redis Redlock returning at quorum ---

type floorLocker struct {
	name      string
	f         *floor.Floor
	retryBase time.Duration
}

func newFloor(name string, addrs []string, retryBase time.Duration) (*floorLocker, error) {
	f := floor.New(addrs, 0)
	if err := f.Warm(context.Background()); err != nil {
		f.Close()
		return nil, err
	}
	return &floorLocker{name: name, f: f, retryBase: retryBase}, nil
}

func (l *floorLocker) Name() string { return l.name }
func (l *floorLocker) Close()       { l.f.Close() }
func (l *floorLocker) Lock(ctx context.Context, res string) (any, error) {
	return l.f.Lock(ctx, res, ttl)
}
func (l *floorLocker) Wait(ctx context.Context, res string) (any, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		h, err := l.f.Lock(ctx, res, ttl)
		if err == nil {
			return h, nil
		}
		t.Reset(jitter(l.retryBase))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
func (l *floorLocker) Unlock(ctx context.Context, held any) error {
	if !l.f.Unlock(ctx, held.(*floor.Lock)) {
		return errNoQuorum
	}
	return nil
}

// --- quorumlock ---

type qlLocker struct {
	name string
	c    *redlock.Client
}

func newQuorumlock(name string, groups [][]string, retryBase time.Duration) (*qlLocker, error) {
	cfg := redlock.Config{
		RetryStrategy: redlock.LinearBackoff(1<<30, retryBase),
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if len(groups) == 1 {
		cfg.Servers = groups[0]
	} else {
		cfg.Cluster = groups
	}
	c, err := redlock.New(cfg)
	if err != nil {
		return nil, err
	}
	return &qlLocker{name: name, c: c}, nil
}

func (l *qlLocker) Name() string { return l.name }
func (l *qlLocker) Close()       { _ = l.c.Close() }
func (l *qlLocker) Lock(ctx context.Context, res string) (any, error) {
	return l.c.TryLock(ctx, res, ttl)
}
func (l *qlLocker) Wait(ctx context.Context, res string) (any, error) {
	return l.c.Lock(ctx, res, ttl)
}
func (l *qlLocker) Unlock(ctx context.Context, held any) error {
	return held.(*redlock.Lock).Release(ctx)
}

// --- quorumlock's RWMutex and Semaphore, on the client of a qlLocker ---

// qlKindLocker takes, on each fresh resource, a reader's share (kind
// "rlock"), an RWMutex's exclusive lock ("wlock") or a permit of a
// 2-permit Semaphore ("acquire").
type qlKindLocker struct {
	name string
	c    *redlock.Client
	kind string
}

func (l *qlKindLocker) Name() string { return l.name }
func (l *qlKindLocker) Close()       {}
func (l *qlKindLocker) Lock(ctx context.Context, res string) (any, error) {
	switch l.kind {
	case "rlock":
		return l.c.RWMutex(res).TryRLock(ctx, ttl)
	case "wlock":
		return l.c.RWMutex(res).TryLock(ctx, ttl)
	}
	s, err := l.c.Semaphore(res, 2)
	if err != nil {
		return nil, err
	}
	return s.TryAcquire(ctx, ttl)
}
func (l *qlKindLocker) Wait(ctx context.Context, res string) (any, error) {
	switch l.kind {
	case "rlock":
		return l.c.RWMutex(res).RLock(ctx, ttl)
	case "wlock":
		return l.c.RWMutex(res).Lock(ctx, ttl)
	}
	s, err := l.c.Semaphore(res, 2)
	if err != nil {
		return nil, err
	}
	return s.Acquire(ctx, ttl)
}
func (l *qlKindLocker) Unlock(ctx context.Context, held any) error {
	return held.(*redlock.Lock).Release(ctx)
}

// --- redsync v4 (go-redis v9 pools, default go-redis options) ---

type rsLocker struct {
	name     string
	rs       *redsync.Redsync
	clients  []*redis.Client
	opts     []redsync.Option
	waitOpts []redsync.Option
}

func newRedsync(name string, addrs []string, failFast bool, retryBase time.Duration) *rsLocker {
	l := &rsLocker{name: name}
	var pools []redsyncPool
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		l.clients = append(l.clients, c)
		pools = append(pools, goredis.NewPool(c))
	}
	l.rs = redsync.New(pools...)
	l.opts = []redsync.Option{redsync.WithExpiry(ttl)}
	if failFast {
		l.opts = append(l.opts, redsync.WithFailFast(true))
	}
	l.waitOpts = append(append([]redsync.Option(nil), l.opts...),
		redsync.WithTries(1<<30),
		redsync.WithRetryDelayFunc(func(int) time.Duration { return jitter(retryBase) }))
	return l
}

func (l *rsLocker) Name() string { return l.name }
func (l *rsLocker) Close() {
	for _, c := range l.clients {
		_ = c.Close()
	}
}
func (l *rsLocker) Lock(ctx context.Context, res string) (any, error) {
	m := l.rs.NewMutex(res, l.opts...)
	return m, m.LockContext(ctx)
}
func (l *rsLocker) Wait(ctx context.Context, res string) (any, error) {
	m := l.rs.NewMutex(res, l.waitOpts...)
	return m, m.LockContext(ctx)
}
func (l *rsLocker) Unlock(ctx context.Context, held any) error {
	ok, err := held.(*redsync.Mutex).UnlockContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errNoQuorum
	}
	return nil
}

// --- bsm/redislock on one master (default go-redis options) ---

type bsmLocker struct {
	name string
	rc   *redis.Client
	c    *redislock.Client
	wait *redislock.Options
}

type jitterBackoff time.Duration

func (b jitterBackoff) NextBackoff() time.Duration { return jitter(time.Duration(b)) }

func newBSM(name, addr string, retryBase time.Duration) *bsmLocker {
	rc := redis.NewClient(&redis.Options{Addr: addr})
	return &bsmLocker{name: name, rc: rc, c: redislock.New(rc), wait: &redislock.Options{RetryStrategy: jitterBackoff(retryBase)}}
}

func (l *bsmLocker) Name() string { return l.name }
func (l *bsmLocker) Close()       { _ = l.rc.Close() }
func (l *bsmLocker) Lock(ctx context.Context, res string) (any, error) {
	return l.c.Obtain(ctx, res, ttl, nil)
}
func (l *bsmLocker) Wait(ctx context.Context, res string) (any, error) {
	return l.c.Obtain(ctx, res, ttl, l.wait)
}
func (l *bsmLocker) Unlock(ctx context.Context, held any) error {
	return held.(*redislock.Lock).Release(ctx)
}
