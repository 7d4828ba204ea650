package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// The rule of issue 9 (items 1–3) for every kind of lock and every place
// that sets Until: a reader's share, a writer's lock, a semaphore permit, a
// MultiLock over several groups, fenced locks, a moved resource held on two
// groups in migration mode. Until is never later than the time the holder's
// entry (a key's PTTL, or a share's or permit's expiry score) is gone from
// enough masters for another holder; a second client never obtains while
// the first reports Valid; Do, DoRead, DoWrite, Semaphore.Do and DoAll end
// fn's context at Until, following every change of it; and Done does too.

// kindsFleet is 3 groups of 3 masters; the old ring has the first two
// groups, the new ring all three (as newMigrationFleet), so that a moved
// resource is held on two groups by a migrating client.
type kindsFleet struct {
	f          [][]*redisproc.Server
	all        []*redisproc.Server
	byAddr     map[string]*redisproc.Server
	raws       map[*redisproc.Server]*redis.Client
	oldC, newC [][]string
}

func newKindsFleet(t *testing.T) *kindsFleet {
	t.Helper()
	k := &kindsFleet{f: fleet(t, 3, 3), byAddr: map[string]*redisproc.Server{}, raws: map[*redisproc.Server]*redis.Client{}}
	for i, g := range k.f {
		if i < 2 {
			k.oldC = append(k.oldC, redisproc.Addrs(g))
		}
		k.newC = append(k.newC, redisproc.Addrs(g))
		for _, s := range g {
			k.all = append(k.all, s)
			k.byAddr[s.Addr()] = s
			k.raws[s] = raw(t, s)
		}
	}
	return k
}

// holder is a migrating client (Previous: the old ring), fenced or not,
// with NodeTimeout nt.
func (k *kindsFleet) holder(t *testing.T, fenced bool, nt time.Duration) *Client {
	return newClient(t, Config{Cluster: k.newC, Previous: k.oldC, Fencing: fenced, NodeTimeout: nt,
		DialTimeout: nt, ReconnectInterval: 50 * time.Millisecond})
}

// entry is where one holder is recorded on one group: a key (its PTTL, while
// it holds token) or a sorted set member (its expiry score); need masters
// must keep it for the holder to hold.
type entry struct {
	g           *group
	h           uint64
	key, member string // member "": key holds token with a PTTL
	token       string
	need        int
}

// life is how long e still lives on s (0 when gone).
func (k *kindsFleet) life(t *testing.T, s *redisproc.Server, e entry) time.Duration {
	t.Helper()
	if e.member == "" {
		if keyOn(t, s, e.key) != e.token {
			return 0
		}
		return max(pttlOn(t, s, e.key), 0)
	}
	c := k.raws[s]
	score, ok := zscore(t, c, e.key, e.member)
	if !ok {
		return 0
	}
	return max(time.Duration(score-serverMs(t, c))*time.Millisecond, 0)
}

// lives reads e's remaining life on each master of its group, sorted.
func (k *kindsFleet) lives(t *testing.T, e entry) []time.Duration {
	t.Helper()
	out := make([]time.Duration, len(e.g.addrs))
	for i, a := range e.g.addrs {
		out[i] = k.life(t, k.byAddr[a], e)
	}
	slices.Sort(out)
	return out
}

// held is one lock of some kind, seen the same way whatever its kind.
type held struct {
	name    string
	entries []entry
	until   func() time.Time
	extend  func(ctx context.Context, ttl time.Duration) error
	release func(ctx context.Context) error
	done    func() <-chan struct{}
	// extending reports whether an Extend of the lock is in flight (it
	// holds the lock's one-at-a-time turn).
	extending func() bool
	// rival tries once, from another client, to take what this lock
	// excludes; ok reports it did (it is then released).
	rival func(ctx context.Context) (ok bool, err error)
}

func (h *held) valid() bool {
	u := h.until()
	return !u.IsZero() && time.Now().Before(u)
}

// barrier waits until whatever the holder queued for its keys reached the
// masters of every group it is held on.
func (h *held) barrier(t *testing.T) {
	t.Helper()
	for _, e := range h.entries {
		barrierGroup(t, e.g, e.h, e.key)
	}
}

// goneBy is the earliest time, from what the masters hold now, at which
// some entry is gone from enough masters that another holder can take it.
func (h *held) goneBy(t *testing.T, k *kindsFleet) time.Time {
	t.Helper()
	var first time.Time
	for _, e := range h.entries {
		ls := k.lives(t, e)
		at := time.Now().Add(ls[len(ls)-e.need])
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

// leftAnywhere is the longest any entry still lives on any master.
func (h *held) leftAnywhere(t *testing.T, k *kindsFleet) time.Duration {
	t.Helper()
	var most time.Duration
	for _, e := range h.entries {
		most = max(most, slices.Max(k.lives(t, e)))
	}
	return most
}

// checkUntilSafe fails when Until is later than goneBy.
func (h *held) checkUntilSafe(t *testing.T, k *kindsFleet, what string) {
	t.Helper()
	h.barrier(t)
	u := h.until()
	if gone := h.goneBy(t, k); !u.IsZero() && u.After(gone) {
		t.Errorf("%s, %s: Until is %v away, but enough masters drop the holder in %v: two holders possible",
			h.name, what, time.Until(u).Round(time.Millisecond), time.Until(gone).Round(time.Millisecond))
	}
}

// lockEntries are where l is recorded: its key (writer, plain) or its
// share or permit in the holders' set, on its group and, for a moved
// resource, on its previous group.
func lockEntries(l *Lock) []entry {
	need := l.need
	if need == 0 {
		need = l.g.quorum
	}
	e := entry{g: l.g, h: l.hash, key: l.key, token: l.token, need: need}
	switch l.kind {
	case kindRead:
		e.key, e.member = l.keys[1], l.token
	case kindPermit:
		e.member = l.token
	}
	out := []entry{e}
	if l.prev != nil {
		pe := e
		pe.g, pe.need = l.prev, l.prev.quorum
		out = append(out, pe)
	}
	return out
}

func heldLock(name string, l *Lock, rival func(ctx context.Context) (bool, error)) *held {
	extending := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.extending
	}
	return &held{name: name, entries: lockEntries(l), until: l.Until, extend: l.Extend, release: l.Release, done: l.Done,
		extending: extending, rival: rival}
}

func heldMulti(name string, m *MultiLock, rival func(ctx context.Context) (bool, error)) *held {
	var es []entry
	for _, p := range m.parts {
		for _, key := range p.keys {
			es = append(es, entry{g: p.g, h: p.hash, key: key, token: m.token, need: p.g.quorum})
		}
	}
	extending := func() bool { return len(m.extending) == 1 }
	return &held{name: name, entries: es, until: m.Until, extend: m.Extend, release: m.Release, done: m.Done,
		extending: extending, rival: rival}
}

// took turns an acquisition into a rival's outcome (released at once).
func took(release func(context.Context) error, err error) (bool, error) {
	if err == nil {
		_ = release(context.Background())
		return true, nil
	}
	if errors.Is(err, ErrNotObtained) {
		return false, nil
	}
	return false, err
}

// spread is n resources under prefix on n different groups, none of which
// moves between the rings (a stayed resource).
func spread(c *Client, prefix string, n int) []string {
	var rs []string
	seen := map[int]bool{}
	for i := 0; len(rs) < n; i++ {
		r := fmt.Sprintf("%s/%d", prefix, i)
		if g, pg, _ := c.routeBoth(r); pg == nil && !seen[g.index] {
			seen[g.index] = true
			rs = append(rs, r)
		}
	}
	return rs
}

// resourceFor is a resource under prefix that moves between the rings
// (moved) or not.
func resourceFor(c *Client, prefix string, moved bool) string {
	for i := 0; ; i++ {
		r := fmt.Sprintf("%s:%d", prefix, i)
		if _, pg, _ := c.routeBoth(r); (pg != nil) == moved {
			return r
		}
	}
}

// holdEvery takes one lock of every kind for ttl, from plain (a migrating
// client) and fenced (the same, with Fencing), with rivals on clients of
// their own: a plain lock (stayed and moved), fenced ones, a reader's share
// (a writer is its rival), a writer's lock, permits of a 1- and a 2-permit
// semaphore (q 2 and 3 of 3), and MultiLocks over two groups.
func (k *kindsFleet) holdEvery(t *testing.T, plain, fenced *Client, prefix string, ttl time.Duration) []*held {
	t.Helper()
	ctx := context.Background()
	nt := time.Second
	oldRing := newClient(t, Config{Cluster: k.oldC, NodeTimeout: nt})
	mig := newClient(t, Config{Cluster: k.newC, Previous: k.oldC, NodeTimeout: nt})
	st := make([]string, 8)
	for i := range st {
		st[i] = resourceFor(plain, fmt.Sprint(prefix, "-", i), false)
	}
	moved, fencedMoved := resourceFor(plain, prefix+"-m", true), resourceFor(plain, prefix+"-fm", true)
	must := func(l *Lock, err error) *Lock {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		return l
	}
	lockRival := func(r string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			for _, c := range []*Client{oldRing, mig} { // the previous group alone, then both
				l, err := c.TryLock(ctx, r, 30*time.Second)
				if ok, err := took(func(ctx context.Context) error { return l.Release(ctx) }, err); ok || err != nil {
					return ok, err
				}
			}
			return false, nil
		}
	}
	writerRival := func(r string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			l, err := mig.RWMutex(r).TryLock(ctx, 30*time.Second)
			return took(func(ctx context.Context) error { return l.Release(ctx) }, err)
		}
	}
	permitRival := func(r string, permits int) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			sem, err := mig.Semaphore(r, permits)
			if err != nil {
				return false, err
			}
			var ls []*Lock
			defer func() {
				for _, l := range ls {
					_ = l.Release(context.Background())
				}
			}()
			for range permits { // every permit: one more would exceed them
				l, err := sem.TryAcquire(ctx, 30*time.Second)
				if err != nil {
					return took(nil, err)
				}
				ls = append(ls, l)
			}
			return true, nil
		}
	}
	multiRival := func(rs []string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			m, err := mig.lockAll(ctx, rs, 30*time.Second, true)
			return took(func(ctx context.Context) error { return m.Release(ctx) }, err)
		}
	}
	sem := func(c *Client, r string, permits int) *Lock {
		s, err := c.Semaphore(r, permits)
		if err != nil {
			t.Fatal(err)
		}
		return must(s.Acquire(ctx, ttl))
	}
	multi := func(c *Client, rs []string) *MultiLock {
		m, err := c.LockAll(ctx, rs, ttl)
		if err != nil {
			t.Fatalf("%s: LockAll: %v", prefix, err)
		}
		if len(m.parts) < 2 {
			t.Fatalf("%s: LockAll over %d groups; want 2 or more", prefix, len(m.parts))
		}
		return m
	}
	hs := []*held{
		heldLock("plain", must(plain.Lock(ctx, st[0], ttl)), lockRival(st[0])),
		heldLock("plain moved (two groups)", must(plain.Lock(ctx, moved, ttl)), lockRival(moved)),
		heldLock("fenced", must(fenced.Lock(ctx, st[1], ttl)), lockRival(st[1])),
		heldLock("reader", must(plain.RWMutex(st[2]).RLock(ctx, ttl)), writerRival(st[2])),
		heldLock("fenced reader", must(fenced.RWMutex(st[3]).RLock(ctx, ttl)), writerRival(st[3])),
		heldLock("writer", must(plain.RWMutex(st[4]).Lock(ctx, ttl)), writerRival(st[4])),
		heldLock("fenced writer", must(fenced.RWMutex(st[5]).Lock(ctx, ttl)), writerRival(st[5])),
		heldLock("permit of 1", sem(plain, st[6], 1), permitRival(st[6], 1)),
		heldLock("fenced permit of 2 (q 3)", sem(fenced, st[7], 2), permitRival(st[7], 2)),
		heldLock("fenced moved (two groups)", must(fenced.Lock(ctx, fencedMoved, ttl)), lockRival(fencedMoved)),
	}
	m1, m2 := spread(plain, prefix+"-multi", 2), spread(plain, prefix+"-fmulti", 2)
	hs = append(hs,
		heldMulti("multi", multi(plain, m1), multiRival(m1)),
		heldMulti("fenced multi", multi(fenced, m2), multiRival(m2)))
	for _, h := range hs {
		h.barrier(t) // the acquisitions reached every master
	}
	return hs
}

// checkNoRivalWhileValid waits (bounded) until each holder's rival obtains
// what it holds, and fails if the holder still reports Valid then.
func checkNoRivalWhileValid(t *testing.T, hs []*held, within time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() {
			deadline := time.Now().Add(within)
			for {
				ok, err := h.rival(context.Background())
				if err != nil {
					t.Errorf("%s: rival: %v", h.name, err)
					return
				}
				if ok {
					if h.valid() {
						t.Errorf("%s: two holders: a rival obtained it while the holder reports Valid (Until in %v)", h.name, time.Until(h.until()))
					}
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: the rival did not obtain it within %v", h.name, within)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// eachHeld runs fn for every holder at once and waits for them all.
func eachHeld(hs []*held, fn func(h *held)) {
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() { fn(h) })
	}
	wg.Wait()
}

// TestUntilKindsExtendUnknownOutcome (item 1, every kind): Extend to a
// shorter TTL whose outcome is unknown — every master holds the commands
// past the caller's ctx (CLIENT PAUSE), or is stopped past NodeTimeout
// (SIGSTOP; a second Extend with a short ctx waits for the first meanwhile
// and must give up with its ctx, sending nothing) — caps Until at the
// Extend's start + ttl − drift; one whose ctx is already done sends nothing.
func TestUntilKindsExtendUnknownOutcome(t *testing.T) {
	k := newKindsFleet(t)
	const long, short = 30 * time.Second, time.Second

	t.Run("ctx ends while every master holds the commands", func(t *testing.T) {
		plain, fenced := k.holder(t, false, 10*time.Second), k.holder(t, true, 10*time.Second)
		hs := k.holdEvery(t, plain, fenced, "pause", long)
		for _, s := range k.all {
			pauseCommands(t, s, 2*time.Second)
		}
		eachHeld(hs, func(h *held) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := h.extend(ctx, short)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: Extend while every master is paused = %v; want its ctx error", h.name, err)
			}
			if u, bound := h.until(), validUntil(time.Now(), short, DefaultDriftFactor); u.After(bound) {
				t.Errorf("%s: Until %v away after a failed Extend(%v) that may land (started %v ago)", h.name, time.Until(u), short, time.Since(start))
			}
		})
		for _, h := range hs {
			h.checkUntilSafe(t, k, "after the held PEXPIREs ran")
		}
		checkNoRivalWhileValid(t, hs, 20*time.Second)
	})

	t.Run("SIGSTOP past NodeTimeout, a second Extend waits with a short ctx", func(t *testing.T) {
		// A master whose writer queue held the first Extend past
		// NodeTimeout was not sent it, and keeps the acquisition's TTL:
		// short enough here for the rivals to get in.
		const long = 6 * time.Second
		plain, fenced := k.holder(t, false, 800*time.Millisecond), k.holder(t, true, 800*time.Millisecond)
		hs := k.holdEvery(t, plain, fenced, "stop", long)
		for _, s := range k.all {
			if err := s.Pause(); err != nil {
				t.Fatal(err)
			}
		}
		resumed := false
		resume := func() {
			if resumed {
				return
			}
			resumed = true
			for _, s := range k.all {
				if err := s.Resume(); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
		eachHeld(hs, func(h *held) {
			firstDone := make(chan time.Time, 1)
			var firstErr error
			firstStart := time.Now()
			go func() {
				firstErr = h.extend(context.Background(), short)
				firstDone <- time.Now()
			}()
			// The second starts once the first holds the turn (a sleep
			// is not enough on a loaded machine: the second would go
			// first, and be sent).
			eventually(t, 10*time.Second, h.name+": the first Extend in flight", func() bool {
				return h.extending() || len(firstDone) == 1
			})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			secondErr := h.extend(ctx, 2*long)
			secondAt := time.Now()
			cancel()
			firstAt := <-firstDone
			if firstErr == nil {
				t.Errorf("%s: Extend succeeded with every master stopped", h.name)
			}
			if secondErr == nil {
				t.Errorf("%s: the second Extend succeeded with every master stopped", h.name)
			}
			// (A first Extend refused at once — its validity ran out on a
			// loaded machine — leaves nothing to wait for.)
			if firstAt.Sub(firstStart) > 300*time.Millisecond && !secondAt.Before(firstAt) {
				t.Errorf("%s: the second Extend (ctx 50 ms) returned %v after the first (NodeTimeout 800 ms): it ignored its ctx while waiting: %v",
					h.name, secondAt.Sub(firstAt), secondErr)
			}
			// Whether the first's PEXPIRE reached the stopped masters' sockets
			// (or expired in a writer queue, unsent, on a loaded machine) is
			// unknown here: checkUntilSafe below compares Until with what the
			// masters apply once they resume.
		})
		resume()
		for _, h := range hs {
			h.checkUntilSafe(t, k, "after the stopped masters resumed")
			// A master the first Extend did not reach keeps the acquisition's
			// TTL (long); the second's would be longer.
			if left := h.leftAnywhere(t, k); left > long {
				t.Errorf("%s: a master keeps the holder %v: the second Extend(%v) was sent after its ctx ended", h.name, left, 2*long)
			}
		}
		checkNoRivalWhileValid(t, hs, 20*time.Second)
	})

	t.Run("ctx already done: nothing is sent", func(t *testing.T) {
		plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
		hs := k.holdEvery(t, plain, fenced, "done", long)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		eachHeld(hs, func(h *held) {
			before := h.until()
			if err := h.extend(ctx, short); !errors.Is(err, context.Canceled) {
				t.Errorf("%s: Extend with a cancelled ctx = %v; want context.Canceled", h.name, err)
			}
			if !h.until().Equal(before) {
				t.Errorf("%s: Until moved for an Extend that sent nothing", h.name)
			}
			h.barrier(t)
			for _, e := range h.entries {
				if ls := k.lives(t, e); ls[0] <= short {
					t.Errorf("%s: a master's entry lives %v: the Extend with a cancelled ctx was sent", h.name, ls[0])
				}
			}
			_ = h.release(context.Background())
		})
	})
}

// TestUntilKindsConcurrentExtends (item 3, every kind): Extend(30s) and
// Extend(2s) at once, as an extender and a hand Extend would: whichever the
// masters applied last, Until is never later than it lets the holder live.
func TestUntilKindsConcurrentExtends(t *testing.T) {
	k := newKindsFleet(t)
	plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
	hs := k.holdEvery(t, plain, fenced, "cx", 30*time.Second)
	eachHeld(hs, func(h *held) {
		for i := range 6 {
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for j, ttl := range []time.Duration{30 * time.Second, 2500 * time.Millisecond} {
				wg.Go(func() { errs[j] = h.extend(context.Background(), ttl) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Errorf("%s round %d: %v", h.name, i, err)
				return
			}
			h.checkUntilSafe(t, k, fmt.Sprint("round ", i))
		}
		_ = h.release(context.Background())
	})
}

// TestUntilKindsReleaseRacesExtend: Release and Extend of one lock at once,
// every kind: the lock ends released (Until zero) and no master keeps the
// holder.
func TestUntilKindsReleaseRacesExtend(t *testing.T) {
	k := newKindsFleet(t)
	plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
	for round := range 2 {
		hs := k.holdEvery(t, plain, fenced, fmt.Sprint("rx", round), 30*time.Second)
		eachHeld(hs, func(h *held) {
			var wg sync.WaitGroup
			var relErr, extErr error
			wg.Go(func() { relErr = h.release(context.Background()) })
			wg.Go(func() { extErr = h.extend(context.Background(), 30*time.Second) })
			wg.Wait()
			if relErr != nil {
				t.Errorf("%s round %d: Release = %v", h.name, round, relErr)
			}
			if extErr != nil && !errors.Is(extErr, ErrNotHeld) {
				t.Errorf("%s round %d: Extend = %v", h.name, round, extErr)
			}
			if !h.until().IsZero() {
				t.Errorf("%s round %d: Until %v after Release", h.name, round, h.until())
			}
			h.barrier(t)
			if left := h.leftAnywhere(t, k); left > 0 {
				t.Errorf("%s round %d: a master keeps the holder %v after Release raced Extend (%v)", h.name, round, left, extErr)
			}
		})
	}
}

// TestUntilKindsDoneAtUntil: a lock held by hand, of every kind, closes
// Done when its validity runs out — not before Until — without any Extend
// or watcher of Do.
func TestUntilKindsDoneAtUntil(t *testing.T) {
	k := newKindsFleet(t)
	plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
	hs := k.holdEvery(t, plain, fenced, "done-at", 1500*time.Millisecond)
	eachHeld(hs, func(h *held) {
		select {
		case <-h.done():
			if u := h.until(); time.Now().Before(u) {
				t.Errorf("%s: Done closed %v before Until", h.name, time.Until(u))
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s: Done still open %v after Until", h.name, time.Since(h.until()))
		}
	})
}

// doKind runs fn inside one Do form on resource (prefix-named), for ttl.
type doKind struct {
	name string
	do   func(ctx context.Context, resource string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error
	// until, extend and rel act on the lock fn's ctx carries; held is
	// that lock.
	until  func(ctx context.Context) time.Time
	extend func(ctx context.Context, ttl time.Duration) error
	rel    func(ctx context.Context) error
	held   func(ctx context.Context) *held
	// moved: the resource must move between the rings (plain Do only).
	moved bool
}

// doKinds are every Do form of the clients plain and fenced.
func doKinds(plain, fenced *Client) []doKind {
	lockUntil := func(ctx context.Context) time.Time { return LockFromContext(ctx).Until() }
	lockExtend := func(ctx context.Context, ttl time.Duration) error { return LockFromContext(ctx).Extend(ctx, ttl) }
	lockRel := func(ctx context.Context) error { return LockFromContext(ctx).Release(ctx) }
	lockKind := func(name string, moved bool, do func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error) doKind {
		return doKind{name: name, do: do, until: lockUntil, extend: lockExtend, rel: lockRel, moved: moved,
			held: func(ctx context.Context) *held { return heldLock(name, LockFromContext(ctx), nil) }}
	}
	sem := func(c *Client, permits int) func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
		return func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
			s, err := c.Semaphore(r, permits)
			if err != nil {
				return err
			}
			return s.Do(ctx, ttl, fn, opts...)
		}
	}
	all := func(c *Client) func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
		return func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
			rs := spread(c, r, 2) // stayed resources live on the old ring's two groups
			return c.DoAll(ctx, rs, ttl, fn, opts...)
		}
	}
	multiUntil := func(ctx context.Context) time.Time { return MultiLockFromContext(ctx).Until() }
	multiExtend := func(ctx context.Context, ttl time.Duration) error { return MultiLockFromContext(ctx).Extend(ctx, ttl) }
	multiRel := func(ctx context.Context) error { return MultiLockFromContext(ctx).Release(ctx) }
	multiHeld := func(name string) func(ctx context.Context) *held {
		return func(ctx context.Context) *held { return heldMulti(name, MultiLockFromContext(ctx), nil) }
	}
	return []doKind{
		lockKind("Do", false, plain.DoWith),
		lockKind("Do moved (two groups)", true, plain.DoWith),
		lockKind("Do fenced", false, fenced.DoWith),
		lockKind("DoRead", false, func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
			return plain.RWMutex(r).DoRead(ctx, ttl, fn, opts...)
		}),
		lockKind("DoWrite fenced", false, func(ctx context.Context, r string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
			return fenced.RWMutex(r).DoWrite(ctx, ttl, fn, opts...)
		}),
		lockKind("Semaphore.Do", false, sem(plain, 2)),
		{name: "DoAll", do: all(plain), until: multiUntil, extend: multiExtend, rel: multiRel, held: multiHeld("DoAll")},
		{name: "DoAll fenced", do: all(fenced), until: multiUntil, extend: multiExtend, rel: multiRel, held: multiHeld("DoAll fenced")},
	}
}

// runDoKinds runs fn inside every Do form at once, each on a resource of
// its own, and reports Do's errors that are not allowed.
func runDoKinds(t *testing.T, kinds []doKind, c *Client, prefix string, ttl time.Duration, allowed func(error) bool,
	fn func(dk doKind, ctx context.Context) error, opts ...DoOption) {
	t.Helper()
	var wg sync.WaitGroup
	for i, dk := range kinds {
		r := resourceFor(c, fmt.Sprint(prefix, i), dk.moved)
		wg.Go(func() {
			err := dk.do(context.Background(), r, ttl, func(ctx context.Context) error { return fn(dk, ctx) }, opts...)
			if err != nil && (allowed == nil || !allowed(err)) {
				t.Errorf("%s: %v", dk.name, err)
			}
		})
	}
	wg.Wait()
}

// waitCtxAtUntil waits for fn's ctx to end and checks it ended at Until:
// not before it, and not long after it (slack).
func waitCtxAtUntil(ctx context.Context, dk doKind, slack time.Duration) error {
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("fn's ctx still live %v after Until", time.Since(dk.until(ctx)))
	}
	at, u := time.Now(), dk.until(ctx)
	if !errors.Is(context.Cause(ctx), ErrLockLost) {
		return fmt.Errorf("fn's ctx cause %w; want ErrLockLost", context.Cause(ctx))
	}
	if at.Before(u) {
		return fmt.Errorf("fn's ctx ended %v before Until", u.Sub(at))
	}
	if late := at.Sub(u); late > slack {
		return fmt.Errorf("fn's ctx ended %v after Until (Until passed while fn still ran under a live ctx)", late.Round(time.Millisecond))
	}
	return nil
}

// TestUntilKindsDoFollowsUntil (item 2, every Do form): fn's context
// follows every change of Until — a hand Extend that shortens it, one that
// lengthens it, fn releasing the lock itself — and ends at Until while the
// automatic extensions are stuck on masters that hold every command.
func TestUntilKindsDoFollowsUntil(t *testing.T) {
	k := newKindsFleet(t)
	plain, fenced := k.holder(t, false, time.Second), k.holder(t, true, time.Second)
	kinds := doKinds(plain, fenced)
	notHeld := func(err error) bool { return errors.Is(err, ErrNotHeld) }

	t.Run("a hand Extend shortens it", func(t *testing.T) {
		runDoKinds(t, kinds, plain, "do-short", 30*time.Second, notHeld, func(dk doKind, ctx context.Context) error {
			if err := dk.extend(ctx, 1500*time.Millisecond); err != nil {
				return fmt.Errorf("Extend(1.5s) inside fn: %w", err)
			}
			return waitCtxAtUntil(ctx, dk, 10*time.Second)
		})
	})

	t.Run("a hand Extend lengthens it", func(t *testing.T) {
		runDoKinds(t, kinds, plain, "do-long", 2*time.Second, nil, func(dk doKind, ctx context.Context) error {
			old := dk.until(ctx)
			if err := dk.extend(ctx, 30*time.Second); err != nil {
				return fmt.Errorf("Extend(30s) inside fn: %w", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("fn's ctx ended (%w) although the lock was extended to 30s", context.Cause(ctx))
			case <-time.After(time.Until(old) + 500*time.Millisecond): // past the old Until
			}
			return nil
		})
	})

	t.Run("fn releases it", func(t *testing.T) {
		runDoKinds(t, kinds, plain, "do-rel", 30*time.Second, nil, func(dk doKind, ctx context.Context) error {
			if err := dk.rel(ctx); err != nil {
				return fmt.Errorf("Release inside fn: %w", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				return errors.New("fn's ctx still live 5s after fn released the lock (Until is zero: another holder may have it)")
			}
			if !errors.Is(context.Cause(ctx), ErrLockLost) {
				return fmt.Errorf("fn's ctx cause %w; want ErrLockLost", context.Cause(ctx))
			}
			return nil
		})
	})

	t.Run("fn releases it while the extender renews it", func(t *testing.T) {
		var mu sync.Mutex
		var hs []*held
		for round := range 3 {
			runDoKinds(t, kinds, plain, fmt.Sprint("do-relauto", round), 900*time.Millisecond, notHeld, func(dk doKind, ctx context.Context) error {
				h := dk.held(ctx)
				mu.Lock()
				hs = append(hs, h)
				mu.Unlock()
				time.Sleep(time.Duration(250+round*60) * time.Millisecond) // about one renewal (every 300 ms)
				if err := dk.rel(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
					return fmt.Errorf("Release beside a renewal: %w", err)
				}
				return nil
			}, WithAutoExtend())
		}
		for _, h := range hs {
			h.barrier(t)
			if left := h.leftAnywhere(t, k); left > 0 {
				t.Errorf("%s: a master keeps the holder %v after fn released it beside a renewal", h.name, left)
			}
		}
	})

	t.Run("a nested Do's fn releases the outer lock", func(t *testing.T) {
		runDoKinds(t, kinds, plain, "do-nest", 30*time.Second, nil, func(dk doKind, octx context.Context) error {
			outer := dk.held(octx)
			return plain.Do(octx, fmt.Sprint(dk.name, "/inner"), 30*time.Second, func(ictx context.Context) error {
				if err := outer.release(ictx); err != nil {
					return fmt.Errorf("outer Release with the inner fn's ctx: %w", err)
				}
				select {
				case <-ictx.Done():
				case <-time.After(5 * time.Second):
					return errors.New("the inner fn's ctx still live 5s after the outer lock was released")
				}
				return nil
			})
		})
	})

	t.Run("auto-extended, a hand Extend shorter at once", func(t *testing.T) {
		runDoKinds(t, kinds, plain, "do-auto", 3*time.Second, nil, func(dk doKind, ctx context.Context) error {
			for i := range 4 {
				if err := dk.extend(ctx, 2500*time.Millisecond); err != nil {
					return fmt.Errorf("round %d: hand Extend(2.5s) beside the extender: %w", i, err)
				}
				time.Sleep(time.Duration(100+i*150) * time.Millisecond)
				dk.held(ctx).checkUntilSafe(t, k, fmt.Sprint("round ", i, " beside the extender"))
				if ctx.Err() != nil {
					return fmt.Errorf("round %d: fn's ctx ended (%w) while auto-extended", i, context.Cause(ctx))
				}
			}
			return nil
		}, WithAutoExtend())
	})

	t.Run("auto-extended, every master holds the extensions", func(t *testing.T) {
		slow := k.holder(t, false, 4*time.Second) // the renewals wait for the paused masters
		slowFenced := k.holder(t, true, 4*time.Second)
		slowKinds := doKinds(slow, slowFenced)
		var in sync.WaitGroup
		in.Add(len(slowKinds))
		paused := make(chan struct{})
		go func() {
			in.Wait()
			for _, s := range k.all {
				pauseCommands(t, s, 5*time.Second)
			}
			close(paused)
		}()
		runDoKinds(t, slowKinds, slow, "do-paused", 1500*time.Millisecond, func(error) bool { return true },
			func(dk doKind, ctx context.Context) error {
				in.Done()
				<-paused
				if err := waitCtxAtUntil(ctx, dk, 1500*time.Millisecond); err != nil {
					t.Errorf("%s: %v", dk.name, err)
				}
				return nil
			}, WithAutoExtend())
	})
}
