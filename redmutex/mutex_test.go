package redmutex

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

func TestNewOptions(t *testing.T) {
	s := server(t)
	shared, err := redlock.New(redlock.Config{Servers: []string{s.Addr()}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	for _, tc := range []struct {
		name string
		o    Options
		want string // substring of the error; "" for success
	}{
		{"neither", Options{}, "set Addr"},
		{"both", Options{Addr: s.Addr(), Client: shared}, "not both"},
		{"negative expiration", Options{Addr: s.Addr(), Expiration: -time.Second}, "negative"},
		{"config with client", Options{Client: shared, Config: redlock.Config{PoolSize: 3}}, "only configures"},
		{"servers in config", Options{Addr: s.Addr(), Config: redlock.Config{Servers: []string{s.Addr()}}}, "must be empty"},
		{"bad addr", Options{Addr: "127.0.0.1:notaport"}, "invalid Config.Servers"},
		{"addr", Options{Addr: s.Addr(), Config: redlock.Config{Logger: quietLogger}}, ""},
		{"redis url", Options{Addr: "redis://" + s.Addr() + "/0", Config: redlock.Config{Logger: quietLogger}}, ""},
		{"client", Options{Client: shared}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.o)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("New = %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Key() != DefaultKey || m.Expiration() != DefaultExpiration {
				t.Fatalf("defaults: key %q expiration %v", m.Key(), m.Expiration())
			}
		})
	}
	// Closing a Mutex leaves a shared client open.
	if ok, err := shared.IsLocked(context.Background(), "x"); err != nil || ok {
		t.Fatalf("shared client after Mutex.Close: %v, %v", ok, err)
	}
}

func TestAcquireExistsRelease(t *testing.T) {
	s := server(t)
	m := newMutex(t, s, "", 0)
	ctx := context.Background()

	if ok, err := m.Exists(ctx); err != nil || ok {
		t.Fatalf("Exists before Acquire = %v, %v", ok, err)
	}
	tok, err := m.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" || get(t, s, DefaultKey) != tok {
		t.Fatalf("token %q, key holds %q", tok, get(t, s, DefaultKey))
	}
	if ms := pttl(t, s, DefaultKey); ms <= 3_000_000 || ms > 3_600_000 {
		t.Fatalf("PTTL = %d ms, want about an hour", ms)
	}
	if ok, err := m.Exists(ctx); err != nil || !ok {
		t.Fatalf("Exists while held = %v, %v", ok, err)
	}

	_, err = m.Acquire(ctx)
	if !errors.Is(err, ErrAlreadyLocked) || !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("second Acquire = %v, want ErrAlreadyLocked and redlock.ErrNotObtained", err)
	}
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) || qe.Op != "lock" {
		t.Fatalf("the *redlock.QuorumError is not reachable: %v", err)
	}
	if !strings.Contains(err.Error(), DefaultKey) {
		t.Fatalf("error %q does not name the key", err)
	}

	if err := m.Release(ctx, "not-a-token"); !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Release(wrong token) = %v, want ErrUnlockFailed and redlock.ErrNotHeld", err)
	}
	var ie *redlock.InputError
	if err := m.Release(ctx, ""); !errors.As(err, &ie) {
		t.Fatalf("Release(\"\") = %v, want a *redlock.InputError", err)
	}
	if get(t, s, DefaultKey) != tok {
		t.Fatal("a wrong token released the key")
	}
	if err := m.Release(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if get(t, s, DefaultKey) != "" {
		t.Fatal("key still there after Release")
	}
	if ok, err := m.Exists(ctx); err != nil || ok {
		t.Fatalf("Exists after Release = %v, %v", ok, err)
	}
	if err := m.Release(ctx, tok); !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("second Release = %v, want ErrUnlockFailed and redlock.ErrNotHeld", err)
	}
}

// The token is the lock (RedMutex's release_lock): a second Mutex with its
// own client (another process, in effect) releases a token acquired by the
// first. A wrong or already-released token is refused with ErrUnlockFailed
// and leaves the key alone.
func TestReleaseByAnotherMutex(t *testing.T) {
	s := server(t)
	a, b := newMutex(t, s, "job", time.Minute), newMutex(t, s, "job", time.Minute)
	if a.c == b.c {
		t.Fatal("the two Mutexes share a client")
	}
	ctx := context.Background()
	tok, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "not-the-token"); !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Release of a wrong token = %v, want ErrUnlockFailed and redlock.ErrNotHeld", err)
	}
	if get(t, s, "job") != tok {
		t.Fatal("a wrong token released the key")
	}
	if err := b.Release(ctx, tok); err != nil {
		t.Fatalf("Release by another Mutex = %v, want nil", err)
	}
	if get(t, s, "job") != "" {
		t.Fatal("key still there after another Mutex released its token")
	}
	for name, m := range map[string]*Mutex{"acquirer": a, "releaser": b} {
		if err := m.Release(ctx, tok); !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
			t.Fatalf("Release of an already released token by the %s = %v, want ErrUnlockFailed and redlock.ErrNotHeld", name, err)
		}
	}
	// The key is free again, for either Mutex.
	tok2, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, tok); !errors.Is(err, ErrUnlockFailed) {
		t.Fatalf("Release of the old token while a new one holds = %v, want ErrUnlockFailed", err)
	}
	if get(t, s, "job") != tok2 {
		t.Fatal("an old token released the new holder's key")
	}
	if err := a.Release(ctx, tok2); err != nil {
		t.Fatal(err)
	}
}

// A token whose key was taken over is not the holder: Release fails with
// ErrUnlockFailed and redlock.ErrNotHeld, and the new holder keeps the key.
func TestReleaseAfterTakeover(t *testing.T) {
	s := server(t)
	a, b := newMutex(t, s, "job", time.Minute), newMutex(t, s, "job", time.Minute)
	ctx := context.Background()
	old, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(ctx, "DEL", "job"); err != nil { // an operator, or a server that forgot it
		t.Fatal(err)
	}
	cur, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Release(ctx, old)
	if !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Release of a taken-over token = %v, want ErrUnlockFailed and redlock.ErrNotHeld", err)
	}
	if get(t, s, "job") != cur {
		t.Fatal("the new holder lost its key")
	}
	if err := b.Release(ctx, cur); err != nil {
		t.Fatal(err)
	}
}

// A holder that crashes without releasing blocks the key only until its
// expiration.
func TestExpirationFreesCrashedHolder(t *testing.T) {
	s := server(t)
	crashed := newMutex(t, s, "job", 300*time.Millisecond)
	other := newMutex(t, s, "job", time.Minute)
	ctx := context.Background()
	if _, err := crashed.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	_ = crashed.Close() // the process is gone; nobody releases
	if _, err := other.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("Acquire while held = %v, want ErrAlreadyLocked", err)
	}
	var tok string
	eventually(t, 10*time.Second, "the key expires and can be acquired", func() bool {
		var err error
		tok, err = other.Acquire(ctx)
		if err != nil && !errors.Is(err, ErrAlreadyLocked) {
			t.Fatal(err)
		}
		return err == nil
	})
	if err := other.Release(ctx, tok); err != nil {
		t.Fatal(err)
	}
}

// Many acquirers on two clients at once: exactly one wins.
func TestConcurrentAcquireOneWinner(t *testing.T) {
	s := server(t)
	ms := []*Mutex{newMutex(t, s, "job", time.Minute), newMutex(t, s, "job", time.Minute)}
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		var wins, busies atomic.Int32
		var winner string
		var wmu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tok, err := ms[i%2].Acquire(ctx)
				switch {
				case err == nil:
					wins.Add(1)
					wmu.Lock()
					winner = tok + "@" + string(rune('0'+i%2))
					wmu.Unlock()
				case errors.Is(err, ErrAlreadyLocked):
					busies.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || busies.Load() != 9 {
			t.Fatalf("round %d: %d winners, %d busy; want 1 and 9", round, wins.Load(), busies.Load())
		}
		tok, idx := winner[:len(winner)-2], winner[len(winner)-1]-'0'
		if err := ms[idx].Release(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
}

// An unreachable server is an error, never "already locked" or "not locked".
func TestServerDown(t *testing.T) {
	s := server(t)
	m := newMutex(t, s, "job", time.Minute)
	ctx := context.Background()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err := m.Acquire(ctx)
	if err == nil || errors.Is(err, ErrAlreadyLocked) || !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("Acquire with the server down = %v, want redlock.ErrNotObtained, not ErrAlreadyLocked", err)
	}
	if !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("error %q does not name the server", err)
	}
	if ok, err := m.Exists(ctx); err == nil {
		t.Fatalf("Exists with the server down = %v, nil; want an error", ok)
	}
	v, err := Synchronize(ctx, m, func(context.Context) (int, error) {
		t.Error("fn ran without the lock")
		return 1, nil
	})
	if v != 0 || err == nil || errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("Synchronize with the server down = %v, %v", v, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Acquire after the server is back", func() bool {
		tok, err := m.Acquire(ctx)
		if err == nil {
			return m.Release(ctx, tok) == nil
		}
		return false
	})
}

func TestSynchronize(t *testing.T) {
	s := server(t)
	m := newMutex(t, s, "job", time.Minute)
	ctx := context.Background()

	v, err := Synchronize(ctx, m, func(ctx context.Context) (string, error) {
		if get(t, s, "job") == "" {
			t.Error("fn runs without the key set")
		}
		if l := redlock.LockFromContext(ctx); l == nil || l.Token() != get(t, s, "job") {
			t.Error("fn's context does not carry the lock")
		}
		return "completed", nil
	})
	if v != "completed" || err != nil {
		t.Fatalf("Synchronize = %q, %v", v, err)
	}
	if get(t, s, "job") != "" {
		t.Fatal("key not released after Synchronize")
	}

	boom := errors.New("boom")
	v, err = Synchronize(ctx, m, func(context.Context) (string, error) { return "partial", boom })
	if v != "partial" || !errors.Is(err, boom) {
		t.Fatalf("Synchronize with a failing fn = %q, %v", v, err)
	}
	if get(t, s, "job") != "" {
		t.Fatal("key not released after fn failed")
	}

	// Busy: fn does not run, the acquire error comes back.
	tok, err := m.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	v, err = Synchronize(ctx, m, func(context.Context) (string, error) { ran = true; return "x", nil })
	if ran || v != "" || !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("Synchronize while held: ran=%v, %q, %v; want ErrAlreadyLocked and fn not run", ran, v, err)
	}
	if get(t, s, "job") != tok {
		t.Fatal("a busy Synchronize touched the holder's key")
	}
	if err := m.Release(ctx, tok); err != nil {
		t.Fatal(err)
	}

	if _, err := Synchronize[int](ctx, m, nil); err == nil {
		t.Fatal("nil fn accepted")
	}
}

func TestSynchronizeReleasesOnPanic(t *testing.T) {
	s := server(t)
	m := newMutex(t, s, "job", time.Minute)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		_, _ = Synchronize(context.Background(), m, func(context.Context) (int, error) { panic("boom") })
	}()
	if get(t, s, "job") != "" {
		t.Fatal("key not released after a panic")
	}
}

// fn outlived its lock: Synchronize returns fn's value and ErrUnlockFailed.
func TestSynchronizeLockLost(t *testing.T) {
	s := server(t)
	m := newMutex(t, s, "job", time.Minute)
	ctx := context.Background()
	v, err := Synchronize(ctx, m, func(context.Context) (int, error) {
		_, _ = s.Do(ctx, "DEL", "job") // the key vanished under the holder
		return 7, nil
	})
	if v != 7 || !errors.Is(err, ErrUnlockFailed) || !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Synchronize = %v, %v; want 7 and ErrUnlockFailed", v, err)
	}
}

func TestClosed(t *testing.T) {
	s := server(t)
	shared, err := redlock.New(redlock.Config{Servers: []string{s.Addr()}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	m, err := New(Options{Client: shared, Key: "job"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := m.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := m.Acquire(ctx); !errors.Is(err, redlock.ErrClosed) {
		t.Fatalf("Acquire after Close = %v", err)
	}
	if err := m.Release(ctx, tok); !errors.Is(err, redlock.ErrClosed) {
		t.Fatalf("Release after Close = %v", err)
	}
	if _, err := m.Exists(ctx); !errors.Is(err, redlock.ErrClosed) {
		t.Fatalf("Exists after Close = %v", err)
	}
	if _, err := Synchronize(ctx, m, func(context.Context) (int, error) { return 0, nil }); !errors.Is(err, redlock.ErrClosed) {
		t.Fatalf("Synchronize after Close = %v", err)
	}
	// Close does not release: the key stays until it expires.
	if get(t, s, "job") != tok {
		t.Fatal("Close released the key")
	}
	// The token still releases it through another Mutex.
	other := newMutex(t, s, "job", time.Minute)
	if err := other.Release(ctx, tok); err != nil {
		t.Fatalf("Release through another Mutex after Close = %v", err)
	}
	if get(t, s, "job") != "" {
		t.Fatal("key still there")
	}
	// A Mutex that made its own client: ErrClosed too.
	own := newMutex(t, s, "job", time.Minute)
	tok, err = own.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if err := own.Release(ctx, tok); !errors.Is(err, redlock.ErrClosed) {
		t.Fatalf("Release after Close (own client) = %v", err)
	}
	if err := other.Release(ctx, tok); err != nil {
		t.Fatal(err)
	}
}
