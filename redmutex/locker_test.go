package redmutex

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

func TestNewLockerOptions(t *testing.T) {
	s := server(t)
	for _, tc := range []struct {
		name string
		o    LockerOptions
		want string
	}{
		{"neither", LockerOptions{}, "set Addr"},
		{"negative interval", LockerOptions{Addr: s.Addr(), RetryInterval: -1}, "negative"},
		{"cluster in config", LockerOptions{Addr: s.Addr(), Config: redlock.Config{Cluster: [][]string{{s.Addr()}}}}, "must be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lk, err := NewLocker(tc.o)
			if err == nil {
				lk.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewLocker = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestWithLockRunsAndReleases(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	ctx := context.Background()
	boom := errors.New("boom")
	err := lk.WithLock(ctx, "my_key", func(ctx context.Context) error {
		if get(t, s, "my_key") == "" {
			t.Error("fn runs without the key set")
		}
		if ms := pttl(t, s, "my_key"); ms <= 10_000 || ms > 20_000 {
			t.Errorf("PTTL = %d ms, want the 20 s default expiration", ms)
		}
		if _, ok := ctx.Deadline(); !ok {
			t.Error("fn's context has no deadline (the lock's validity)")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithLock = %v, want fn's error", err)
	}
	if get(t, s, "my_key") != "" {
		t.Fatal("key not released")
	}
	err = lk.WithLock(ctx, "my_key", func(context.Context) error {
		if ms := pttl(t, s, "my_key"); ms <= 0 || ms > 1_000 {
			t.Errorf("PTTL = %d ms, want the 1 s expiration", ms)
		}
		return nil
	}, WithExpiration(time.Second), WithTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.WithLock(ctx, "my_key", nil); err == nil {
		t.Fatal("nil fn accepted")
	}
	var ie *redlock.InputError
	if err := lk.WithLock(ctx, "my_key", func(context.Context) error { return nil }, WithExpiration(0)); !errors.As(err, &ie) {
		t.Fatalf("zero expiration = %v, want a *redlock.InputError", err)
	}
	if err := lk.WithLock(ctx, "", func(context.Context) error { return nil }); !errors.As(err, &ie) {
		t.Fatalf("empty key = %v, want a *redlock.InputError", err)
	}
}

func TestWithLockReleasesOnPanic(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		_ = lk.WithLock(context.Background(), "my_key", func(context.Context) error { panic("boom") })
	}()
	if get(t, s, "my_key") != "" {
		t.Fatal("key not released after a panic")
	}
}

// waitsFor checks that WithLock on lk waits while the key is held and
// enters once the holder releases it.
func waitsFor(t *testing.T, lk *Locker, holder *Mutex, hold time.Duration) {
	t.Helper()
	ctx := context.Background()
	tok, err := holder.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- lk.WithLock(ctx, holder.Key(), func(context.Context) error {
			if !released.Load() {
				return errors.New("entered while the holder still had the key")
			}
			return nil
		}, WithTimeout(30*time.Second))
	}()
	time.Sleep(hold)
	select {
	case err := <-done:
		t.Fatalf("WithLock returned while the key was held: %v", err)
	default:
	}
	released.Store(true)
	if err := holder.Release(ctx, tok); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WithLock did not enter after the holder released")
	}
}

func TestWithLockWaitsForHolder(t *testing.T) {
	s := server(t)
	waitsFor(t, newLocker(t, s), newMutex(t, s, "my_key", time.Minute), 200*time.Millisecond)
}

// A shared client whose own retries give up early: WithLock keeps asking
// until its timeout.
func TestWithLockSharedClientOutlastsItsRetries(t *testing.T) {
	s := server(t)
	c, err := redlock.New(redlock.Config{Servers: []string{s.Addr()}, MaxRetry: 1, RetryInterval: 5 * time.Millisecond, Logger: quietLogger, NodeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lk, err := NewLocker(LockerOptions{Client: c, RetryInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	waitsFor(t, lk, newMutex(t, s, "my_key", time.Minute), 300*time.Millisecond)
	if ok, err := c.IsLocked(context.Background(), "my_key"); err != nil || ok {
		t.Fatalf("shared client after Locker.Close: %v, %v", ok, err)
	}
}

func TestWithLockTimeout(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	holder := newMutex(t, s, "my_key", time.Minute)
	ctx := context.Background()
	tok, err := holder.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{300 * time.Millisecond, 0} {
		start := time.Now()
		err = lk.WithLock(ctx, "my_key", func(context.Context) error {
			t.Error("fn ran without the lock")
			return nil
		}, WithTimeout(timeout))
		elapsed := time.Since(start)
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, redlock.ErrNotObtained) {
			t.Fatalf("timeout %v: WithLock = %v, want ErrTimeout", timeout, err)
		}
		var te *TimeoutError
		if !errors.As(err, &te) || te.Key != "my_key" || te.Timeout != timeout {
			t.Fatalf("timeout %v: want a *TimeoutError for my_key, got %#v", timeout, te)
		}
		want := `redmutex: lock "my_key" not obtained within ` + timeout.String() + `: timeout`
		if err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
		if elapsed < timeout || elapsed > timeout+10*time.Second {
			t.Fatalf("timeout %v: WithLock returned after %v", timeout, elapsed)
		}
	}
	if get(t, s, "my_key") != tok {
		t.Fatal("the waiter touched the holder's key")
	}
}

// The caller's context ending first is the caller's error, not ErrTimeout.
func TestWithLockCallerContext(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	holder := newMutex(t, s, "my_key", time.Minute)
	if _, err := holder.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := lk.WithLock(ctx, "my_key", func(context.Context) error { return nil }, WithTimeout(time.Minute))
	if errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("WithLock = %v, want redlock.ErrNotObtained joined with context.DeadlineExceeded", err)
	}
}

// A server that stays down: the wait ends at the timeout and the error
// names the server.
func TestWithLockServerDown(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	err := lk.WithLock(context.Background(), "my_key", func(context.Context) error { return nil }, WithTimeout(300*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("WithLock = %v, want ErrTimeout naming %s", err, s.Addr())
	}
}

// fn's context ends when the expiration passes; the release then fails.
func TestWithLockExpirationCancelsFn(t *testing.T) {
	s := server(t)
	lk := newLocker(t, s)
	err := lk.WithLock(context.Background(), "my_key", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(10 * time.Second):
			return errors.New("fn's context outlived the expiration")
		}
	}, WithExpiration(200*time.Millisecond))
	if !errors.Is(err, redlock.ErrLockLost) {
		t.Fatalf("WithLock = %v, want redlock.ErrLockLost", err)
	}
	// fn succeeding after the key expired: ErrUnlockFailed.
	err = lk.WithLock(context.Background(), "my_key", func(ctx context.Context) error {
		<-ctx.Done()
		eventually(t, 5*time.Second, "the key expires", func() bool { return get(t, s, "my_key") == "" })
		return nil
	}, WithExpiration(200*time.Millisecond))
	if !errors.Is(err, ErrUnlockFailed) {
		t.Fatalf("WithLock = %v, want ErrUnlockFailed", err)
	}
}

// Goroutines on two clients never run fn at the same time: a read-modify-
// write counter in Redis ends exact.
func TestWithLockMutualExclusion(t *testing.T) {
	s := server(t)
	var lockers []*Locker
	for i := 0; i < 2; i++ {
		lk, err := NewLocker(LockerOptions{Addr: s.Addr(), RetryInterval: 5 * time.Millisecond, Config: testConfig()})
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Close()
		lockers = append(lockers, lk)
	}
	const workers, rounds = 6, 15
	var inside atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lk := lockers[w%2]
			for r := 0; r < rounds; r++ {
				err := lk.WithLock(context.Background(), "counter-lock", func(ctx context.Context) error {
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d goroutines inside WithLock", n)
					}
					defer inside.Add(-1)
					v, err := s.Do(ctx, "GET", "counter")
					if err != nil {
						return err
					}
					n := 0
					if v != "$-1" {
						n, _ = strconv.Atoi(v[1:])
					}
					_, err = s.Do(ctx, "SET", "counter", strconv.Itoa(n+1))
					return err
				}, WithTimeout(30*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := get(t, s, "counter"); got != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter = %s, want %d", got, workers*rounds)
	}
}
