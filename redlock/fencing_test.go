package redlock

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// slotOf is the fence counter field of resource.
func slotOf(resource string) string {
	return strconv.Itoa(fenceSlot(xxhash.Sum64String(resource)))
}

// counterOn reads resource's fence counter on one master (-1 when absent).
func counterOn(t *testing.T, s *redisproc.Server, prefix, resource string) int64 {
	t.Helper()
	v, err := s.Do(context.Background(), "HGET", prefix+FenceCounterKey, slotOf(resource))
	if err != nil {
		t.Fatalf("%s: HGET: %v", s.Addr(), err)
	}
	if v == "$-1" {
		return -1
	}
	v = strings.TrimPrefix(v, "$")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: fence counter %q: %v", s.Addr(), v, err)
	}
	return n
}

func dbsize(t *testing.T, s *redisproc.Server) int {
	t.Helper()
	v, err := s.Do(context.Background(), "DBSIZE")
	if err != nil {
		t.Fatalf("%s: DBSIZE: %v", s.Addr(), err)
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(v, ":"))
	return n
}

// TestFencingOff: without Fencing, Fence is 0, the acquire is the plain SET
// NX PX (no counter key appears) and nothing is left behind after Release.
func TestFencingOff(t *testing.T) {
	f := fleet(t, 1, 3)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	for i := range 3 {
		l, err := c.Lock(ctx, "fence-off", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence() != 0 {
			t.Fatalf("lock %d: Fence() = %d without Fencing; want 0", i, l.Fence())
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range f[0] {
		eventually(t, 2*time.Second, s.Addr()+": empty after release", func() bool { return dbsize(t, s) == 0 })
		if got := counterOn(t, s, "", "fence-off"); got != -1 {
			t.Errorf("%s: fence counter %d exists without Fencing", s.Addr(), got)
		}
	}
}

// TestFencingIncreases: with Fencing, fences of successive acquisitions of a
// resource — by Lock, TryLock and Do, from two clients, interleaved with
// other resources of the group — strictly increase; Extend keeps the fence;
// one counter key per master (under KeyPrefix) is all that stays after the
// releases.
func TestFencingIncreases(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := fencedConfig(f, 0)
	cfg.KeyPrefix = "app:"
	c1 := newClient(t, cfg)
	c2 := newClient(t, cfg)
	ctx := context.Background()
	lastOf := map[string]int64{}
	var last int64
	check := func(who, res string, fence int64) {
		t.Helper()
		if fence <= lastOf[res] {
			t.Fatalf("%s: fence %d of %q, not above its previous %d", who, fence, res, lastOf[res])
		}
		lastOf[res], last = fence, fence
	}
	for i := range 20 {
		c := c1
		if i%2 == 1 {
			c = c2
		}
		res := "fenced"
		if i%3 == 2 {
			res = "fenced-other-" + strconv.Itoa(i%2)
		}
		var l *Lock
		var err error
		if i%4 == 0 {
			l, err = c.TryLock(ctx, res, 5*time.Second)
		} else {
			l, err = c.Lock(ctx, res, 5*time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		check("lock "+strconv.Itoa(i), res, l.Fence())
		if i == 5 {
			if err := l.Extend(ctx, 6*time.Second); err != nil {
				t.Fatal(err)
			}
			if l.Fence() != last {
				t.Fatalf("Extend changed the fence from %d to %d", last, l.Fence())
			}
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err := c2.Do(ctx, "fenced", 5*time.Second, func(ctx context.Context) error {
		check("Do", "fenced", LockFromContext(ctx).Fence())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	atLeast := 0
	for _, s := range f[0] {
		// The last master may still be applying the last SET: wait until only
		// the counter remains.
		eventually(t, 2*time.Second, s.Addr()+": only the counter is left", func() bool { return dbsize(t, s) == 1 })
		if got := counterOn(t, s, "app:", "fenced"); got >= last {
			atLeast++
		}
	}
	// A majority holds a counter ≥ the last fence (a minority may lag).
	if atLeast < 2 {
		t.Errorf("%d masters hold a counter ≥ the last fence %d; want a majority", atLeast, last)
	}
	if _, err := c1.TryLock(ctx, FenceCounterKey, time.Second); err == nil || errors.Is(err, ErrNotObtained) {
		t.Errorf("TryLock(%q) = %v; want an input error (reserved)", FenceCounterKey, err)
	}
}

// TestFencingWriteBack: when the masters of the yes-majority disagree, the
// maximum is written back to a majority before Lock returns — so a later
// majority that no longer includes the master with the highest counter still
// hands out a higher fence.
func TestFencingWriteBack(t *testing.T) {
	f := fleet(t, 1, 3)
	m := f[0]
	cfg := fencedConfig(f, 300*time.Millisecond)
	c := newClient(t, cfg)
	ctx := context.Background()
	l, err := c.Lock(ctx, "wb", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := l.Fence()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Master 0 runs far ahead (as after missed acquisitions elsewhere).
	high := first + 1_000_000
	if _, err := m[0].Do(ctx, "HSET", FenceCounterKey, slotOf("wb"), strconv.FormatInt(high, 10)); err != nil {
		t.Fatal(err)
	}
	// Master 2 paused: the yes-majority is {0, 1}, whose counters disagree.
	if err := m[2].Pause(); err != nil {
		t.Fatal(err)
	}
	l, err = c.Lock(ctx, "wb", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() != high+1 {
		t.Fatalf("fence %d; want the maximum over the majority, %d", l.Fence(), high+1)
	}
	if got := counterOn(t, m[1], "", "wb"); got < high+1 {
		t.Fatalf("master 1's counter %d after Lock returned: the fence %d was not written back", got, high+1)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Master 0 lost, master 2 back: the majority {1, 2} must go above.
	if err := m[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[2].Resume(); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var l3 *Lock
	eventually(t, 10*time.Second, "lock on {1, 2}", func() bool {
		l3, err = c.TryLock(lctx, "wb", 5*time.Second)
		return err == nil
	})
	if l3.Fence() <= high+1 {
		t.Fatalf("fence %d after the master with the highest counter was lost; want > %d", l3.Fence(), high+1)
	}
	_ = l3.Release(ctx)
}

// TestFencingRestartWithoutData: the master that made the last fence lost
// its counter in a restart without persistence, and the other member of the
// next majority missed that acquisition: the restarted master's counter
// starts again from its clock, so the next fence is still higher.
func TestFencingRestartWithoutData(t *testing.T) {
	f := fleet(t, 1, 3)
	m := f[0]
	cfg := fencedConfig(f, 300*time.Millisecond)
	c := newClient(t, cfg)
	ctx := context.Background()
	// Counters in step (a new counter starts from each master's own clock).
	for _, s := range m {
		if _, err := s.Do(ctx, "HSET", FenceCounterKey, slotOf("rw"), "1000"); err != nil {
			t.Fatal(err)
		}
	}
	l, err := c.Lock(ctx, "rw", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Release(ctx)
	// Master 2 misses the next acquisition (a stale key of another holder
	// makes it say busy); {0, 1} give fence p.
	if _, err := m[2].Do(ctx, "SET", "rw", "stale", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	l, err = c.Lock(ctx, "rw", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Fence()
	_ = l.Release(ctx)
	if _, err := m[2].Do(ctx, "DEL", "rw"); err != nil {
		t.Fatal(err)
	}
	// Master 1 is lost for good; master 0 restarts empty; master 2 resumes
	// with a counter below p.
	if err := m[1].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if got := counterOn(t, m[2], "", "rw"); got >= p {
		t.Fatalf("setup: master 2's counter %d is not below p = %d", got, p)
	}
	var l2 *Lock
	eventually(t, 10*time.Second, "lock on {0, 2}", func() bool {
		l2, err = c.TryLock(ctx, "rw", 5*time.Second)
		return err == nil
	})
	if l2.Fence() <= p {
		t.Fatalf("fence %d after a restart without data; want > %d", l2.Fence(), p)
	}
	_ = l2.Release(ctx)
}

// TestFencingCounterWrongType: a fence counter of another type on one master
// fails that master's vote (an error naming it) before its lock key is
// written — for every lock kind (reader, writer, permit, LockAll); the
// others still give the lock, with a fence.
func TestFencingCounterWrongType(t *testing.T) {
	f := fleet(t, 1, 3)
	m := f[0]
	cfg := fencedConfig(f, 0)
	c := newClient(t, cfg)
	ctx := context.Background()
	if _, err := m[0].Do(ctx, "SET", FenceCounterKey, "not a hash"); err != nil {
		t.Fatal(err)
	}
	l, err := c.Lock(ctx, "wt", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() <= 0 {
		t.Fatalf("fence %d", l.Fence())
	}
	time.Sleep(100 * time.Millisecond) // let master 0's answer arrive (it is not awaited)
	if v := keyOn(t, m[0], "wt"); v != "" {
		t.Errorf("master 0 holds the lock key %q though its script failed", v)
	}
	_ = l.Release(ctx)
	// Every other lock kind's fenced script fails there as early: no
	// share, no permit, no key on master 0.
	for _, k := range fenceKinds(5 * time.Second) {
		if k.name == "Semaphore(2).TryAcquire" {
			continue // needs all three masters
		}
		fence, release, err := k.take(ctx, c, "wt")
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		if fence <= 0 {
			t.Fatalf("%s: fence %d", k.name, fence)
		}
		barrier(t, c, "wt")
		if n := dbsize(t, m[0]); n != 1 {
			t.Fatalf("%s: master 0 holds %d keys besides its broken counter though its script failed", k.name, n-1)
		}
		if err := release(); err != nil {
			t.Fatalf("%s: release: %v", k.name, err)
		}
	}
	// With two broken counters, no quorum: the error names the master and WRONGTYPE.
	if _, err := m[1].Do(ctx, "DEL", FenceCounterKey); err != nil {
		t.Fatal(err)
	}
	if _, err := m[1].Do(ctx, "SET", FenceCounterKey, "not a hash"); err != nil {
		t.Fatal(err)
	}
	_, err = c.TryLock(ctx, "wt", 5*time.Second)
	if !errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), "WRONGTYPE") || !strings.Contains(err.Error(), m[0].Addr()) {
		t.Fatalf("TryLock with two broken counters = %v; want ErrNotObtained naming %s and WRONGTYPE", err, m[0].Addr())
	}
}

// TestTopUpAfterEarlyQuorum: Lock returns once a majority said yes, and the
// master it did not wait for still receives the SET: once it answers, it
// holds the key too (with Fencing, its counter advances as well).
func TestTopUpAfterEarlyQuorum(t *testing.T) {
	for _, fencing := range []bool{false, true} {
		t.Run("fencing="+strconv.FormatBool(fencing), func(t *testing.T) {
			f := fleet(t, 1, 3)
			m := f[0]
			cfg := clusterConfig(f)
			cfg.Fencing = fencing
			cfg.NodeTimeout = 10 * time.Second // the paused master is not given up on
			c := newClient(t, cfg)
			ctx := context.Background()
			if err := m[2].Pause(); err != nil {
				t.Fatal(err)
			}
			// The paused master cannot answer: Lock can only return at the
			// early quorum of the other two.
			l, err := c.Lock(ctx, "topup", 20*time.Second)
			if resErr := m[2].Resume(); resErr != nil {
				t.Fatal(resErr)
			}
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the slow master holds the key", func() bool {
				return keyOn(t, m[2], "topup") == l.Token()
			})
			if fencing {
				if got := counterOn(t, m[2], "", "topup"); got < 1 {
					t.Errorf("the slow master's fence counter %d did not advance", got)
				}
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFencingUnderMinorityFaults: two clients, four acquirers each, compete
// for one resource while one master at a time is killed, paused (SIGSTOP,
// CLIENT PAUSE) or restarted without its data. For every two completed
// acquisitions a, b with a done before b started, a's fence is below b's.
func TestFencingUnderMinorityFaults(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := fencedConfig(f, 200*time.Millisecond)
	cfg.RetryStrategy = LinearBackoff(1000, 20*time.Millisecond)
	clients := []*Client{newClient(t, cfg), newClient(t, cfg)}

	ctx := context.Background()
	finish := raceFences(t, clients, 4, func(c *Client, _ string, _ int) (int64, func(), error) {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, err := c.Lock(lctx, "adv", 2*time.Second)
		if err != nil {
			return 0, nil, err
		}
		return l.Fence(), func() { _ = l.Release(ctx) }, nil
	})
	runMinorityFaults(t, f[0], 12, 300*time.Millisecond)
	done := finish()

	if len(done) < 20 {
		t.Fatalf("only %d acquisitions completed under minority faults", len(done))
	}
	violations := checkFenceOrder(t, done)
	t.Logf("%d acquisitions under 12 minority faults, %d fence order violations", len(done), violations)
}

// TestFencingCancelledContexts: with the masters' counters disagreeing
// before every attempt (so every acquisition pays the write-back), callers
// whose context ends at every point of the attempt either get a lock —
// plain, reader, writer, permit, LockAll — whose fence is above every fence
// obtained before, or ErrNotObtained; and no attempt leaves anything behind
// but the fence counters.
func TestFencingCancelledContexts(t *testing.T) {
	f := fleet(t, 1, 3)
	m := f[0]
	cfg := fencedConfig(f, 0)
	c := newClient(t, cfg)
	ctx := context.Background()
	const res = "cancel-fence"
	var last int64
	got, refused := 0, 0
	kinds := fenceKinds(5 * time.Second)
	for i := range 40 * len(kinds) {
		k := kinds[i%len(kinds)]
		// Master 0 one ahead: the yes-majority disagrees whenever it is in it.
		if _, err := m[0].Do(ctx, "HINCRBY", FenceCounterKey, slotOf(res), "1"); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i%20)*50*time.Microsecond)
		fence, release, err := k.take(cctx, c, res)
		cancel()
		if err != nil {
			if !errors.Is(err, ErrNotObtained) {
				t.Fatalf("attempt %d (%s): %v; want ErrNotObtained", i, k.name, err)
			}
			refused++
			continue
		}
		got++
		if fence <= last {
			t.Fatalf("attempt %d (%s): fence %d, not above %d", i, k.name, fence, last)
		}
		last = fence
		if err := release(); err != nil {
			t.Fatalf("attempt %d (%s): release: %v", i, k.name, err)
		}
	}
	t.Logf("%d locks obtained, %d attempts ended by their context", got, refused)
	// Cancelled attempts' cleanups run in the background: eventually no
	// master holds anything but the counters, and a fresh lock works with a
	// higher fence.
	for _, s := range m {
		eventually(t, 5*time.Second, s.Addr()+": only the counters left", func() bool { return dbsize(t, s) == 1 })
	}
	l, err := c.Lock(ctx, res, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() <= last {
		t.Fatalf("final fence %d, not above %d", l.Fence(), last)
	}
	_ = l.Release(ctx)
	if got == 0 || refused == 0 {
		t.Logf("note: the deadlines did not cover both outcomes (%d obtained, %d ended)", got, refused)
	}
}
