package lockflag_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/lockflag"
)

func TestStatusString(t *testing.T) {
	tests := []struct {
		s    lockflag.Status
		want string
	}{
		{lockflag.Unlocked, "unlocked"},
		{lockflag.Locked, "locked"},
		{lockflag.Status(7), "Status(7)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(tt.s), got, tt.want)
		}
	}
}

func TestFlags(t *testing.T) {
	r := lockflag.NewRegistry()
	steps := []struct {
		name string
		do   func()
		want lockflag.Status
	}{
		{"unknown is locked", func() {}, lockflag.Locked},
		{"create unlocks", func() { r.Create("f") }, lockflag.Unlocked},
		{"lock", func() { r.Lock("f") }, lockflag.Locked},
		{"lock again does not fail", func() { r.Lock("f") }, lockflag.Locked},
		{"unlock", func() { r.Unlock("f") }, lockflag.Unlocked},
		{"re-create unlocks", func() { r.Lock("f"); r.Create("f") }, lockflag.Unlocked},
		{"delete", func() {
			if !r.Delete("f") {
				t.Error("Delete of an existing flag returned false")
			}
		}, lockflag.Locked},
		{"delete again", func() {
			if r.Delete("f") {
				t.Error("Delete of a missing flag returned true")
			}
		}, lockflag.Locked},
		{"lock creates", func() { r.Lock("f") }, lockflag.Locked},
		{"unlock creates", func() { r.Delete("f"); r.Unlock("f") }, lockflag.Unlocked},
	}
	for _, st := range steps {
		st.do()
		if got := r.Check("f"); got != st.want {
			t.Fatalf("after %s: Check = %v, want %v", st.name, got, st.want)
		}
	}
}

func TestCheckDefault(t *testing.T) {
	var r lockflag.Registry // the zero value is usable
	r.Lock("known")
	tests := []struct {
		name string
		flag string
		def  []lockflag.Status
		want lockflag.Status
	}{
		{"unknown, no default", "missing", nil, lockflag.Locked},
		{"unknown, default unlocked", "missing", []lockflag.Status{lockflag.Unlocked}, lockflag.Unlocked},
		{"unknown, first default wins", "missing", []lockflag.Status{lockflag.Unlocked, lockflag.Locked}, lockflag.Unlocked},
		{"known ignores default", "known", []lockflag.Status{lockflag.Unlocked}, lockflag.Locked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Check(tt.flag, tt.def...); got != tt.want {
				t.Errorf("Check = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWithLock(t *testing.T) {
	r := lockflag.NewRegistry()
	r.Create("f")
	errFn := errors.New("fn failed")
	tests := []struct {
		name   string
		fn     func() error
		want   error
		panics bool
	}{
		{"returns", func() error { return nil }, nil, false},
		{"fails", func() error { return errFn }, errFn, false},
		{"panics", func() error { panic("boom") }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panics {
						t.Errorf("recovered %v, want panic %v", r, tt.panics)
					}
				}()
				err = r.WithLock("f", func() error {
					if s := r.Check("f"); s != lockflag.Locked {
						t.Errorf("inside WithLock the flag is %v", s)
					}
					return tt.fn()
				})
			}()
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if s := r.Check("f"); s != lockflag.Unlocked {
				t.Errorf("after WithLock the flag is %v", s)
			}
		})
	}
}

// Real waits with a 1 ms base: only liveness is checked, never timing.
func TestCheckWithRetryRealClock(t *testing.T) {
	r := lockflag.NewRegistry(lockflag.WithBackoff(time.Millisecond))
	r.Lock("f")
	go func() {
		time.Sleep(3 * time.Millisecond)
		r.Unlock("f")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.CheckWithRetryContext(ctx, "f", lockflag.Forever)
	if s != lockflag.Unlocked || err != nil {
		t.Fatalf("CheckWithRetryContext = %v, %v; want unlocked", s, err)
	}
	if s := r.CheckWithRetry("missing", 3); s != lockflag.Locked {
		t.Errorf("CheckWithRetry of a missing flag = %v", s)
	}
}

func TestCheckWithRetryContextEnds(t *testing.T) {
	r := lockflag.NewRegistry(lockflag.WithBackoff(time.Hour))
	r.Lock("slow")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s, err := r.CheckWithRetryContext(ctx, "slow", lockflag.Forever)
		if s != lockflag.Locked || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"slow"`) {
			t.Errorf("CheckWithRetryContext = %v, %v; want locked and a deadline error naming the flag", s, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end the wait within 5 s")
	}

	// An unlocked flag is reported even with a context done already.
	r.Unlock("slow")
	if s, err := r.CheckWithRetryContext(ctx, "slow", 3); s != lockflag.Unlocked || err != nil {
		t.Errorf("CheckWithRetryContext = %v, %v; want unlocked", s, err)
	}
}

func TestPackageLevelDefault(t *testing.T) {
	const name = "lockflag_test.default"
	defer lockflag.Delete(name)
	lockflag.Create(name)
	if lockflag.Check(name) != lockflag.Unlocked || lockflag.Default().Check(name) != lockflag.Unlocked {
		t.Fatal("Create did not unlock in the default registry")
	}
	lockflag.Lock(name)
	if lockflag.Check(name) != lockflag.Locked {
		t.Fatal("Lock did not lock")
	}
	lockflag.Unlock(name)
	err := lockflag.WithLock(name, func() error {
		if lockflag.Check(name) != lockflag.Locked {
			return errors.New("not locked inside WithLock")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := lockflag.CheckWithRetryContext(ctx, name, 2, lockflag.Status.String)
	if got != "unlocked" || err != nil {
		t.Fatalf("CheckWithRetryContext = %q, %v", got, err)
	}
	lockflag.Lock(name)
	got, err = lockflag.CheckWithRetryContext(ctx, name, 2, lockflag.Status.String)
	if got != "locked" || !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckWithRetryContext = %q, %v; want locked, canceled", got, err)
	}
	if !lockflag.Delete(name) || lockflag.Delete(name) {
		t.Fatal("Delete did not report existence")
	}
}

// Flags are read and written from many goroutines; the race detector checks
// that reads need no lock of ours.
func TestConcurrentUse(t *testing.T) {
	r := lockflag.NewRegistry()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				name := fmt.Sprint("f", (g+i)%4)
				switch i % 5 {
				case 0:
					r.Lock(name)
				case 1:
					r.Unlock(name)
				case 2:
					r.Delete(name)
				case 3:
					_ = r.WithLock(name, func() error { return nil })
				default:
					if s := r.Check(name); s != lockflag.Locked && s != lockflag.Unlocked {
						t.Errorf("Check = %v", s)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// Flags are not mutual exclusion: both goroutines see Unlocked and both lock.
func TestNotMutualExclusion(t *testing.T) {
	r := lockflag.NewRegistry()
	r.Create("f")
	seen := make(chan lockflag.Status, 2)
	var ready, wg sync.WaitGroup
	ready.Add(2)
	wg.Add(2)
	for range 2 {
		go func() {
			defer wg.Done()
			s := r.Check("f")
			ready.Done()
			ready.Wait() // both have looked before either locks
			r.Lock("f")
			seen <- s
		}()
	}
	wg.Wait()
	close(seen)
	for s := range seen {
		if s != lockflag.Unlocked {
			t.Errorf("a goroutine saw %v", s)
		}
	}
	if r.Check("f") != lockflag.Locked {
		t.Error("flag not locked")
	}
}

// BenchmarkCheck reads one flag from every goroutine.
func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	r := lockflag.NewRegistry()
	r.Create("f")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.Check("f") != lockflag.Unlocked {
				b.Error("locked")
			}
		}
	})
}

// BenchmarkLockUnlock writes one flag.
func BenchmarkLockUnlock(b *testing.B) {
	b.ReportAllocs()
	r := lockflag.NewRegistry()
	for b.Loop() {
		r.Lock("f")
		r.Unlock("f")
	}
}
