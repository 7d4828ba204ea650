package redlock

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// wakeOnly sets retry delays of a minute: a waiter that gets its lock
// within seconds was woken (by an announcement, or by the bound the masters
// gave it), never by a retry tick.
func wakeOnly(cfg Config) Config {
	cfg.RetryStrategy = LinearBackoff(1000, time.Minute)
	return cfg
}

// quiet waits until c has sent no command for 300 ms: its acquisition
// waits, it does not poll.
func quiet(t *testing.T, c *Client) {
	t.Helper()
	eventually(t, 30*time.Second, "the waiter settles into its wait", func() bool {
		before := commandsSent(c)
		time.Sleep(300 * time.Millisecond)
		return commandsSent(c) == before
	})
}

// expectLock returns the lock an acquisition in the background obtained.
func expectLock(t *testing.T, got <-chan *Lock, errc <-chan error, what string) *Lock {
	t.Helper()
	select {
	case l := <-got:
		return l
	case err := <-errc:
		t.Fatalf("%s: %v", what, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not within 30 s (retry delays and TTLs are a minute: only a wake-up gets it sooner)", what)
	}
	return nil
}

// expectWaiting fails when an acquisition in the background has ended.
func expectWaiting(t *testing.T, got <-chan *Lock, errc <-chan error, what string) {
	t.Helper()
	select {
	case <-got:
		t.Fatalf("%s: obtained while it is held", what)
	case err := <-errc:
		t.Fatalf("%s: %v", what, err)
	default:
	}
}

// serversOf returns the masters at addrs.
func serversOf(f [][]*redisproc.Server, addrs []string) []*redisproc.Server {
	all := serverOf(f)
	out := make([]*redisproc.Server, len(addrs))
	for i, a := range addrs {
		out[i] = all[a]
	}
	return out
}

// TestWakeWriterAtReaderReleases: a writer blocked behind three readers
// retries at each reader's release (announced by the masters) and gets the
// lock at the last one's — with retry delays and reader TTLs of a minute,
// only the announcement explains it. It sends nothing while it waits.
func TestWakeWriterAtReaderReleases(t *testing.T) {
	f := fleet(t, 1, 3)
	readers := newClient(t, clusterConfig(f))
	c := newClient(t, wakeOnly(clusterConfig(f)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var shares []*Lock
	for range 3 {
		r, err := readers.RWMutex("wake-w").RLock(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, r)
	}
	started := time.Now()
	got, errc := lockAsync(func() (*Lock, error) { return c.RWMutex("wake-w").Lock(ctx, 10*time.Second) })
	waitSubscribed(t, f[0], "wake-w:rw:writer", 1)
	quiet(t, c)
	for i, r := range shares[:2] {
		before := commandsSent(c)
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("the writer retries at reader %d's release", i), func() bool {
			return commandsSent(c) > before
		})
		quiet(t, c) // refused by the readers left: it waits again
		expectWaiting(t, got, errc, "writer")
	}
	released := time.Now()
	if err := shares[2].Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := expectLock(t, got, errc, "writer after the last reader's release")
	t.Logf("writer obtained %v after the last reader's release (%v after it began)", time.Since(released), time.Since(started))
	if !w.Valid() {
		t.Fatal("the writer's lock is not valid")
	}
	if _, err := readers.RWMutex("wake-w").TryRLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Errorf("a reader got in beside the writer: %v", err)
	}
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWakeReadersAtWriterReleaseAndMarkLift: readers blocked by a writer
// get their shares at its release; a reader blocked by a waiting writer's
// mark (a minute's TTL) gets in when that writer gives up and lifts it.
func TestWakeReadersAtWriterReleaseAndMarkLift(t *testing.T) {
	f := fleet(t, 1, 3)
	holder := newClient(t, clusterConfig(f))
	c := newClient(t, wakeOnly(clusterConfig(f)))
	giver := newClient(t, wakeOnly(clusterConfig(f)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := holder.RWMutex("wake-r").Lock(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rlock := func() (*Lock, error) { return c.RWMutex("wake-r").RLock(ctx, 10*time.Second) }
	got1, errc1 := lockAsync(rlock)
	got2, errc2 := lockAsync(rlock)
	waitSubscribed(t, f[0], "wake-r:rw:writer", 1)
	quiet(t, c)
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r1 := expectLock(t, got1, errc1, "first reader after the writer's release")
	r2 := expectLock(t, got2, errc2, "second reader after the writer's release")

	// A writer waits behind r1 and r2; its mark keeps a new reader out.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	_, werrc := lockAsync(func() (*Lock, error) { return giver.RWMutex("wake-r").Lock(wctx, time.Minute) })
	// The mark keeps new readers out once a quorum carries it. Not every
	// master need carry it: RLock returns at quorum, so a master where the
	// readers' shares had not landed yet (late on a loaded machine) grants
	// the writer instead — a "yes", no mark — at every attempt.
	ms := raws(t, f[0])
	eventually(t, 30*time.Second, "the waiting writer's mark on a quorum of masters", func() bool {
		return onMasters(ms, func(m *redis.Client) bool { return m.Exists(ctx, "wake-r:rw:waiting").Val() == 1 }) >= 2
	})
	got3, errc3 := lockAsync(rlock)
	quiet(t, c)
	expectWaiting(t, got3, errc3, "reader behind the waiting writer's mark")
	wcancel()
	if err := <-werrc; !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the writer that gave up: %v", err)
	}
	r3 := expectLock(t, got3, errc3, "reader after the waiting writer gave up (its mark lives a minute)")
	for _, r := range []*Lock{r1, r2, r3} {
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWakePermitWaiter: a permit waiter (2 permits, both held for a
// minute) gets the permit a holder releases.
func TestWakePermitWaiter(t *testing.T) {
	f := fleet(t, 1, 3)
	holders := newClient(t, clusterConfig(f))
	c := newClient(t, wakeOnly(clusterConfig(f)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hs, err := holders.Semaphore("wake-sem", 2)
	if err != nil {
		t.Fatal(err)
	}
	var held []*Lock
	for range 2 {
		p, err := hs.Acquire(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p)
	}
	s, err := c.Semaphore("wake-sem", 2)
	if err != nil {
		t.Fatal(err)
	}
	got, errc := lockAsync(func() (*Lock, error) { return s.Acquire(ctx, 10*time.Second) })
	waitSubscribed(t, f[0], "wake-sem:sem:holders", 1)
	quiet(t, c)
	expectWaiting(t, got, errc, "permit waiter")
	if err := held[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	p := expectLock(t, got, errc, "permit waiter after a release")
	if _, err := hs.TryAcquire(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Errorf("a third permit of two: %v", err)
	}
	for _, l := range []*Lock{p, held[1]} {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLockAllWokenByRelease: LockAll of three resources over two groups,
// one held for a minute: it holds none of the others while it waits, and
// gets all of them at the release.
func TestLockAllWokenByRelease(t *testing.T) {
	f := fleet(t, 2, 3)
	holder := newClient(t, clusterConfig(f))
	c := newClient(t, wakeOnly(clusterConfig(f)))
	servers := serverOf(f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := holder.Lock(ctx, "la-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	res := []string{"la-c", "la-a", "la-b"}
	type outcome struct {
		m   *MultiLock
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		m, err := c.LockAll(ctx, res, 10*time.Second)
		done <- outcome{m, err}
	}()
	waitSubscribed(t, serversOf(f, c.Route("la-b")), "la-b", 1)
	quiet(t, c)
	for _, r := range []string{"la-a", "la-c"} {
		for _, addr := range c.Route(r) {
			if v := servers[addr].GetT(t, r); v != "" {
				t.Errorf("%s holds %s while LockAll waits", addr, r)
			}
		}
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var m *MultiLock
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		m = o.m
	case <-time.After(30 * time.Second):
		t.Fatal("LockAll not woken by the release (retry delays and the TTL are a minute)")
	}
	for _, r := range res { // (a master the holder's release reached last may have refused the set)
		held := 0
		for _, addr := range c.Route(r) {
			if servers[addr].GetT(t, r) == m.Token() {
				held++
			}
		}
		if held < 2 {
			t.Errorf("%s is held by the MultiLock on %d of 3 masters", r, held)
		}
	}
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// killSubscriptions kills the subscription connections on servers until
// they stay gone: one killed soon after it was made is redialed only after
// ReconnectInterval.
func killSubscriptions(t *testing.T, servers []*redisproc.Server, key string) {
	t.Helper()
	ctx := context.Background()
	gone := func() bool {
		for _, s := range servers {
			if subscribers(t, s, key) != 0 {
				return false
			}
		}
		return true
	}
	eventually(t, 30*time.Second, "subscriptions killed for good", func() bool {
		for _, s := range servers {
			if _, err := s.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil && !strings.Contains(err.Error(), "No such client") {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		if !gone() {
			return false
		}
		time.Sleep(time.Second)
		return gone()
	})
}

// TestWaitLostAnnouncementBoundedByTTL: the writer's subscriptions are
// killed and stay down (redial a minute away), then the reader that keeps
// it out releases: the announcement is lost, yet the writer gets the lock
// within the reader's 3 s TTL — the bound the masters gave its wait — not
// at its minute-long retry delay.
func TestWaitLostAnnouncementBoundedByTTL(t *testing.T) {
	f := fleet(t, 1, 3)
	readers := newClient(t, clusterConfig(f))
	cfg := wakeOnly(clusterConfig(f))
	cfg.ReconnectInterval = time.Minute
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := readers.RWMutex("lost").RLock(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, errc := lockAsync(func() (*Lock, error) { return c.RWMutex("lost").Lock(ctx, 10*time.Second) })
	waitSubscribed(t, f[0], "lost:rw:writer", 1)
	killSubscriptions(t, f[0], "lost:rw:writer")
	released := time.Now()
	_ = r.Release(ctx) // (ErrNotHeld if its 3 s ran out meanwhile: the writer's bound holds either way)
	w := expectLock(t, got, errc, "writer after a lost announcement")
	t.Logf("writer obtained %v after the lost announcement", time.Since(released))
	for _, s := range f[0] {
		if n := subscribers(t, s, "lost:rw:writer"); n != 0 {
			t.Fatalf("a subscription came back (%d on %s): the announcement was not lost", n, s.Addr())
		}
	}
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWaitPermitHolderCrashBoundedByTTL: the holder of the only permit
// crashes (its client closes without releasing): the waiter gets the permit
// once it expired on the masters (3 s), not at its minute-long retry
// delay, and never before the holder's validity ended.
func TestWaitPermitHolderCrashBoundedByTTL(t *testing.T) {
	f := fleet(t, 1, 3)
	hcfg := clusterConfig(f)
	hcfg.Logger = quietLogger
	holder, err := New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, wakeOnly(clusterConfig(f)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hs, _ := holder.Semaphore("crash-sem", 1)
	p, err := hs.Acquire(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = holder.Close() // crashed: nothing released
	s, _ := c.Semaphore("crash-sem", 1)
	got, errc := lockAsync(func() (*Lock, error) { return s.Acquire(ctx, 10*time.Second) })
	l := expectLock(t, got, errc, "permit after its holder crashed")
	if now := time.Now(); now.Before(p.Until()) {
		t.Fatalf("obtained %v before the crashed holder's validity ended", p.Until().Sub(now))
	}
	_ = l.Release(ctx)
}

// TestWaitCancelledAtEveryStepLeavesNothing: every blocking acquisition
// whose ctx ends at every point of its wait — before the first attempt,
// while subscribing, while waiting, as the release that wakes it arrives —
// fails with one line matching ErrNotObtained and the deadline, or gets the
// lock (and releases it); afterwards no key, share, mark or permit is left
// on any master.
func TestWaitCancelledAtEveryStepLeavesNothing(t *testing.T) {
	f := fleet(t, 1, 3)
	holder := newClient(t, clusterConfig(f))
	c := newClient(t, wakeOnly(clusterConfig(f)))
	ms := raws(t, f[0])
	bg := context.Background()
	lockRel := func(l *Lock, err error) (func(), error) {
		if err != nil {
			return nil, err
		}
		return func() { _ = l.Release(bg) }, nil
	}
	hsem, _ := holder.Semaphore("cx-sem", 1)
	csem, _ := c.Semaphore("cx-sem", 1)
	kinds := []struct {
		name       string
		hold, wait func(ctx context.Context) (func(), error)
		keys       []string
	}{
		{"lock", func(ctx context.Context) (func(), error) { return lockRel(holder.Lock(ctx, "cx-lock", time.Minute)) },
			func(ctx context.Context) (func(), error) { return lockRel(c.Lock(ctx, "cx-lock", time.Minute)) },
			[]string{"cx-lock"}},
		{"await", func(ctx context.Context) (func(), error) { return lockRel(holder.Lock(ctx, "cx-await", time.Minute)) },
			func(ctx context.Context) (func(), error) { return lockRel(c.Await(ctx, "cx-await", time.Minute)) },
			[]string{"cx-await"}},
		{"rlock", func(ctx context.Context) (func(), error) {
			return lockRel(holder.RWMutex("cx-r").Lock(ctx, time.Minute))
		},
			func(ctx context.Context) (func(), error) { return lockRel(c.RWMutex("cx-r").RLock(ctx, time.Minute)) },
			[]string{"cx-r:rw:writer", "cx-r:rw:readers", "cx-r:rw:waiting"}},
		{"wlock", func(ctx context.Context) (func(), error) {
			return lockRel(holder.RWMutex("cx-w").RLock(ctx, time.Minute))
		},
			func(ctx context.Context) (func(), error) { return lockRel(c.RWMutex("cx-w").Lock(ctx, time.Minute)) },
			[]string{"cx-w:rw:writer", "cx-w:rw:readers", "cx-w:rw:waiting"}},
		{"acquire", func(ctx context.Context) (func(), error) { return lockRel(hsem.Acquire(ctx, time.Minute)) },
			func(ctx context.Context) (func(), error) { return lockRel(csem.Acquire(ctx, time.Minute)) },
			[]string{"cx-sem:sem:holders", "cx-sem:sem:permits"}},
		{"lockall", func(ctx context.Context) (func(), error) { return lockRel(holder.Lock(ctx, "cx-b", time.Minute)) },
			func(ctx context.Context) (func(), error) {
				m, err := c.LockAll(ctx, []string{"cx-c", "cx-b", "cx-a"}, time.Minute)
				if err != nil {
					return nil, err
				}
				return func() { _ = m.Release(bg) }, nil
			},
			[]string{"cx-a", "cx-b", "cx-c"}},
	}
	delays := []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond,
		30 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}
	for _, k := range kinds {
		obtained := 0
		for _, d := range delays {
			release, err := k.hold(bg)
			if err != nil {
				t.Fatalf("%s: holder: %v", k.name, err)
			}
			ctx, cancel := context.WithTimeout(bg, d)
			var wg sync.WaitGroup
			wg.Go(func() { // the release that wakes the waiter races its deadline
				time.Sleep(d * 3 / 4)
				release()
			})
			rel, err := k.wait(ctx)
			cancel()
			wg.Wait()
			switch {
			case err == nil:
				obtained++
				rel()
			case !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded):
				t.Errorf("%s, ctx %v: %v, want ErrNotObtained and DeadlineExceeded", k.name, d, err)
			case strings.ContainsAny(err.Error(), "\r\n"):
				t.Errorf("%s, ctx %v: the error is not one line: %q", k.name, d, err)
			}
		}
		t.Logf("%s: %d of %d obtained before their deadline", k.name, obtained, len(delays))
		for i, m := range ms {
			eventually(t, 10*time.Second, fmt.Sprintf("%s: nothing left on master %d", k.name, i), func() bool {
				return m.Exists(bg, k.keys...).Val() == 0
			})
		}
	}
}

// TestWaitWaitersNeverBothHold: two clients, three goroutines each, take
// an RWMutex (as writers and readers), a 2-permit semaphore and
// overlapping LockAll sets in turns, every retry delay a minute: they all
// get through by wake-ups, and no two ever hold what excludes them.
func TestWaitWaitersNeverBothHold(t *testing.T) {
	f := fleet(t, 1, 3)
	cs := []*Client{newClient(t, wakeOnly(clusterConfig(f))), newClient(t, wakeOnly(clusterConfig(f)))}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rw, sem := newHoldLog(0), newHoldLog(2)
	var inA, inB atomic.Int32
	var done atomic.Int32
	started := time.Now()
	var wg sync.WaitGroup
	for ci, c := range cs {
		for g := range 3 {
			wg.Go(func() {
				m := c.RWMutex("both-rw")
				s, _ := c.Semaphore("both-sem", 2)
				for i := range 6 {
					var l *Lock
					var err error
					log, kind := rw, byte('w')
					switch (g + i) % 3 {
					case 0:
						l, err = m.Lock(ctx, 5*time.Second)
					case 1:
						l, err = m.RLock(ctx, 5*time.Second)
						kind = 'r'
					default:
						l, err = s.Acquire(ctx, 5*time.Second)
						log, kind = sem, 'p'
					}
					if err != nil {
						t.Errorf("client %d goroutine %d: %c: %v", ci, g, kind, err)
						return
					}
					log.begin(l, kind)
					time.Sleep(2 * time.Millisecond)
					log.end(l)
					if err := l.Release(ctx); err != nil {
						t.Error(err)
					}
					done.Add(1)
				}
				sets := [][]string{{"both-a", "both-b"}, {"both-b", "both-a"}, {"both-a"}, {"both-b"}}
				for i := range 4 {
					set := sets[(g+i)%len(sets)]
					ml, err := c.LockAll(ctx, set, 5*time.Second)
					if err != nil {
						t.Errorf("client %d goroutine %d: lockall %v: %v", ci, g, set, err)
						return
					}
					for _, r := range set {
						n := &inA
						if r == "both-b" {
							n = &inB
						}
						if n.Add(1) > 1 {
							t.Errorf("two holders of %s", r)
						}
					}
					time.Sleep(2 * time.Millisecond)
					for _, r := range set {
						if r == "both-b" {
							inB.Add(-1)
						} else {
							inA.Add(-1)
						}
					}
					if err := ml.Release(ctx); err != nil {
						t.Error(err)
					}
					done.Add(1)
				}
			})
		}
	}
	wg.Wait()
	rw.check(t)
	sem.check(t)
	t.Logf("%d acquisitions in %v (retry delays a minute); most at once: %d readers, %d permits", done.Load(), time.Since(started), rw.maxAtOnce['r'], sem.maxAtOnce['p'])
	if done.Load() != 2*3*10 {
		t.Fatalf("%d of %d acquisitions", done.Load(), 2*3*10)
	}
}

// TestWaitNoGoroutineLeak: blocking acquisitions of every kind, woken or
// cancelled, leave no goroutine behind: the count returns to what it was
// after the first round while the clients live, and to what it was before
// them after Close.
func TestWaitNoGoroutineLeak(t *testing.T) {
	f := fleet(t, 1, 3)
	base := runtime.NumGoroutine()
	open := func(cfg Config) *Client {
		cfg.Logger = quietLogger
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	holder, c := open(clusterConfig(f)), open(wakeOnly(clusterConfig(f)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	round := func() {
		hw, err := holder.RWMutex("leak-rw").Lock(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		hl, err := holder.Lock(ctx, "leak-b", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		hs, _ := holder.Semaphore("leak-sem", 1)
		hp, err := hs.Acquire(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := c.Semaphore("leak-sem", 1)
		var wg sync.WaitGroup
		for _, acquire := range []func() (func(), error){
			func() (func(), error) {
				l, err := c.RWMutex("leak-rw").RLock(ctx, 5*time.Second)
				return func() { _ = l.Release(ctx) }, err
			},
			func() (func(), error) {
				l, err := c.Lock(ctx, "leak-b", 5*time.Second)
				return func() { _ = l.Release(ctx) }, err
			},
			func() (func(), error) {
				l, err := c.Await(ctx, "leak-b", 5*time.Second)
				return func() { _ = l.Release(ctx) }, err
			},
			func() (func(), error) {
				l, err := s.Acquire(ctx, 5*time.Second)
				return func() { _ = l.Release(ctx) }, err
			},
			func() (func(), error) {
				m, err := c.LockAll(ctx, []string{"leak-a", "leak-b"}, 5*time.Second)
				return func() { _ = m.Release(ctx) }, err
			},
			func() (func(), error) { // gives up
				cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer ccancel()
				_, err := c.RWMutex("leak-rw").Lock(cctx, 5*time.Second)
				if !errors.Is(err, ErrNotObtained) {
					return nil, fmt.Errorf("want ErrNotObtained, got %w", err)
				}
				return func() {}, nil
			},
		} {
			wg.Go(func() {
				release, err := acquire()
				if err != nil {
					t.Error(err)
					return
				}
				release()
			})
		}
		quiet(t, c)
		for _, l := range []*Lock{hw, hl, hp} {
			_ = l.Release(ctx)
		}
		wg.Wait()
	}
	settle := func() int { // the count once it stops changing
		n := runtime.NumGoroutine()
		eventually(t, 20*time.Second, "goroutines settle", func() bool {
			time.Sleep(subscriptionLinger)
			m := runtime.NumGoroutine()
			defer func() { n = m }()
			return m == n
		})
		return n
	}
	round()
	warm := settle()
	for range 3 {
		round()
	}
	eventually(t, 20*time.Second, "goroutines back to the first round's", func() bool { return runtime.NumGoroutine() <= warm })
	_ = c.Close()
	_ = holder.Close()
	eventually(t, 20*time.Second, "goroutines back to before the clients", func() bool { return runtime.NumGoroutine() <= base })
	t.Logf("goroutines: %d before, %d while the clients live, %d after Close", base, warm, runtime.NumGoroutine())
}

// TestWaitUncontendedNeverSubscribes: blocking acquisitions that succeed
// at once join no queue and open no subscription connection.
func TestWaitUncontendedNeverSubscribes(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	s, _ := c.Semaphore("free-sem", 2)
	for _, acquire := range []func() (func(), error){
		func() (func(), error) {
			l, err := c.Lock(ctx, "free", time.Second)
			return func() { _ = l.Release(ctx) }, err
		},
		func() (func(), error) {
			l, err := c.Await(ctx, "free", time.Second)
			return func() { _ = l.Release(ctx) }, err
		},
		func() (func(), error) {
			l, err := c.RWMutex("free-rw").Lock(ctx, time.Second)
			return func() { _ = l.Release(ctx) }, err
		},
		func() (func(), error) {
			l, err := c.RWMutex("free-rw").RLock(ctx, time.Second)
			return func() { _ = l.Release(ctx) }, err
		},
		func() (func(), error) {
			l, err := s.Acquire(ctx, time.Second)
			return func() { _ = l.Release(ctx) }, err
		},
		func() (func(), error) {
			m, err := c.LockAll(ctx, []string{"free-a", "free-b"}, time.Second)
			return func() { _ = m.Release(ctx) }, err
		},
	} {
		release, err := acquire()
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	if len(c.hub.subs) != 0 || len(c.hub.queues) != 0 {
		t.Fatalf("uncontended acquisitions left %d subscription connections and %d queues", len(c.hub.subs), len(c.hub.queues))
	}
	for _, srv := range f[0] {
		if n := subscribers(t, srv, "free"); n != 0 {
			t.Fatalf("%d subscribers on %s", n, srv.Addr())
		}
	}
}

// TestWaitSplitVoteDoesNotPoll: the holder's key is on two masters of
// three (the third lost it), and the waiters reach those two through slow
// links, so every attempt of a waiter is a split vote (the third's yes
// comes first). Split votes make waiters desynchronize by a few ms, but the
// waiters still wait for the release (or the key's minute-long PTTL): they
// settle, poll nothing, and get the lock at the release.
func TestWaitSplitVoteDoesNotPoll(t *testing.T) {
	f := fleet(t, 1, 3)
	holder := newClient(t, clusterConfig(f))
	cfg := wakeOnly(clusterConfig(f))
	for i := range 2 {
		p := &tcpProxy{upstream: f[0][i].Addr(), addr: "127.0.0.1:0", delay: 20 * time.Millisecond}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		cfg.Servers[i] = p.Addr()
	}
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := holder.Lock(ctx, "split", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the key on every master", func() bool {
		return onMasters(raws(t, f[0]), func(m *redis.Client) bool { return m.Exists(ctx, "split").Val() == 1 }) == 3
	})
	if err := raw(t, f[0][2]).Del(ctx, "split").Err(); err != nil {
		t.Fatal(err)
	}
	gotA, errcA := awaitAsync(c, ctx, "split", 10*time.Second)
	gotL, errcL := lockAsync(func() (*Lock, error) { return c.Lock(ctx, "split", 10*time.Second) })
	waitSubscribed(t, f[0], "split", 1)
	quiet(t, c)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var first *Lock
	select {
	case first = <-gotA:
	case first = <-gotL:
	case err := <-errcA:
		t.Fatal(err)
	case err := <-errcL:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("no waiter got the lock at the release")
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-gotA:
		_ = l.Release(ctx)
	case l := <-gotL:
		_ = l.Release(ctx)
	case err := <-errcA:
		t.Fatal(err)
	case err := <-errcL:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the second waiter did not get the lock at the first one's release")
	}
}

// TestWakeWriterWithAMasterPaused: one master of three is paused (SIGSTOP)
// while a writer waits behind a reader: the reader's release, announced by
// the two others, still wakes the writer (retry delays and the reader's TTL
// are a minute), and the writer holds alone.
func TestWakeWriterWithAMasterPaused(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = time.Second // the live masters must answer within it under a CPU hog and -race
	readers := newClient(t, cfg)
	c := newClient(t, wakeOnly(cfg))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := readers.RWMutex("paused-rw").RLock(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// RLock returns at quorum: let the share land on the third master
	// before the writer's mark can refuse it there (the reader would then
	// hold a bare majority, which the pause below breaks).
	rc := raws(t, f[0])
	eventually(t, 30*time.Second, "the reader's share on every master", func() bool {
		return onMasters(rc, func(m *redis.Client) bool {
			_, ok := zscore(t, m, "paused-rw:rw:readers", r.Token())
			return ok
		}) == len(rc)
	})
	got, errc := lockAsync(func() (*Lock, error) { return c.RWMutex("paused-rw").Lock(ctx, 10*time.Second) })
	waitSubscribed(t, f[0], "paused-rw:rw:writer", 1)
	quiet(t, c)
	if err := f[0][2].Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f[0][2].Resume() }()
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := expectLock(t, got, errc, "writer after the reader's release, one master paused")
	if !w.Valid() {
		t.Fatal("the writer's lock is not valid")
	}
	if _, err := readers.RWMutex("paused-rw").TryRLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Errorf("a reader got in beside the writer: %v", err)
	}
	_ = w.Release(ctx)
}
