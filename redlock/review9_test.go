package redlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/leakcheck"
	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// Review of f8f5df7, 98acda9 and 4e7b401 (Do's, DoAll's, DoRead's,
// DoWrite's and Semaphore.Do's contexts and Done follow Until; a release
// that ended its own ctx is detached from that cancellation), against real
// masters.

// r9Setup is two groups of three masters and a client with NodeTimeout nt.
func r9Setup(t *testing.T, nt time.Duration) (*Client, map[string]*redisproc.Server) {
	t.Helper()
	f := fleet(t, 2, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout, cfg.ReconnectInterval = nt, 50*time.Millisecond
	return newClient(t, cfg), serverOf(f)
}

// r9Steal deletes resource's key on every master of its group, behind the
// holder's back.
func r9Steal(ctx context.Context, c *Client, servers map[string]*redisproc.Server, resource string) error {
	for _, addr := range c.Route(resource) {
		if _, err := servers[addr].Do(ctx, "DEL", c.s.KeyPrefix+resource); err != nil {
			return err
		}
	}
	return nil
}

// r9WaitDone waits (bounded) for ctx to end.
func r9WaitDone(ctx context.Context, what string) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: fn's ctx still live after 30s", what)
	}
}

// r9Form is Do or DoAll, run on resources of its own, with the hand
// Extend of the lock fn's ctx carries and the resource a test may steal.
type r9Form struct {
	name   string
	do     func(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error
	extend func(ctx context.Context, ttl time.Duration) error
	stolen string
}

// r9Forms are Do on one resource and DoAll on two resources of two groups.
func r9Forms(c *Client, prefix string) []r9Form {
	rs := spread(c, prefix+"/all", 2)
	one := prefix + "/one"
	return []r9Form{
		{name: "Do", stolen: one,
			do: func(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
				return c.DoWith(ctx, one, ttl, fn, opts...)
			},
			extend: func(ctx context.Context, ttl time.Duration) error { return LockFromContext(ctx).Extend(ctx, ttl) }},
		{name: "DoAll", stolen: rs[1],
			do: func(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
				return c.DoAll(ctx, rs, ttl, fn, opts...)
			},
			extend: func(ctx context.Context, ttl time.Duration) error { return MultiLockFromContext(ctx).Extend(ctx, ttl) }},
	}
}

// TestReview9LostCauseSaysAnExtensionFoundItGone: when an extension finds
// the lock gone (its key deleted behind its back), fn's ctx ends with a
// cause that matches ErrLockLost and ErrNotHeld and names the resource —
// DoAll's as Do's, whether the automatic extension or a hand Extend in fn
// found it. (f8f5df7 made DoAll's context end from the Done timer with a
// bare ErrLockLost: the extension's error was dropped.)
func TestReview9LostCauseSaysAnExtensionFoundItGone(t *testing.T) {
	c, servers := r9Setup(t, time.Second)
	bg := context.Background()
	checkCause := func(t *testing.T, f r9Form, ctx context.Context) {
		t.Helper()
		cause := context.Cause(ctx)
		if !errors.Is(cause, ErrLockLost) || !errors.Is(cause, ErrNotHeld) {
			t.Errorf("%s: fn's ctx cause %q; want one matching ErrLockLost and ErrNotHeld (an extension found it gone)", f.name, cause)
		}
		if cause != nil && !strings.Contains(cause.Error(), f.stolen) {
			t.Errorf("%s: fn's ctx cause %q does not name the resource that is gone (%s)", f.name, cause, f.stolen)
		}
	}
	for _, f := range r9Forms(c, "r9-cause") {
		t.Run(f.name+", the automatic extension", func(t *testing.T) {
			err := f.do(bg, 900*time.Millisecond, func(ctx context.Context) error {
				if err := r9Steal(ctx, c, servers, f.stolen); err != nil {
					return err
				}
				if err := r9WaitDone(ctx, f.name); err != nil {
					return err
				}
				checkCause(t, f, ctx)
				return nil
			}, WithAutoExtend())
			if !errors.Is(err, ErrNotHeld) {
				t.Errorf("%s = %v; want the release's ErrNotHeld", f.name, err)
			}
		})
		t.Run(f.name+", a hand Extend", func(t *testing.T) {
			err := f.do(bg, 30*time.Second, func(ctx context.Context) error {
				if err := r9Steal(ctx, c, servers, f.stolen); err != nil {
					return err
				}
				if err := f.extend(ctx, 30*time.Second); !errors.Is(err, ErrNotHeld) {
					return fmt.Errorf("hand Extend with the key gone = %w; want ErrNotHeld", err)
				}
				if ctx.Err() == nil {
					return errors.New("fn's ctx still live when the Extend that found it gone returned")
				}
				checkCause(t, f, ctx)
				return nil
			})
			if !errors.Is(err, ErrNotHeld) {
				t.Errorf("%s = %v; want the release's ErrNotHeld", f.name, err)
			}
		})
	}
}

// r9ReleaseWith is how fn releases the lock its ctx carries: with the ctx
// rel returns (and a goroutine of its own, when async).
type r9ReleaseWith struct {
	name  string
	ctx   func(fnCtx context.Context) (context.Context, func())
	async bool
}

var r9Releases = []r9ReleaseWith{
	{name: "fn's ctx", ctx: func(fnCtx context.Context) (context.Context, func()) { return fnCtx, func() {} }},
	{name: "a ctx derived from fn's, on a goroutine of fn", async: true,
		ctx: func(fnCtx context.Context) (context.Context, func()) {
			return context.WithTimeout(fnCtx, 30*time.Second)
		}},
	{name: "a ctx that fn's ends through context.AfterFunc", ctx: func(fnCtx context.Context) (context.Context, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(fnCtx, cancel)
		return ctx, func() { stop(); cancel() }
	}},
}

// TestReview9ReleaseInFnEveryKind: fn releases the lock it runs under, in
// every Do form, with fn's ctx, a ctx derived from it on another
// goroutine, and a ctx that fn's ends through context.AfterFunc: the
// release succeeds (it is not cut short by the end of fn's ctx that it
// caused), fn's ctx has ended by the time Release returns (cause ErrLockLost
// and ErrNotHeld), and no master of any group keeps the holder.
func TestReview9ReleaseInFnEveryKind(t *testing.T) {
	k := newKindsFleet(t)
	plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
	kinds := doKinds(plain, fenced)
	for i, rw := range r9Releases {
		t.Run(rw.name, func(t *testing.T) {
			var mu sync.Mutex
			var hs []*held
			runDoKinds(t, kinds, plain, fmt.Sprint("r9-rel", i), 30*time.Second, nil, func(dk doKind, ctx context.Context) error {
				h := dk.held(ctx)
				mu.Lock()
				hs = append(hs, h)
				mu.Unlock()
				rctx, done := rw.ctx(ctx)
				defer done()
				var err error
				if rw.async {
					ch := make(chan error, 1)
					go func() { ch <- h.release(rctx) }()
					err = <-ch
				} else {
					err = h.release(rctx)
				}
				if err != nil {
					return fmt.Errorf("Release inside fn: %w", err)
				}
				if ctx.Err() == nil {
					return errors.New("fn's ctx still live when fn's Release returned (Until is zero: another holder may have it)")
				}
				if c := context.Cause(ctx); !errors.Is(c, ErrLockLost) || !errors.Is(c, ErrNotHeld) {
					return fmt.Errorf("fn's ctx cause %w; want ErrLockLost and ErrNotHeld", c)
				}
				return nil
			})
			for _, h := range hs {
				h.barrier(t)
				if left := h.leftAnywhere(t, k); left > 0 {
					t.Errorf("%s: a master keeps the holder %v after fn released it", h.name, left)
				}
			}
		})
	}
}

// TestReview9ReleaseInFnBounds: a release in fn that ended fn's ctx is not
// cut short by that end, yet stays bounded — by the deadline of the ctx it
// was given, else by NodeTimeout — while every master holds its commands;
// and a ctx the caller cancelled before Release is still obeyed (nothing
// waits for the paused masters). The release held by the masters runs when
// they resume: no key is left.
func TestReview9ReleaseInFnBounds(t *testing.T) {
	const nt, pause, most = 10 * time.Second, 6 * time.Second, 4500 * time.Millisecond
	c, servers := r9Setup(t, nt)
	short := newClient(t, Config{Cluster: c.s.Cluster, NodeTimeout: 1500 * time.Millisecond})
	fnCtx := func(fnCtx context.Context) (context.Context, context.CancelFunc) { return fnCtx, func() {} }
	cases := []struct {
		name     string
		c        *Client
		deadline time.Duration // of Do's ctx (0: none)
		rel      func(fnCtx context.Context) (context.Context, context.CancelFunc)
		want     func(err error) bool
	}{
		{name: "fn's ctx with a 3 s deadline: ends at the deadline", c: c, deadline: 3 * time.Second, rel: fnCtx,
			want: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "fn's ctx without deadline: ends at NodeTimeout (1.5 s), not cancelled", c: short, rel: fnCtx,
			want: func(err error) bool {
				var qe *QuorumError
				return errors.As(err, &qe) && !errors.Is(err, context.Canceled)
			}},
		{name: "a ctx cancelled before Release: obeyed at once", c: c,
			rel: func(context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	var ready sync.WaitGroup
	ready.Add(len(cases))
	paused := make(chan struct{})
	go func() { // every master holds its commands once every case holds its lock
		ready.Wait()
		for _, s := range servers {
			pauseCommands(t, s, pause)
		}
		close(paused)
	}()
	var wg sync.WaitGroup
	for i, tc := range cases {
		r := fmt.Sprint("r9-bound", i)
		wg.Go(func() {
			dctx, dcancel := context.Background(), context.CancelFunc(func() {})
			if tc.deadline > 0 {
				dctx, dcancel = context.WithTimeout(dctx, tc.deadline)
			}
			defer dcancel()
			err := tc.c.Do(dctx, r, 60*time.Second, func(fctx context.Context) error {
				ready.Done()
				<-paused
				if fctx.Err() != nil {
					return fmt.Errorf("fn's ctx ended (%w) before the release (a loaded machine?)", context.Cause(fctx))
				}
				rctx, rcancel := tc.rel(fctx)
				defer rcancel()
				start := time.Now()
				err := LockFromContext(fctx).Release(rctx)
				if took := time.Since(start); took > most {
					t.Errorf("%s: Release inside fn took %v with every master paused %v; want under %v", tc.name, took, pause, most)
				}
				if !tc.want(err) {
					t.Errorf("%s: Release inside fn with every master paused = %v", tc.name, err)
				}
				if fctx.Err() == nil {
					t.Errorf("%s: fn's ctx still live after fn's Release returned", tc.name)
				}
				return nil
			})
			if err != nil && !errors.Is(err, ErrNotHeld) {
				var qe *QuorumError
				if !errors.As(err, &qe) { // Do's own release, while the masters are paused
					t.Errorf("%s: Do = %v", tc.name, err)
				}
			}
		})
	}
	wg.Wait()
	for i := range cases {
		r := fmt.Sprint("r9-bound", i)
		barrier(t, c, r) // the pause ended
		for _, addr := range c.Route(r) {
			eventually(t, 30*time.Second, r+" released on "+addr, func() bool { return servers[addr].GetT(t, c.s.KeyPrefix+r) == "" })
		}
	}
}

// r9TimerIdle reports whether a Done timer is not armed (never created,
// fired or stopped). Stop only stops a timer that was still armed, which
// the caller reports as a failure.
func r9TimerIdle(mu *sync.Mutex, tm **time.Timer) bool {
	mu.Lock()
	defer mu.Unlock()
	return *tm == nil || !(*tm).Stop()
}

// r9MultiIdle is r9TimerIdle for m, and no DoAll context follows it.
func r9MultiIdle(m *MultiLock) bool {
	m.mu.Lock()
	onLost := m.onLost
	m.mu.Unlock()
	return onLost == nil && r9TimerIdle(&m.mu, &m.doneTimer)
}

func r9LockIdle(l *Lock) bool {
	l.mu.Lock()
	onLost := l.onLost
	l.mu.Unlock()
	return onLost == nil && r9TimerIdle(&l.mu, &l.doneTimer)
}

// r9Closed reports whether done is closed.
func r9Closed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// TestReview9DoneTimersStop: the Done timer of a MultiLock (created by
// Done or DoAll) and of a Lock is stopped, or has fired, once the lock is
// released, lost by an Extend, or past Until — whatever ended DoAll's or
// Do's fn — and Done is closed exactly when the lock is lost, not by a
// release. 20 Do and 20 DoAll calls of five endings leave no goroutine behind.
func TestReview9DoneTimersStop(t *testing.T) {
	c, servers := r9Setup(t, time.Second)
	bg := context.Background()
	rs := spread(c, "r9-timer", 2)
	// Warm up: connections and the shared extender (one goroutine for the
	// client's life) exist before the snapshot.
	if err := c.DoWith(bg, "r9-timer-warm", time.Second, func(context.Context) error { return nil }, WithAutoExtend()); err != nil {
		t.Fatal(err)
	}
	if err := c.DoAll(bg, rs, time.Second, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	leaks := leakcheck.Current()

	t.Run("MultiLock held by hand", func(t *testing.T) {
		lock := func() *MultiLock {
			t.Helper()
			m, err := c.LockAll(bg, rs, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		m := lock() // Done, then Release: open, timer stopped
		done := m.Done()
		if err := m.Release(bg); err != nil {
			t.Fatal(err)
		}
		if r9Closed(done) || !r9MultiIdle(m) {
			t.Errorf("Done then Release: Done closed %v (want open), timer idle %v", r9Closed(done), r9MultiIdle(m))
		}
		m = lock() // Release, then Done: open, no timer
		if err := m.Release(bg); err != nil {
			t.Fatal(err)
		}
		if r9Closed(m.Done()) || m.doneTimer != nil {
			t.Errorf("Release then Done: Done closed %v (want open), timer %v (want none)", r9Closed(m.Done()), m.doneTimer)
		}
		m = lock() // Done, then an Extend finds a part gone: closed, timer stopped
		done = m.Done()
		if err := r9Steal(bg, c, servers, rs[0]); err != nil {
			t.Fatal(err)
		}
		if err := m.Extend(bg, 30*time.Second); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("Extend with a part gone = %v", err)
		}
		if !r9Closed(done) || !r9MultiIdle(m) {
			t.Errorf("Done then lost: Done closed %v (want closed), timer idle %v", r9Closed(done), r9MultiIdle(m))
		}
		_ = m.Release(bg)
		m, err := c.LockAll(bg, rs, 700*time.Millisecond) // past Until, nobody asked for Done: closed at the first call
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(m.Until()) + 50*time.Millisecond)
		if !r9Closed(m.Done()) || !r9MultiIdle(m) {
			t.Errorf("Done asked past Until: closed %v (want closed), timer idle %v", r9Closed(m.Done()), r9MultiIdle(m))
		}
		_ = m.Release(bg)
	})

	t.Run("20 DoAll and 20 Do at once", func(t *testing.T) {
		endings := []struct {
			name string
			ttl  time.Duration
			opts []DoOption
			fn   func(ctx context.Context, done <-chan struct{}, release func(context.Context) error) error
		}{
			{name: "fn returns", ttl: 30 * time.Second,
				fn: func(context.Context, <-chan struct{}, func(context.Context) error) error { return nil }},
			{name: "auto-extended once", ttl: 600 * time.Millisecond, opts: []DoOption{WithAutoExtend()},
				fn: func(context.Context, <-chan struct{}, func(context.Context) error) error {
					time.Sleep(300 * time.Millisecond)
					return nil
				}},
			{name: "fn releases", ttl: 30 * time.Second,
				fn: func(ctx context.Context, _ <-chan struct{}, release func(context.Context) error) error {
					return release(ctx)
				}},
			{name: "lost at Until", ttl: 400 * time.Millisecond,
				fn: func(ctx context.Context, done <-chan struct{}, _ func(context.Context) error) error {
					if err := r9WaitDone(ctx, "lost at Until"); err != nil {
						return err
					}
					if !r9Closed(done) {
						return errors.New("fn's ctx ended at Until but Done is open")
					}
					return nil
				}},
			{name: "WithMaxHold ran out", ttl: 400 * time.Millisecond, opts: []DoOption{WithMaxHold(200 * time.Millisecond)},
				fn: func(ctx context.Context, _ <-chan struct{}, _ func(context.Context) error) error {
					return r9WaitDone(ctx, "WithMaxHold")
				}},
		}
		var wg sync.WaitGroup
		for i := range 20 { // at once, each on resources of its own (one group or two)
			e := endings[i%len(endings)]
			wg.Go(func() {
				var m *MultiLock
				err := c.DoAll(bg, spread(c, fmt.Sprint("r9-timer", i), 1+i%2), e.ttl, func(ctx context.Context) error {
					m = MultiLockFromContext(ctx)
					return e.fn(ctx, m.Done(), m.Release)
				}, e.opts...)
				if err != nil && !errors.Is(err, ErrNotHeld) {
					t.Errorf("DoAll %d (%s) = %v", i, e.name, err)
				}
				if m != nil && !r9MultiIdle(m) {
					t.Errorf("DoAll %d (%s): the Done timer is still armed after DoAll returned", i, e.name)
				}
			})
			wg.Go(func() {
				var l *Lock
				err := c.DoWith(bg, fmt.Sprint("r9-timer-do", i), e.ttl, func(ctx context.Context) error {
					l = LockFromContext(ctx)
					return e.fn(ctx, l.Done(), l.Release)
				}, e.opts...)
				if err != nil && !errors.Is(err, ErrNotHeld) {
					t.Errorf("Do %d (%s) = %v", i, e.name, err)
				}
				if l != nil && !r9LockIdle(l) {
					t.Errorf("Do %d (%s): the Done timer is still armed after Do returned", i, e.name)
				}
			})
		}
		wg.Wait()
	})
	leakcheck.VerifyNone(t, leaks)
}

// TestReview9DoAllTwoHolders: DoAll over two groups, auto-extended, while
// the masters of one group hold every command (CLIENT PAUSE) or two masters
// of the other are stopped (SIGSTOP), both past the ttl; a rival client
// tries LockAll on the same resources all along. fn's ctx ends at Until —
// not before it, not long after it — and the rival never obtains the set
// while the holder's fn ctx is live and it reports Valid.
func TestReview9DoAllTwoHolders(t *testing.T) {
	c, servers := r9Setup(t, time.Second)
	rival := newClient(t, Config{Cluster: c.s.Cluster, NodeTimeout: time.Second, ReconnectInterval: 50 * time.Millisecond})
	const ttl, hold = 1200 * time.Millisecond, 2500 * time.Millisecond
	faults := []struct {
		name string
		do   func(t *testing.T, rs []string) (undo func())
	}{
		{"CLIENT PAUSE of one group", func(t *testing.T, rs []string) func() {
			for _, addr := range c.Route(rs[1]) {
				pauseCommands(t, servers[addr], hold)
			}
			return func() {}
		}},
		{"SIGSTOP of two masters of one group", func(t *testing.T, rs []string) func() {
			stopped := c.Route(rs[0])[:2]
			for _, addr := range stopped {
				if err := servers[addr].Pause(); err != nil {
					t.Fatal(err)
				}
			}
			return func() {
				time.Sleep(hold)
				for _, addr := range stopped {
					if err := servers[addr].Resume(); err != nil {
						t.Error(err)
					}
				}
			}
		}},
	}
	for i, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			rs := spread(c, fmt.Sprint("r9-two", i), 2)
			var holderCtx atomic.Pointer[context.Context]
			var holder atomic.Pointer[MultiLock]
			in, out := make(chan struct{}), make(chan struct{})
			var obtained atomic.Int32
			var wg sync.WaitGroup
			wg.Go(func() { // the rival, until it obtained the set once after the holder's DoAll
				select {
				case <-in:
				case <-out: // fn failed before the fault
					return
				}
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					m, err := rival.lockAll(context.Background(), rs, 30*time.Second, true)
					if err != nil {
						continue
					}
					hctx, hm := *holderCtx.Load(), holder.Load()
					if hctx.Err() == nil && hm.Valid() {
						t.Errorf("two holders: the rival obtained %v while the holder's fn ctx is live and Valid (Until in %v)", rs, time.Until(hm.Until()))
					}
					obtained.Add(1)
					_ = m.Release(context.Background())
					select {
					case <-out:
						return
					default:
					}
				}
				t.Error("the rival never obtained the set after the holder's DoAll returned")
			})
			err := c.DoAll(context.Background(), rs, ttl, func(ctx context.Context) error {
				holderCtx.Store(&ctx)
				holder.Store(MultiLockFromContext(ctx))
				defer f.do(t, rs)() // undo it, whatever fn returns
				close(in)
				if err := r9WaitDone(ctx, f.name); err != nil {
					return err
				}
				at, u := time.Now(), MultiLockFromContext(ctx).Until()
				switch {
				case u.IsZero():
					return fmt.Errorf("fn's ctx ended (%w) with Until zero: nothing found a part gone", context.Cause(ctx))
				case at.Before(u):
					return fmt.Errorf("fn's ctx ended %v before Until (%w)", u.Sub(at), context.Cause(ctx))
				case at.Sub(u) > 5*time.Second:
					return fmt.Errorf("fn's ctx ended %v after Until", at.Sub(u))
				}
				return nil
			}, WithAutoExtend())
			close(out)
			if err != nil && !errors.Is(err, ErrNotHeld) {
				var qe *QuorumError
				if !errors.As(err, &qe) {
					t.Errorf("DoAll = %v", err)
				}
			}
			wg.Wait()
		})
	}
}

// TestReview9CallbacksOfFnCtxUseTheLock: fn's ctx is cancelled with the
// lock's mutex held (armDone). Whatever runs on that cancellation — a
// context.AfterFunc on fn's ctx or on a ctx derived from it, a nested Do's
// fn whose ctx ends with it — may call every method of the lock (Until,
// Valid, Done, Extend, Release) and LockFromContext/MultiLockFromContext:
// none deadlocks, for Do and DoAll, whether fn releases the lock, its
// validity runs out, or an Extend finds it gone.
func TestReview9CallbacksOfFnCtxUseTheLock(t *testing.T) {
	c, servers := r9Setup(t, time.Second)
	bg := context.Background()
	type lockish interface {
		Until() time.Time
		Valid() bool
		Done() <-chan struct{}
		Extend(ctx context.Context, ttl time.Duration) error
		Release(ctx context.Context) error
	}
	touch := func(l lockish) {
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		_, _, _ = l.Until(), l.Valid(), l.Done()
		_ = l.Extend(ctx, time.Second)
		_ = l.Release(ctx)
	}
	endings := []struct {
		name string
		ttl  time.Duration
		end  func(ctx context.Context, f r9Form, l lockish) error
	}{
		{"fn releases", 30 * time.Second, func(ctx context.Context, _ r9Form, l lockish) error { return l.Release(ctx) }},
		{"Until passes", 600 * time.Millisecond, func(context.Context, r9Form, lockish) error { return nil }},
		{"an Extend finds it gone", 30 * time.Second, func(ctx context.Context, f r9Form, l lockish) error {
			if err := r9Steal(ctx, c, servers, f.stolen); err != nil {
				return err
			}
			if err := l.Extend(ctx, 30*time.Second); !errors.Is(err, ErrNotHeld) {
				return fmt.Errorf("Extend with the key gone = %w", err)
			}
			return nil
		}},
	}
	for i, e := range endings {
		for _, f := range r9Forms(c, fmt.Sprint("r9-cb", i)) {
			t.Run(f.name+", "+e.name, func(t *testing.T) {
				var called sync.WaitGroup
				err := f.do(bg, e.ttl, func(ctx context.Context) error {
					var l lockish
					if ml := MultiLockFromContext(ctx); ml != nil {
						l = ml
					} else {
						l = LockFromContext(ctx)
					}
					called.Add(3)
					context.AfterFunc(ctx, func() { defer called.Done(); touch(l) })
					child, cancel := context.WithCancel(ctx)
					defer cancel()
					context.AfterFunc(child, func() {
						defer called.Done()
						_, _ = LockFromContext(child), MultiLockFromContext(child)
						touch(l)
					})
					nested := make(chan error, 1)
					go func() { // a nested Do, whose fn's ctx ends with the outer one
						defer called.Done()
						nested <- c.Do(ctx, f.stolen+"/nested", 30*time.Second, func(ictx context.Context) error {
							<-ictx.Done()
							touch(l)
							touch(LockFromContext(ictx))
							return nil
						})
					}()
					if err := e.end(ctx, f, l); err != nil {
						return err
					}
					if err := r9WaitDone(ctx, f.name); err != nil {
						return err
					}
					if err := <-nested; err != nil && !errors.Is(err, ErrNotHeld) && !errors.Is(err, context.Canceled) {
						return fmt.Errorf("nested Do: %w", err)
					}
					return nil
				})
				if err != nil && !errors.Is(err, ErrNotHeld) {
					t.Errorf("%s = %v", f.name, err)
				}
				finished := make(chan struct{})
				go func() { called.Wait(); close(finished) }()
				select {
				case <-finished:
				case <-time.After(30 * time.Second):
					t.Fatal("a callback of fn's ctx is stuck 30s after fn's ctx ended: deadlock on the lock's mutex")
				}
			})
		}
	}
}
