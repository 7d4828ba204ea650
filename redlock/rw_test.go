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

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// TestRWMutexReadersShareWriterExcludes: readers of several clients share;
// a writer is refused while any reads and holds alone; Release and Extend
// act on exactly one share.
func TestRWMutexReadersShareWriterExcludes(t *testing.T) {
	f, cfg := oneGroup(t, 3, clusterConfig, NoRetry())
	a, b := newClient(t, cfg), newClient(t, cfg)
	ctx := context.Background()
	ma, mb := a.RWMutex("doc"), b.RWMutex("doc")

	r1, err := ma.RLock(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := mb.TryRLock(ctx, 10*time.Second)
	if err != nil {
		t.Fatalf("a second reader (another client): %v", err)
	}
	if r1.Token() == r2.Token() || r1.Resource() != "doc" || !r1.Valid() || !r2.Valid() {
		t.Fatalf("shares: %q %q valid %v %v", r1.Token(), r2.Token(), r1.Valid(), r2.Valid())
	}
	ms := raws(t, f[0])
	// Each RLock returned at a majority; the third master follows.
	eventually(t, 5*time.Second, "both shares on a majority", func() bool {
		return onMasters(ms, func(c *redis.Client) bool { return c.ZCard(ctx, "doc:rw:readers").Val() == 2 }) >= 2
	})
	if _, err := mb.TryLock(ctx, 10*time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("writer while two read: %v, want ErrNotObtained", err)
	}
	// Extend moves one share's expiry, not the other's. (Lock and Extend
	// return at quorum: wait for the third master's answers.)
	for i, c := range ms {
		eventually(t, 5*time.Second, "both shares on master "+itoa(i), func() bool { return c.ZCard(ctx, "doc:rw:readers").Val() == 2 })
	}
	var before1, before2 [3]int64
	for i, c := range ms {
		before1[i], _ = zscore(t, c, "doc:rw:readers", r1.Token())
		before2[i], _ = zscore(t, c, "doc:rw:readers", r2.Token())
	}
	if err := r1.Extend(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for i, c := range ms {
		eventually(t, 5*time.Second, "share 1 extended on master "+itoa(i), func() bool {
			s, _ := zscore(t, c, "doc:rw:readers", r1.Token())
			return s >= before1[i]+40_000
		})
		if s, _ := zscore(t, c, "doc:rw:readers", r2.Token()); s != before2[i] {
			t.Fatalf("master %d: extending share 1 moved share 2 from %d to %d", i, before2[i], s)
		}
	}
	if err := r1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r1.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second release of a share: %v, want ErrNotHeld", err)
	}
	if _, err := ma.TryLock(ctx, 10*time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("writer while one reads: %v, want ErrNotObtained", err)
	}
	if err := r2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The release returned at a majority, and client a's connections are
	// not ordered after client b's: let the third master drop the share
	// before the writer's script reaches it (else it refuses the writer).
	for i, c := range ms {
		eventually(t, 5*time.Second, "no share left on master "+itoa(i), func() bool { return c.ZCard(ctx, "doc:rw:readers").Val() == 0 })
	}

	w, err := ma.TryLock(ctx, 10*time.Second)
	if err != nil {
		t.Fatalf("writer once the readers left: %v", err)
	}
	eventually(t, 5*time.Second, "the writer key holds the token on master 0", func() bool {
		return keyOn(t, f[0][0], "doc:rw:writer") == w.Token()
	})
	if _, err := mb.TryRLock(ctx, 10*time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("reader while a writer holds: %v, want ErrNotObtained", err)
	}
	if _, err := mb.TryLock(ctx, 10*time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("second writer: %v, want ErrNotObtained", err)
	}
	if err := w.Extend(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Failed attempts left nothing behind: every key is gone everywhere.
	for i, c := range ms {
		eventually(t, 5*time.Second, "no keys left on master "+itoa(i), func() bool {
			return c.Exists(ctx, "doc:rw:writer", "doc:rw:readers", "doc:rw:waiting").Val() == 0
		})
	}
	// A plain lock of the same resource is another lock.
	l, err := a.TryLock(ctx, "doc", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Release(ctx)
}

// TestRWMutexCrashedReaderExpiresOnServerClock: a reader that never
// releases frees its share at its TTL, as measured by the masters: the
// writer gets in only once the masters' own clocks passed the share's
// expiry (computed there from TIME).
func TestRWMutexCrashedReaderExpiresOnServerClock(t *testing.T) {
	f, c := oneGroupClient(t, clusterConfig, LinearBackoff(10000, 20*time.Millisecond))
	ctx := context.Background()
	ms := raws(t, f[0])
	m := c.RWMutex("crash")

	before := serverMs(t, ms[0])
	r, err := m.RLock(ctx, 700*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// RLock returns at quorum: master 0 may run the script a little later.
	eventually(t, 5*time.Second, "share on master 0", func() bool {
		_, ok := zscore(t, ms[0], "crash:rw:readers", r.Token())
		return ok
	})
	after := serverMs(t, ms[0])
	expiry, ok := zscore(t, ms[0], "crash:rw:readers", r.Token())
	if !ok || expiry < before+700 || expiry > after+700 {
		t.Fatalf("share expiry %d (present %v), want the master's TIME + 700 ms in [%d, %d]", expiry, ok, before+700, after+700)
	}
	// The reader "crashes": no release, no extend. A writer takes the
	// lock only when the share has expired on a majority.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := m.Lock(wctx, 5*time.Second)
	if err != nil {
		t.Fatalf("writer after a crashed reader: %v", err)
	}
	passed := 0
	for i, mc := range ms {
		now := serverMs(t, mc)
		if now >= expiry {
			passed++
		}
		if _, ok := zscore(t, mc, "crash:rw:readers", r.Token()); ok && keyOn(t, f[0][i], "crash:rw:writer") == w.Token() {
			t.Fatalf("master %d granted the writer with the share still recorded", i)
		}
	}
	if passed < 2 {
		t.Fatalf("the writer got in while only %d masters' clocks passed the share's expiry", passed)
	}
	if err := r.Extend(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("extend of an expired share: %v, want ErrNotHeld (never revived)", err)
	}
	if err := w.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexWriterNotStarved: readers hand over hand (each takes a new
// share before giving up its old one, so without writer preference there is
// never a moment with no reader); a waiting writer still gets in, because
// its waiting mark keeps new readers out. No reader holds while it does.
func TestRWMutexWriterNotStarved(t *testing.T) {
	_, cfg := oneGroup(t, 3, clusterConfig, LinearBackoff(100000, 10*time.Millisecond))
	readers, writer := newClient(t, cfg), newClient(t, cfg)
	ctx := context.Background()
	log := newHoldLog(0)
	stop := make(chan struct{})
	var refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			m := readers.RWMutex("starve")
			var old *Lock
			defer func() {
				if old != nil {
					log.end(old)
					_ = old.Release(ctx)
				}
			}()
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				nl, err := m.TryRLock(ctx, 2*time.Second)
				if err == nil {
					log.begin(nl, 'r')
				} else {
					refused.Add(1)
				}
				if old != nil {
					log.end(old)
					_ = old.Release(ctx)
				}
				old = nl
				time.Sleep(time.Duration(5+i) * time.Millisecond)
			}
		})
	}
	// Let the reader stream establish itself.
	eventually(t, 10*time.Second, "readers hold", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.holds['r'] >= 20
	})
	// Without a waiting mark (TryLock), the writer finds readers.
	tries := 0
	for range 10 {
		if l, err := writer.RWMutex("starve").TryLock(ctx, time.Second); err == nil {
			_ = l.Release(ctx)
		} else {
			tries++
		}
	}
	t.Logf("TryLock refused %d of 10 times under the reader stream", tries)

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	w, err := writer.RWMutex("starve").Lock(wctx, 3*time.Second)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("writer starved by the reader stream: %v", err)
	}
	log.begin(w, 'w')
	time.Sleep(50 * time.Millisecond) // readers keep trying meanwhile
	log.end(w)
	if err := w.Release(ctx); err != nil {
		t.Error(err)
	}
	close(stop)
	wg.Wait()
	log.check(t)
	if refused.Load() == 0 {
		t.Fatal("no reader was ever refused: the writer did not hold the lock against them")
	}
}

// TestRWMutexCrashedWaitingWriter: a writer that crashes while waiting
// (its client closed: no cleanup is sent) leaves its waiting mark; new
// readers are refused while it lives, but it expires on the masters after
// the writer's ttl and readers get in again.
func TestRWMutexCrashedWaitingWriter(t *testing.T) {
	f, cfg := oneGroup(t, 3, clusterConfig, LinearBackoff(100000, 20*time.Millisecond))
	readers := newClient(t, cfg)
	wcfg := cfg
	wcfg.Logger = quietLogger
	wc, err := New(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wc.Close() })
	ctx := context.Background()
	ms := raws(t, f[0])
	m := readers.RWMutex("ww")
	r, err := m.RLock(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const writerTTL = 1500 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := wc.RWMutex("ww").Lock(ctx, writerTTL)
		done <- err
	}()
	eventually(t, 10*time.Second, "waiting mark on a majority", func() bool {
		return onMasters(ms, func(c *redis.Client) bool { return c.Exists(ctx, "ww:rw:waiting").Val() == 1 }) >= 2
	})
	for i, c := range ms {
		if p := c.PTTL(ctx, "ww:rw:waiting").Val(); p > writerTTL {
			t.Fatalf("master %d: the mark lives %v, more than the writer's ttl %v", i, p, writerTTL)
		}
	}
	if _, err := m.TryRLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("new reader while a writer waits: %v, want ErrNotObtained", err)
	}
	// The already-holding reader is not affected.
	if err := r.Extend(ctx, 30*time.Second); err != nil {
		t.Fatalf("extend of a held share while a writer waits: %v", err)
	}
	// Crash the waiting writer.
	_ = wc.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("writer after its client closed: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r2, err := m.RLock(rctx, time.Second)
	if err != nil {
		t.Fatalf("a crashed waiting writer blocks readers: %v", err)
	}
	if n := onMasters(ms, func(c *redis.Client) bool { return c.Exists(ctx, "ww:rw:waiting").Val() == 0 }); n < 2 {
		t.Fatalf("reader got in with the mark alive on %d masters", 3-n)
	}
	_ = r2.Release(ctx)
	_ = r.Release(ctx)
}

// TestRWMutexWriterGivingUpLiftsItsMark: a writer whose Lock ends (its
// context) removes its waiting mark at once, long before the mark's TTL.
func TestRWMutexWriterGivingUpLiftsItsMark(t *testing.T) {
	f, c := oneGroupClient(t, clusterConfig, LinearBackoff(100000, 20*time.Millisecond))
	ctx := context.Background()
	ms := raws(t, f[0])
	m := c.RWMutex("giveup")
	r, err := m.RLock(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := m.Lock(wctx, 10*time.Minute) // the mark would live 10 minutes
		done <- err
	}()
	eventually(t, 10*time.Second, "waiting mark on a majority", func() bool {
		return onMasters(ms, func(c *redis.Client) bool { return c.Exists(ctx, "giveup:rw:waiting").Val() == 1 }) >= 2
	})
	cancel()
	if err := <-done; !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled writer: %v", err)
	}
	for i, c := range ms {
		eventually(t, 10*time.Second, "mark lifted on master "+itoa(i), func() bool { return c.Exists(ctx, "giveup:rw:waiting").Val() == 0 })
	}
	r2, err := m.TryRLock(ctx, time.Second)
	if err != nil {
		t.Fatalf("reader after the writer gave up: %v", err)
	}
	_ = r2.Release(ctx)
	_ = r.Release(ctx)
}

// TestRWMutexMinorityFaults: readers and writers of three clients contend
// while one master of three is paused (SIGSTOP), then killed: the lock
// stays available and no writer ever holds with anyone else.
func TestRWMutexMinorityFaults(t *testing.T) {
	f, cfg := oneGroup(t, 3, faultConfig, LinearBackoff(50, 5*time.Millisecond))
	clients := []*Client{newClient(t, cfg), newClient(t, cfg), newClient(t, cfg)}
	for _, fault := range []string{"pause", "kill"} {
		t.Run(fault, func(t *testing.T) {
			defer pauseOrKill(t, fault, f[0][2])()
			log := newHoldLog(0)
			var wg sync.WaitGroup
			deadline := time.Now().Add(3 * time.Second)
			for i := range 6 {
				wg.Go(func() {
					m := clients[i%3].RWMutex("faults-" + fault)
					for n := 0; n < 300 && time.Now().Before(deadline); n++ {
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						var l *Lock
						var err error
						kind := byte('r')
						if (i+n)%4 == 0 {
							kind = 'w'
							l, err = m.Lock(ctx, time.Second)
						} else {
							l, err = m.RLock(ctx, time.Second)
						}
						cancel()
						if err != nil {
							continue
						}
						log.begin(l, kind)
						time.Sleep(time.Millisecond)
						log.end(l)
						_ = l.Release(context.Background())
					}
				})
			}
			wg.Wait()
			log.check(t)
			t.Logf("%s: %d reads (at most %d at once), %d writes", fault, log.holds['r'], log.maxAtOnce['r'], log.holds['w'])
			if log.holds['r'] == 0 || log.holds['w'] == 0 {
				t.Fatalf("a minority fault stopped the lock: %d reads, %d writes", log.holds['r'], log.holds['w'])
			}
		})
	}
}

// TestRWMutexDo: DoRead runs fn holding a share (another reader can join,
// a writer cannot), DoWrite holding the lock alone; both release after fn.
func TestRWMutexDo(t *testing.T) {
	_, c := oneGroupClient(t, clusterConfig, NoRetry())
	ctx := context.Background()
	m := c.RWMutex("do")
	err := m.DoRead(ctx, 5*time.Second, func(ctx context.Context) error {
		if LockFromContext(ctx) == nil {
			return errors.New("no lock in fn's context")
		}
		if _, err := m.TryLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
			return errors.New("writer got in during DoRead")
		}
		return m.DoRead(ctx, time.Second, func(context.Context) error { return nil }, WithTryOnce())
	})
	if err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("fn failed")
	err = m.DoWrite(ctx, 5*time.Second, func(ctx context.Context) error {
		if _, err := m.TryRLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
			return errors.New("reader got in during DoWrite")
		}
		return sentinel
	}, WithAutoExtend())
	if !errors.Is(err, sentinel) {
		t.Fatalf("DoWrite: %v, want fn's error", err)
	}
	// Both released: a writer gets in at once.
	l, err := m.TryLock(ctx, time.Second)
	if err != nil {
		t.Fatalf("after DoRead and DoWrite: %v", err)
	}
	_ = l.Release(ctx)
	if err := m.DoRead(ctx, time.Second, nil); err == nil {
		t.Fatal("DoRead with a nil fn: no error")
	}
}

// TestRWMutexBadInput: bad resources and TTLs are input errors.
func TestRWMutexBadInput(t *testing.T) {
	f := fleet(t, 1, 1)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	var ie *InputError
	if _, err := c.RWMutex("").RLock(ctx, time.Second); !errors.As(err, &ie) {
		t.Fatalf("empty resource: %v", err)
	}
	if _, err := c.RWMutex("x").TryLock(ctx, 0); !errors.As(err, &ie) {
		t.Fatalf("ttl 0: %v", err)
	}
}

// TestScriptedReleaseReachesAPausedMaster: a master that misses the
// release of a reader's share or of a permit (paused, marked down) gets
// that release — its own script — when it is back, long before the TTL.
func TestScriptedReleaseReachesAPausedMaster(t *testing.T) {
	f, c := oneGroupClient(t, faultConfig, nil)
	ctx := context.Background()
	paused := f[0][2]
	pc := raw(t, paused)
	r, err := c.RWMutex("krw").RLock(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sem, _ := c.Semaphore("ksem", 1) // 3 masters, 1 permit: q = 2
	p, err := sem.Acquire(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "share and permit on the master to pause", func() bool {
		_, okR := zscore(t, pc, "krw:rw:readers", r.Token())
		_, okP := zscore(t, pc, "ksem:sem:holders", p.Token())
		return okR && okP
	})
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = paused.Resume() }()
	if other, err := c.TryLock(ctx, "k-other", time.Second); err == nil { // times out there: marked down
		defer func() { _ = other.Release(ctx) }()
	}
	eventually(t, 5*time.Second, "paused master marked down", func() bool { return !c.MasterStats()[2].Up })
	if err := r.Release(ctx); err != nil {
		t.Fatalf("release of a share with one of 3 masters down: %v", err)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatalf("release of a permit (q=2) with one of 3 masters down: %v", err)
	}
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "share and permit released on the master that was paused", func() bool {
		return pc.Exists(ctx, "krw:rw:readers", "ksem:sem:holders", "ksem:sem:permits").Val() == 0
	})
}

// TestScriptedLocksCancelledAtEveryStepLeaveNothing: readers, writers and
// permits whose context ends at every point of the attempt (before, during,
// after the fan-out), or whose Release races an Extend, leave no share,
// writer key, mark or permit behind: a writer and a full set of permits
// are obtained at once afterwards, although every TTL was a minute.
func TestScriptedLocksCancelledAtEveryStepLeaveNothing(t *testing.T) {
	f, c := oneGroupClient(t, clusterConfig, LinearBackoff(3, time.Millisecond))
	ms := raws(t, f[0])
	m := c.RWMutex("cancel")
	sem, _ := c.Semaphore("cancel", 2)
	var held []*Lock
	for i := range 60 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*40*time.Microsecond)
		var l *Lock
		var err error
		switch i % 4 {
		case 0:
			l, err = m.RLock(ctx, time.Minute)
		case 1:
			l, err = m.Lock(ctx, time.Minute)
		case 2:
			l, err = sem.Acquire(ctx, time.Minute)
		default:
			l, err = m.TryRLock(ctx, time.Minute)
		}
		cancel()
		if err == nil {
			held = append(held, l)
		}
	}
	ctx := context.Background()
	// Race Release against Extend on every lock that was obtained.
	var wg sync.WaitGroup
	for _, l := range held {
		wg.Go(func() { _ = l.Extend(ctx, time.Minute) })
		wg.Go(func() { _ = l.Release(ctx) })
	}
	wg.Wait()
	t.Logf("%d of 60 cancelled attempts obtained their lock first", len(held))
	for i, mc := range ms {
		eventually(t, 10*time.Second, "nothing left on master "+itoa(i), func() bool {
			return mc.Exists(ctx, "cancel:rw:writer", "cancel:rw:readers", "cancel:rw:waiting", "cancel:sem:holders", "cancel:sem:permits").Val() == 0
		})
	}
	w, err := m.TryLock(ctx, time.Second)
	if err != nil {
		t.Fatalf("writer after the cancelled attempts: %v", err)
	}
	_ = w.Release(ctx)
	for range 2 {
		p, err := sem.TryAcquire(ctx, time.Second)
		if err != nil {
			t.Fatalf("permit after the cancelled attempts: %v", err)
		}
		defer func() { _ = p.Release(ctx) }()
	}
}

// rwSemACL is what RWMutex and Semaphore need beyond minimalACL (ACL.md):
// the commands their scripts call.
var rwSemACL = []string{"+exists", "+time", "+zadd", "+zrem", "+zscore", "+zcard", "+zremrangebyscore", "+pttl"}

// TestSecurityACLRWMutexAndSemaphore: with the plain lock's minimal rule
// plus rwSemACL (and a key prefix), every RWMutex and Semaphore operation
// works with no ACL denial, with Fencing too (and LockAll's fenced script); without any one of those commands, an
// operation fails with an error saying so — never as busy.
func TestSecurityACLRWMutexAndSemaphore(t *testing.T) {
	const pass = "s3cret-RW-Pass"
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	cfg := Config{Servers: redisproc.Addrs(servers), Username: aclUser, Password: pass, KeyPrefix: "lock:", RetryStrategy: NoRetry(), NodeTimeout: time.Second}
	exercise := func(c *Client) error {
		ctx := context.Background()
		m := c.RWMutex("acl")
		r, err := m.TryRLock(ctx, 5*time.Second)
		if err != nil {
			return err
		}
		if c.s.Fencing && r.Fence() <= 0 {
			return fmt.Errorf("reader fence %d with Fencing", r.Fence())
		}
		if err := r.Extend(ctx, 5*time.Second); err != nil {
			return err
		}
		if err := r.Release(ctx); err != nil {
			return err
		}
		w, err := m.TryLock(ctx, 5*time.Second)
		if err != nil {
			return err
		}
		if w.Fence() <= r.Fence() && c.s.Fencing {
			return fmt.Errorf("writer fence %d, not above the reader's %d", w.Fence(), r.Fence())
		}
		if err := w.Extend(ctx, 5*time.Second); err != nil {
			return err
		}
		if err := w.Release(ctx); err != nil {
			return err
		}
		s, err := c.Semaphore("acl", 2)
		if err != nil {
			return err
		}
		p, err := s.TryAcquire(ctx, 5*time.Second)
		if err != nil {
			return err
		}
		if p.Fence() <= w.Fence() && c.s.Fencing {
			return fmt.Errorf("permit fence %d, not above the writer's %d", p.Fence(), w.Fence())
		}
		if err := p.Extend(ctx, 5*time.Second); err != nil {
			return err
		}
		return p.Release(ctx)
	}
	for _, s := range servers {
		setACLUser(t, s, pass, append(minimalACL("~lock:*"), rwSemACL...))
	}
	// With Fencing, the fenced scripts (and LockAll's) need nothing more.
	fenced := cfg
	fenced.Fencing = true
	for _, c := range []*Client{newClient(t, cfg), newClient(t, fenced)} {
		if err := exercise(c); err != nil {
			t.Fatalf("with the documented rule (Fencing %v): %v", c.s.Fencing, err)
		}
		if c.s.Fencing {
			m, err := c.LockAll(context.Background(), []string{"acl-a", "acl-b"}, 5*time.Second)
			if err != nil || m.Fence("acl-a") <= 0 {
				t.Fatalf("fenced LockAll with the documented rule: %v", err)
			}
			_ = m.Release(context.Background())
		}
	}
	for _, s := range servers {
		if n := aclDenials(t, s); n != 0 {
			t.Fatalf("%d ACL denials with the documented rule", n)
		}
	}
	for _, cmd := range rwSemACL {
		t.Run("without "+cmd, func(t *testing.T) {
			var rules []string
			for _, r := range append(minimalACL("~lock:*"), rwSemACL...) {
				if r != cmd {
					rules = append(rules, r)
				}
			}
			for _, s := range servers {
				setACLUser(t, s, pass, rules)
			}
			err := exercise(newClient(t, cfg))
			if err == nil {
				t.Fatalf("every operation worked without %s", cmd)
			}
			if !strings.Contains(err.Error(), "can't run this command") && !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("without %s: %v, want an ACL error", cmd, err)
			}
		})
	}
}

// TestRWMutexReadersNotStarvedByWriters: writers take turns without a pause
// (each waits in Lock while another holds); a reader waiting in RLock still
// gets in, because a writer kept out by a writer leaves no waiting mark.
func TestRWMutexReadersNotStarvedByWriters(t *testing.T) {
	_, cfg := oneGroup(t, 3, clusterConfig, LinearBackoff(100000, 5*time.Millisecond))
	writers, reader := newClient(t, cfg), newClient(t, cfg)
	log := newHoldLog(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			m := writers.RWMutex("turns")
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				l, err := m.Lock(ctx, 2*time.Second)
				cancel()
				if err != nil {
					continue
				}
				log.begin(l, 'w')
				time.Sleep(10 * time.Millisecond)
				log.end(l)
				_ = l.Release(context.Background())
			}
		})
	}
	eventually(t, 10*time.Second, "writers take turns", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.holds['w'] >= 10
	})
	// The writers go on for far longer than this (2000 turns each).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := reader.RWMutex("turns").RLock(ctx, time.Second)
	if err == nil {
		log.begin(r, 'r')
		log.end(r)
		_ = r.Release(context.Background())
	}
	close(stop)
	wg.Wait()
	log.check(t)
	if err != nil {
		t.Fatalf("reader starved by a stream of writers: %v", err)
	}
}

// TestScriptedAutoExtend: WithAutoExtend renews a reader's share, a
// writer's lock and a permit through the shared extender, with their own
// scripts: fn outlives several TTLs and its context never ends.
func TestScriptedAutoExtend(t *testing.T) {
	_, cfg := oneGroup(t, 3, clusterConfig, NoRetry())
	// Renewals every ttl/3 must land under -race and a CPU hog: a second
	// for each master to answer, two seconds of validity.
	cfg.NodeTimeout = time.Second
	c := newClient(t, cfg)
	ctx := context.Background()
	m := c.RWMutex("ae")
	s, err := c.Semaphore("ae", 2)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	fn := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(2 * ttl):
			return nil
		}
	}
	if err := m.DoRead(ctx, ttl, fn, WithAutoExtend()); err != nil {
		t.Fatalf("DoRead: %v", err)
	}
	if err := m.DoWrite(ctx, ttl, fn, WithAutoExtend()); err != nil {
		t.Fatalf("DoWrite: %v", err)
	}
	if err := s.Do(ctx, ttl, fn, WithAutoExtend()); err != nil {
		t.Fatalf("Semaphore.Do: %v", err)
	}
}
