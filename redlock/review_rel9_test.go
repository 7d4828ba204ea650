package redlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// Independent review of rel9 (issue 9 follow-ups: fanoutShared, releases
// needed on every master).

// keptLen is the number of releases nd keeps.
func keptLen(nd *node) int {
	nd.keptMu.Lock()
	defer nd.keptMu.Unlock()
	return len(nd.kept)
}

// quickDownConfig is faultConfig with health checks every 100 ms: a killed
// master is marked down at once, not after the 15 s default period.
func quickDownConfig(f [][]*redisproc.Server) Config {
	cfg := faultConfig(f)
	cfg.HealthCheckPeriod = 100 * time.Millisecond
	return cfg
}

// TestReviewWriterAttemptsKeepNothingForADownMaster: a blocking writer
// Lock whose attempts all fail (readers hold the lock) against a group with
// one master down keeps, for that master, at most the one release that may
// be needed — the lift of its waiting mark — not one cleanup per attempt.
// An attempt's cleanup gives back its token only (the mark stays while the
// writer retries); it is needed where the attempt's script may have landed,
// never on a master that did not get it. Before the fix every attempt's
// cleanup was kept as "needed on every master" (the held writer's mask),
// so a writer waiting behind readers while a master was down filled the
// kept list (4096) by itself, and the releases other locks really needed
// were then dropped.
func TestReviewWriterAttemptsKeepNothingForADownMaster(t *testing.T) {
	var retries atomic.Int64
	f, c := oneGroupClient(t, quickDownConfig, RetryFunc(func(r int) (time.Duration, bool) {
		retries.Store(int64(r))
		return 20 * time.Millisecond, r < 12
	}))
	ctx := context.Background()
	if err := f[0][2].Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "master marked down", func() bool { return !c.MasterStats()[2].Up })
	t0 := time.Now()
	m := c.RWMutex("rev-wdown")
	r, err := m.RLock(ctx, 30*time.Second)
	if err != nil {
		t.Fatalf("RLock with 2 of 3 masters: %v", err)
	}
	nd := c.groups[0].nodes[2]
	before := keptLen(nd)
	if _, err := m.Lock(ctx, 30*time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("writer Lock behind a reader: %v, want ErrNotObtained", err)
	}
	t.Logf("Lock took %v", time.Since(t0))
	if retries.Load() < 5 {
		t.Fatalf("only %d retries: the writer must have made many attempts", retries.Load())
	}
	// The mark lift is sent detached: wait until it reached the live
	// masters, and then count.
	live := raws(t, f[0][:2])
	eventually(t, 20*time.Second, "waiting mark lifted on the live masters", func() bool {
		return onMasters(live, func(rc *redis.Client) bool {
			return rc.Exists(ctx, m.s.keys[2]).Val() == 0
		}) == 2
	})
	if n := keptLen(nd) - before; n > 1 {
		t.Fatalf("%d releases kept for the down master after %d failed writer attempts; want at most 1 (the mark lift)",
			n, retries.Load()+1)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReviewReleaseTokenKeptIsTokenChecked: ReleaseToken of wrong tokens
// while a master is paused is kept for it (needed on every master), is
// bounded by the calls made, drains when the master answers again, and —
// being compare-and-delete — leaves the holder's key there.
func TestReviewReleaseTokenKeptIsTokenChecked(t *testing.T) {
	f, c := oneGroupClient(t, quickDownConfig, nil)
	ctx := context.Background()
	l, err := c.TryLock(ctx, "rev-rt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	barrier(t, c, "rev-rt")
	heldEverywhere(t, f[0], l)
	s := f[0][2]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Resume() }()
	nd := c.groups[0].nodes[2]
	const n = 40
	for i := range n {
		err := c.ReleaseToken(ctx, "rev-rt", fmt.Sprintf("wrong-%d", i))
		if !errors.Is(err, ErrNotHeld) {
			t.Fatalf("ReleaseToken(wrong token) #%d: %v, want ErrNotHeld", i, err)
		}
	}
	eventually(t, 20*time.Second, "master marked down", func() bool { return !c.MasterStats()[2].Up })
	// Kept (needed on every master), one per call at most.
	if k := keptLen(nd); k < 1 || k > n {
		t.Fatalf("%d releases kept after %d ReleaseToken calls, want 1..%d", k, n, n)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "kept releases drained", func() bool {
		return c.MasterStats()[2].Up && keptLen(nd) == 0
	})
	barrier(t, c, "rev-rt")
	heldEverywhere(t, f[0], l) // the wrong tokens deleted nothing
	if err := c.ReleaseToken(ctx, "rev-rt", l.Token()); err != nil {
		t.Fatalf("ReleaseToken(right token): %v", err)
	}
}

// TestReviewSharedMastersNoOverlapUnderFaults: a ring change {A,B,C} →
// {A,B,D} (every resource moves; A and B are shared, one node each, their
// one answer counting in both groups). Clients of the two kinds that run
// at the same time race TryLock on a few resources while one master at a
// time (shared or not) is killed and restarted with its data, SIGSTOPped
// or CLIENT PAUSEd: no two holders within validity, and no reply of one
// fan-out read by another (strayReplies).
func TestReviewSharedMastersNoOverlapUnderFaults(t *testing.T) {
	s := fleetWith(t, 1, 4, aofAlways)[0]
	oldC := [][]string{redisproc.Addrs(s[:3])}
	newC := [][]string{{s[0].Addr(), s[1].Addr(), s[3].Addr()}}
	cfg := func(cluster, prev [][]string) Config {
		return Config{Cluster: cluster, Previous: prev, NodeTimeout: 300 * time.Millisecond,
			DialTimeout: 300 * time.Millisecond, ReconnectInterval: 50 * time.Millisecond, RetryStrategy: NoRetry()}
	}
	old, mig, nu := newClient(t, cfg(oldC, nil)), newClient(t, cfg(newC, oldC)), newClient(t, cfg(newC, nil))
	if len(mig.nodes) != 4 {
		t.Fatalf("migrating client has %d nodes, want 4 (A and B shared)", len(mig.nodes))
	}
	strays := strayReplies.Load()
	const resources = 4
	for _, step := range []struct {
		name string
		a, b *Client
	}{
		{"old ring vs migrating", old, mig},
		{"migrating vs new ring", mig, nu},
	} {
		t.Run(step.name, func(t *testing.T) {
			var slots [resources]atomic.Pointer[Lock]
			var overlaps, holds [2]atomic.Int64
			var wg sync.WaitGroup
			done := make(chan struct{})
			for w := range 6 {
				c, side := step.a, 0
				if w%2 == 1 {
					c, side = step.b, 1
				}
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 9))
					ctx := context.Background()
					for i := 0; i < 5000; i++ {
						select {
						case <-done:
							return
						default:
						}
						ri := rng.IntN(resources)
						l, err := c.TryLock(ctx, fmt.Sprint("rev-shared-", ri), 5*time.Second)
						if err != nil {
							continue // not obtained, or a master failed under it
						}
						if slots[ri].CompareAndSwap(nil, l) {
							holds[side].Add(1)
							time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
							slots[ri].CompareAndSwap(l, nil)
						} else if other := slots[ri].Load(); other != nil && other.Valid() && l.Valid() {
							overlaps[side].Add(1)
						}
						_ = l.Release(ctx)
					}
				})
			}
			// Faults on A (shared), C (old only) and D (new only), one at
			// a time: a minority of each group.
			runMinorityFaults(t, []*redisproc.Server{s[0], s[2], s[3]}, 6, 300*time.Millisecond)
			close(done)
			wg.Wait()
			t.Logf("holds %d / %d, overlaps %d / %d", holds[0].Load(), holds[1].Load(), overlaps[0].Load(), overlaps[1].Load())
			if o := overlaps[0].Load() + overlaps[1].Load(); o != 0 {
				t.Fatalf("%d overlapping holds", o)
			}
			if holds[0].Load() == 0 || holds[1].Load() == 0 {
				t.Fatalf("one side never held a lock: %d / %d", holds[0].Load(), holds[1].Load())
			}
		})
	}
	if d := strayReplies.Load() - strays; d != 0 {
		t.Fatalf("%d stray replies", d)
	}
}
