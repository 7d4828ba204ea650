package redmutex_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redmutex"
)

// startRedis starts a throwaway redis-server on loopback for an example.
// In an application, Addr is your server, e.g. "redis://localhost:6379".
func startRedis() *redisproc.Server {
	s, err := redisproc.Start(redisproc.Options{})
	if err != nil {
		panic(err)
	}
	return s
}

// Acquire the lock, do the work, release it (RedMutex: MyMutex.acquire_lock/0
// and MyMutex.release_lock/1, the lock_unlock function of its README).
func Example() {
	redis := startRedis()
	defer redis.Close()

	// config :my_app, MyApp.MyMutex, url: ..., key: "red_mutex_lock", expiration_in_seconds: 3_600
	m, err := redmutex.New(redmutex.Options{
		Addr:       "redis://" + redis.Addr(),
		Key:        "red_mutex_lock",
		Expiration: time.Hour,
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx := context.Background()
	work := func() (string, error) { return "completed", nil }

	lock, err := m.Acquire(ctx)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	result, _ := work()
	fmt.Println(result)
	fmt.Println(m.Release(ctx, lock))
	// Output:
	// completed
	// <nil>
}

// Run a function under the lock and get its result (RedMutex:
// MyMutex.synchronize/1).
func ExampleSynchronize() {
	redis := startRedis()
	defer redis.Close()
	m, err := redmutex.New(redmutex.Options{Addr: redis.Addr()})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	ctx := context.Background()

	result, err := redmutex.Synchronize(ctx, m, func(ctx context.Context) (string, error) {
		// work
		return "completed", nil
	})
	fmt.Println(result, err)

	// While someone holds the lock, the function does not run.
	lock, _ := m.Acquire(ctx)
	_, err = redmutex.Synchronize(ctx, m, func(ctx context.Context) (string, error) {
		fmt.Println("not printed")
		return "", nil
	})
	fmt.Println(err)
	fmt.Println(errors.Is(err, redmutex.ErrAlreadyLocked))
	_ = m.Release(ctx, lock)
	// Output:
	// completed <nil>
	// redmutex: lock "red_mutex_lock": already locked
	// true
}

// A second acquisition finds the lock taken; Exists tells whether it is
// (RedMutex: acquire_lock/0 returning {:error, :already_locked}, and
// exists_lock/0).
func ExampleMutex_Acquire() {
	redis := startRedis()
	defer redis.Close()
	m, err := redmutex.New(redmutex.Options{Addr: redis.Addr(), Key: "report"})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	ctx := context.Background()

	lock, err := m.Acquire(ctx)
	fmt.Println(err)
	_, err = m.Acquire(ctx)
	fmt.Println(errors.Is(err, redmutex.ErrAlreadyLocked))
	fmt.Println(m.Exists(ctx))

	_ = m.Release(ctx, lock)
	fmt.Println(m.Exists(ctx))
	// Output:
	// <nil>
	// true
	// true <nil>
	// false <nil>
}

// Only the holder's token releases the lock (RedMutex: release_lock/1
// returning {:error, :unlock_fail}); it does so through any Mutex on the
// key, in any process.
func ExampleMutex_Release() {
	redis := startRedis()
	defer redis.Close()
	m, err := redmutex.New(redmutex.Options{Addr: redis.Addr(), Key: "report"})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	ctx := context.Background()

	lock, _ := m.Acquire(ctx)
	err = m.Release(ctx, "someone else's token")
	fmt.Println(errors.Is(err, redmutex.ErrUnlockFailed))
	fmt.Println(m.Release(ctx, lock))
	fmt.Println(errors.Is(m.Release(ctx, lock), redmutex.ErrUnlockFailed)) // released already
	// Output:
	// true
	// <nil>
	// true
}

// Run a function under a lock on a key, waiting for it if it is busy
// (RedisMutex: RedisMutex.with_lock/3, the PossumLodge example, with
// timeout: 500 and expiry: 1_000).
func ExampleLocker_WithLock() {
	redis := startRedis()
	defer redis.Close()
	// {RedisMutex, redis_url: ...} in the supervision tree.
	mutex, err := redmutex.NewLocker(redmutex.LockerOptions{Addr: "redis://" + redis.Addr()})
	if err != nil {
		panic(err)
	}
	defer mutex.Close()
	ctx := context.Background()

	var motto string
	err = mutex.WithLock(ctx, "my_key", func(ctx context.Context) error {
		motto = "Quando omni flunkus moritati"
		return nil
	}, redmutex.WithTimeout(500*time.Millisecond), redmutex.WithExpiration(time.Second))
	fmt.Println(motto, err)
	// Output:
	// Quando omni flunkus moritati <nil>
}

// A key that stays busy past the timeout: WithLock gives up with ErrTimeout
// instead of waiting for ever (RedisMutex raises RedisMutex.Error,
// "Unable to obtain lock.").
func ExampleLocker_WithLock_timeout() {
	redis := startRedis()
	defer redis.Close()
	mutex, err := redmutex.NewLocker(redmutex.LockerOptions{Addr: redis.Addr()})
	if err != nil {
		panic(err)
	}
	defer mutex.Close()
	ctx := context.Background()

	// Another worker holds "my_key" for a minute.
	holder, _ := redmutex.New(redmutex.Options{Addr: redis.Addr(), Key: "my_key", Expiration: time.Minute})
	defer holder.Close()
	if _, err := holder.Acquire(ctx); err != nil {
		panic(err)
	}

	err = mutex.WithLock(ctx, "my_key", func(ctx context.Context) error {
		fmt.Println("not printed")
		return nil
	}, redmutex.WithTimeout(200*time.Millisecond))
	fmt.Println(err)
	fmt.Println(errors.Is(err, redmutex.ErrTimeout))
	// Output:
	// redmutex: lock "my_key" not obtained within 200ms: timeout
	// true
}
