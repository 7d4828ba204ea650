package redlock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// take returns the events so far and forgets them.
func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// of returns the events of one kind among evs.
func of(evs []Event, k EventKind) []Event {
	var out []Event
	for _, ev := range evs {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

func TestObserverLockEvents(t *testing.T) {
	f := fleet(t, 1, 5)
	rec := &recorder{}
	cfg := clusterConfig(f)
	cfg.Observer = rec
	cfg.MaxRetry = 2
	cfg.RetryInterval = 10 * time.Millisecond
	c := newClient(t, cfg)
	ctx := context.Background()

	l, err := c.Lock(ctx, "obs", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	evs := rec.take()
	if len(evs) != 1 || evs[0].Kind != EventAcquire {
		t.Fatalf("after Lock: %+v, want one acquire event", evs)
	}
	ev := evs[0]
	if ev.Outcome != OutcomeOK || ev.Err != nil || ev.Attempts != 1 || ev.Resource != "obs" || ev.Quorum != 3 || len(ev.Votes) != 5 {
		t.Fatalf("acquire event: %+v", ev)
	}
	yes := 0
	for _, v := range ev.Votes {
		if v.OK {
			yes++
		}
	}
	if yes < 3 || ev.Duration <= 0 || ev.Wait < ev.Duration {
		t.Fatalf("acquire event: %d yes, duration %v, wait %v", yes, ev.Duration, ev.Wait)
	}

	// Busy: every attempt of a second Lock finds it held.
	if _, err := c.Lock(ctx, "obs", time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("second Lock: %v", err)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Outcome != OutcomeBusy || evs[0].Attempts != 3 || !errors.Is(evs[0].Err, ErrNotObtained) {
		t.Fatalf("busy acquire: %+v", evs)
	}
	// Wait covers the attempts and the waits between them. (Not at least
	// two retry delays: under load a subscription confirmed late wakes a
	// waiter early, in case it missed a release meanwhile.)
	if evs[0].Wait <= 0 || evs[0].Wait < evs[0].Duration {
		t.Fatalf("busy acquire: wait %v, duration %v over 3 attempts", evs[0].Wait, evs[0].Duration)
	}

	if err := l.Extend(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Kind != EventExtend || evs[0].Outcome != OutcomeOK || len(evs[0].Votes) != 5 {
		t.Fatalf("extend: %+v", evs)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Kind != EventRelease || evs[0].Outcome != OutcomeOK || evs[0].Held <= 0 {
		t.Fatalf("release: %+v", evs)
	}

	// Lost: the key is deleted behind the holder's back; Extend finds it
	// gone, and EventLost is reported once even as Release finds it gone too.
	l, err = c.Lock(ctx, "obs", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f[0] {
		if _, err := s.Do(ctx, "DEL", "obs"); err != nil {
			t.Fatal(err)
		}
	}
	rec.take()
	if err := l.Extend(ctx, 10*time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after DEL: %v", err)
	}
	if err := l.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release after DEL: %v", err)
	}
	evs = rec.take()
	if n := len(of(evs, EventLost)); n != 1 {
		t.Fatalf("%d lost events, want 1: %+v", n, evs)
	}
	if ex := of(evs, EventExtend); len(ex) != 1 || ex[0].Outcome != OutcomeNotHeld {
		t.Fatalf("extend events: %+v", ex)
	}
	if lost := of(evs, EventLost)[0]; lost.Held <= 0 || lost.Resource != "obs" {
		t.Fatalf("lost event: %+v", lost)
	}

	// Bad input is reported too, as an error outcome.
	if _, err := c.TryLock(ctx, "", time.Second); err == nil {
		t.Fatal("TryLock with an empty resource succeeded")
	}
	if evs = rec.take(); len(evs) != 1 || evs[0].Outcome != OutcomeError {
		t.Fatalf("bad input: %+v", evs)
	}
}

func TestObserverLostInDo(t *testing.T) {
	_, rec, c := observedFleet(t)
	err := c.Do(context.Background(), "do-lost", 300*time.Millisecond, func(ctx context.Context) error {
		<-ctx.Done() // validity runs out: no extension
		if !errors.Is(context.Cause(ctx), ErrLockLost) {
			t.Errorf("cause %v", context.Cause(ctx))
		}
		return nil
	})
	_ = err // the release may or may not find the expired key: not the point
	lost := of(rec.take(), EventLost)
	if len(lost) != 1 || lost[0].Outcome != OutcomeNotHeld || lost[0].Held < 250*time.Millisecond {
		t.Fatalf("lost events: %+v", lost)
	}
}

func TestObserverMasterDownUp(t *testing.T) {
	f := fleet(t, 1, 3)
	rec := &recorder{}
	cfg := clusterConfig(f)
	cfg.Observer = rec
	cfg.ReconnectInterval = 20 * time.Millisecond
	c := newClient(t, cfg)
	if err := f[0][1].Kill(); err != nil {
		t.Fatal(err)
	}
	// The next lock's command to the dead master fails and marks it down.
	eventually(t, 10*time.Second, "master down event", func() bool {
		if l, err := c.TryLock(context.Background(), "down-up", time.Second); err == nil {
			_ = l.Release(context.Background())
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(of(rec.events, EventMasterDown)) > 0
	})
	if err := f[0][1].Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "master up event", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(of(rec.events, EventMasterUp)) > 0
	})
	evs := rec.take()
	down, up := of(evs, EventMasterDown)[0], of(evs, EventMasterUp)[0]
	if down.Master != f[0][1].Addr() || down.Err == nil || down.Group != 0 {
		t.Fatalf("down event: %+v", down)
	}
	if up.Master != f[0][1].Addr() || up.Duration <= 0 {
		t.Fatalf("up event: %+v", up)
	}
}

// An observer costs nothing when unset: lock+unlock allocates no more than
// before; with one set, the events are built.
func BenchmarkLockUnlockObserver(b *testing.B) {
	f := fleet(b, 1, 5)
	for _, withObs := range []bool{false, true} {
		name := "nil"
		cfg := clusterConfig(f)
		if withObs {
			name = "set"
			cfg.Observer = &discard{}
		}
		b.Run(name, func(b *testing.B) {
			cfg.Logger = quietLogger
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l, err := c.TryLock(ctx, "bench-obs", 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (*discard) Observe(Event) {}

// TestObserverMasterQuarantined: a master found restarted recently
// (Config.RestartQuarantine; fresh test servers are) is reported once per
// restart, with the quarantine left and a *QuarantineError.
func TestObserverMasterQuarantined(t *testing.T) {
	f := fleet(t, 1, 3)
	rec := &recorder{}
	cfg := clusterConfig(f)
	cfg.Observer = rec
	cfg.RestartQuarantine = time.Hour
	c := newClient(t, cfg)
	// More connections to the same servers (a second lock's pool use) do
	// not report the same restart again.
	if _, err := c.TryLock(context.Background(), "q", time.Second); err == nil {
		t.Fatal("a quarantined fleet gave a lock")
	}
	evs := of(rec.take(), EventMasterQuarantined)
	if len(evs) != 3 {
		t.Fatalf("%d quarantine events; want one per master: %+v", len(evs), evs)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		var qe *QuarantineError
		if ev.Duration < 50*time.Minute || ev.Group != 0 || !errors.As(ev.Err, &qe) || qe.RunID == "" || ev.Kind.String() != "master_quarantined" {
			t.Fatalf("quarantine event: %+v", ev)
		}
		seen[ev.Master] = true
	}
	for _, s := range f[0] {
		if !seen[s.Addr()] {
			t.Fatalf("no quarantine event for %s", s.Addr())
		}
	}
}

// TestObserverAwait: Await reports one EventAcquire per call, like Lock —
// at once for a free resource, after the wait for a held one (its attempts
// and the whole wait), and canceled when ctx ends first.
func TestObserverAwait(t *testing.T) {
	f, rec, c := observedFleet(t)
	holder := newClient(t, clusterConfig(f))
	ctx := context.Background()

	l, err := c.Await(ctx, "aw", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	evs := rec.take()
	if len(evs) != 1 || evs[0].Kind != EventAcquire || evs[0].Outcome != OutcomeOK || evs[0].Attempts != 1 || len(evs[0].Votes) != 3 || evs[0].Resource != "aw" {
		t.Fatalf("Await of a free resource: %+v, want one acquire event", evs)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rec.take()

	// Held by another client, released after 200 ms.
	h, err := holder.Lock(ctx, "aw", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const hold = 200 * time.Millisecond
	go func() {
		time.Sleep(hold)
		_ = h.Release(ctx)
	}()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if l, err = c.Await(wctx, "aw", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	evs = of(rec.take(), EventAcquire)
	if len(evs) != 1 || evs[0].Outcome != OutcomeOK || evs[0].Attempts < 2 || evs[0].Wait < hold/2 || evs[0].Wait < evs[0].Duration {
		t.Fatalf("Await of a held resource: %+v, want one acquire event of ≥ 2 attempts that waited", evs)
	}
	// Busy until ctx ends.
	cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer ccancel()
	if _, err := c.Await(cctx, "aw", time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("Await of a resource it holds itself: %v", err)
	}
	evs = of(rec.take(), EventAcquire)
	if len(evs) != 1 || evs[0].Outcome != OutcomeCanceled || !errors.Is(evs[0].Err, context.DeadlineExceeded) {
		t.Fatalf("Await until ctx ended: %+v", evs)
	}
	_ = l.Release(ctx)
}

// TestObserverAutoExtendRenewals: the shared extender's renewals are
// reported as EventExtend (votes included), and a renewal that finds the
// lock gone reports EventExtend (not held) and EventLost, once.
func TestObserverAutoExtendRenewals(t *testing.T) {
	f, rec, c := observedFleet(t)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond // renewed every 200 ms
	err := c.DoWith(ctx, "ae", ttl, func(ctx context.Context) error {
		eventually(t, 20*time.Second, "two renewals reported", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return len(of(rec.events, EventExtend)) >= 2
		})
		for _, ev := range of(rec.take(), EventExtend) {
			if ev.Outcome != OutcomeOK || ev.Resource != "ae" || len(ev.Votes) != 3 || ev.Attempts != 1 || ev.Duration <= 0 {
				t.Errorf("renewal event: %+v", ev)
			}
		}
		// Gone behind the holder's back: the next renewal finds it so.
		delOnAll(t, f[0], "ae")
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
			t.Error("fn's context did not end after the lock was deleted")
		}
		return nil
	}, WithAutoExtend())
	if !errors.Is(err, ErrNotHeld) {
		t.Fatalf("DoWith after the key was deleted: %v, want ErrNotHeld", err)
	}
	evs := rec.take()
	lost := of(evs, EventLost)
	if len(lost) != 1 || lost[0].Resource != "ae" || lost[0].Held <= 0 {
		t.Fatalf("lost events: %+v, want one", lost)
	}
	var notHeld int
	for _, ev := range of(evs, EventExtend) {
		if ev.Outcome == OutcomeNotHeld {
			notHeld++
		}
	}
	if notHeld != 1 {
		t.Fatalf("%d renewals reported not held, want 1: %+v", notHeld, evs)
	}
}

// TestObserverLostWithoutWatch: a lock nobody watches (no Done, no Do) is
// reported lost when Release finds it gone; an Extend refused because the
// holder released the lock is not a loss.
func TestObserverLostWithoutWatch(t *testing.T) {
	f, rec, c := observedFleet(t)
	ctx := context.Background()
	l, err := c.Lock(ctx, "lw", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	delOnAll(t, f[0], "lw")
	if err := l.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release after DEL: %v", err)
	}
	if lost := of(rec.take(), EventLost); len(lost) != 1 || lost[0].Outcome != OutcomeNotHeld || lost[0].Resource != "lw" {
		t.Fatalf("lost events after Release found it gone: %+v, want one", lost)
	}

	l, err = c.Lock(ctx, "lw", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after Release: %v", err)
	}
	evs := rec.take()
	if lost := of(evs, EventLost); len(lost) != 0 {
		t.Fatalf("Extend after Release reported a loss: %+v", lost)
	}
	if ex := of(evs, EventExtend); len(ex) != 1 || ex[0].Outcome != OutcomeNotHeld {
		t.Fatalf("extend events: %+v", ex)
	}
}

// observedFleet starts 3 masters and a client reporting to a recorder.
func observedFleet(t *testing.T) ([][]*redisproc.Server, *recorder, *Client) {
	t.Helper()
	f := fleet(t, 1, 3)
	rec := &recorder{}
	cfg := clusterConfig(f)
	cfg.Observer = rec
	return f, rec, newClient(t, cfg)
}

// delOnAll deletes key on every server, behind its holder's back.
func delOnAll(t *testing.T, servers []*redisproc.Server, key string) {
	t.Helper()
	for _, s := range servers {
		if _, err := s.Do(context.Background(), "DEL", key); err != nil {
			t.Error(err)
		}
	}
}

// TestObserverDoFnReleases: a Do (and a DoAll) whose fn releases its lock
// itself returns fn's nil, reports one release and no loss, and leaves no
// key: Do does not release again (which found the key gone: ErrNotHeld and
// a false EventLost for a section that ended cleanly).
func TestObserverDoFnReleases(t *testing.T) {
	f := fleet(t, 2, 3)
	rec := &recorder{}
	cfg := clusterConfig(f)
	cfg.Observer = rec
	c := newClient(t, cfg)
	ctx := context.Background()

	err := c.Do(ctx, "fn-releases", 10*time.Second, func(ctx context.Context) error {
		return LockFromContext(ctx).Release(ctx)
	})
	if err != nil {
		t.Fatalf("Do whose fn released its lock = %v; want nil", err)
	}
	evs := rec.take()
	if n, lost := len(of(evs, EventRelease)), of(evs, EventLost); n != 1 || len(lost) != 0 {
		t.Fatalf("events %+v: want one release and no loss", evs)
	}
	err = c.DoAll(ctx, []string{"fn-releases-a", "fn-releases-b", "fn-releases-c"}, 10*time.Second, func(ctx context.Context) error {
		return MultiLockFromContext(ctx).Release(ctx)
	})
	if err != nil {
		t.Fatalf("DoAll whose fn released its MultiLock = %v; want nil", err)
	}
	if lost := of(rec.take(), EventLost); len(lost) != 0 {
		t.Fatalf("DoAll reported a loss: %+v", lost)
	}
	for _, g := range f {
		for _, s := range g {
			eventually(t, 10*time.Second, s.Addr()+": no key left", func() bool {
				n, err := s.Do(ctx, "DBSIZE")
				return err == nil && n == ":0"
			})
		}
	}
}
