package redlock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestOneMasterHonoursContext (issue 9, item 7): a one-master group answers
// when the caller's ctx ends, not after NodeTimeout, for every operation —
// a 3-master group always did.
func TestOneMasterHonoursContext(t *testing.T) {
	f := fleet(t, 1, 1)
	cfg := faultConfig(f)
	cfg.NodeTimeout = 6 * time.Second // a wait for the paused master would be obvious
	c := newClient(t, cfg)
	bg := context.Background()
	held, err := c.Lock(bg, "one-held", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := f[0][0]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer s.Resume()
	bound := cfg.NodeTimeout / 2 // far above a 100 ms ctx, far below NodeTimeout
	timed := func(what string, op func(ctx context.Context) error) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := op(ctx)
		if took := time.Since(start); took > bound {
			t.Fatalf("%s against a paused master with a 100ms ctx took %v (NodeTimeout %v): the ctx was ignored", what, took, cfg.NodeTimeout)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s = %v; want the ctx error joined", what, err)
		}
		return err
	}
	err = timed("TryLock", func(ctx context.Context) error { _, err := c.TryLock(ctx, "one-try", 30*time.Second); return err })
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("TryLock = %v; want ErrNotObtained", err)
	}
	timed("Extend", func(ctx context.Context) error { return held.Extend(ctx, 30*time.Second) })
	timed("IsLocked", func(ctx context.Context) error { _, err := c.IsLocked(ctx, "one-held"); return err })
	timed("Release", func(ctx context.Context) error { return held.Release(ctx) })
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	// The commands the callers gave up on still reach the master when it
	// answers again, and the releases clean up both keys, far sooner than
	// their 30 s TTL.
	eventually(t, 20*time.Second, "keys released after the master resumed", func() bool {
		return keyOn(t, s, "one-held") == "" && keyOn(t, s, "one-try") == ""
	})
}
