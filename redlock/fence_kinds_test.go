package redlock

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// fencedKind is one way to take a lock of a resource (writer, reader,
// permit, LockAll part, plain lock), as the fencing tests of every kind see
// it: its fence and its release.
type fencedKind struct {
	name string
	take func(ctx context.Context, c *Client, res string) (fence int64, release func() error, err error)
}

// fenceKinds are every lock kind of a resource res: RWMutex Lock, TryLock,
// RLock and TryRLock; a one-permit Semaphore's Acquire and a two-permit
// one's TryAcquire (not both holding at once: the masters refuse another
// number of permits while a holder lives); LockAll of res with
// res+"-other"; plain Lock.
func fenceKinds(ttl time.Duration) []fencedKind {
	lock := func(l *Lock, err error) (int64, func() error, error) {
		if err != nil {
			return 0, nil, err
		}
		return l.Fence(), func() error { return l.Release(context.Background()) }, nil
	}
	sem := func(c *Client, res string, permits int) *Semaphore {
		s, err := c.Semaphore(res, permits)
		if err != nil {
			panic(err) // fixed arguments: a bug in the test
		}
		return s
	}
	return []fencedKind{
		{"RWMutex.Lock", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(c.RWMutex(res).Lock(ctx, ttl))
		}},
		{"RWMutex.RLock", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(c.RWMutex(res).RLock(ctx, ttl))
		}},
		{"Semaphore(1).Acquire", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(sem(c, res, 1).Acquire(ctx, ttl))
		}},
		{"LockAll", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			m, err := c.LockAll(ctx, []string{res + "-other", res}, ttl)
			if err != nil {
				return 0, nil, err
			}
			return m.Fence(res), func() error { return m.Release(context.Background()) }, nil
		}},
		{"RWMutex.TryLock", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(c.RWMutex(res).TryLock(ctx, ttl))
		}},
		{"RWMutex.TryRLock", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(c.RWMutex(res).TryRLock(ctx, ttl))
		}},
		{"Semaphore(2).TryAcquire", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(sem(c, res, 2).TryAcquire(ctx, ttl))
		}},
		{"Lock", func(ctx context.Context, c *Client, res string) (int64, func() error, error) {
			return lock(c.Lock(ctx, res, ttl))
		}},
	}
}

// TestFenceEveryKindIncreases: with Fencing, every acquisition of a
// resource — writer, reader, permit, LockAll, plain lock, alternating
// between two clients — gets a fence above every earlier one's; a reader
// that joins a holding reader gets a higher fence, and the writer after
// them a higher one still; Extend keeps the fence; a semaphore's permits
// mismatch is still reported as such; a MultiLock's other
// resource has a fence of its own and a stranger none; only the counter hash
// (under KeyPrefix) stays after the releases.
func TestFenceEveryKindIncreases(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := fencedConfig(f, 0)
	cfg.KeyPrefix = "app:"
	clients := []*Client{newClient(t, cfg), newClient(t, cfg)}
	ctx := context.Background()
	const res = "kinds"
	var last int64
	above := func(what string, fence int64) {
		t.Helper()
		if fence <= last {
			t.Fatalf("%s: fence %d, not above the previous %d", what, fence, last)
		}
		last = fence
	}
	kinds := fenceKinds(5 * time.Second)
	for i := range 3 * len(kinds) {
		k := kinds[i%len(kinds)]
		c := clients[i%2]
		fence, release, err := k.take(ctx, c, res)
		if err != nil {
			t.Fatalf("%s (client %d): %v", k.name, i%2, err)
		}
		above(k.name+" (client "+strconv.Itoa(i%2)+")", fence)
		if err := release(); err != nil {
			t.Fatalf("%s: release: %v", k.name, err)
		}
	}

	// Readers share: the one that joins gets a higher fence; Extend keeps it.
	m0, m1 := clients[0].RWMutex(res), clients[1].RWMutex(res)
	r1, err := m0.RLock(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	above("first reader", r1.Fence())
	r2, err := m1.RLock(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	above("second reader, joining the first", r2.Fence())
	if err := r1.Extend(ctx, 6*time.Second); err != nil || r1.Fence() >= r2.Fence() {
		t.Fatalf("reader Extend: %v, fence %d (the second reader's %d)", err, r1.Fence(), r2.Fence())
	}
	if _, err := m1.TryLock(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("writer TryLock while readers hold: %v", err)
	}
	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	w, err := m0.Lock(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	above("writer after the readers", w.Fence())
	if err := w.Extend(ctx, 6*time.Second); err != nil || w.Fence() != last {
		t.Fatalf("writer Extend: %v, fence %d, want %d", err, w.Fence(), last)
	}
	_ = w.Release(ctx)

	s, err := clients[1].Semaphore(res, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Acquire(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	above("permit", p.Fence())
	if err := p.Extend(ctx, 6*time.Second); err != nil || p.Fence() != last {
		t.Fatalf("permit Extend: %v, fence %d, want %d", err, p.Fence(), last)
	}
	// The fenced script passes the semaphore's own refusals through.
	s2, err := clients[0].Semaphore(res, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.TryAcquire(ctx, time.Second); !errors.Is(err, ErrPermitsMismatch) {
		t.Fatalf("a 2-permit TryAcquire while a 1-permit holder lives: %v, want ErrPermitsMismatch", err)
	}
	_ = p.Release(ctx)

	ml, err := clients[0].LockAll(ctx, []string{res, res + "-other"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	above("LockAll", ml.Fence(res))
	if err := ml.Extend(ctx, 6*time.Second); err != nil || ml.Fence(res) != last {
		t.Fatalf("MultiLock Extend: %v, fence %d, want %d", err, ml.Fence(res), last)
	}
	if ml.Fence(res+"-other") <= 0 || ml.Fence("stranger") != 0 {
		t.Fatalf("MultiLock fences: %q %d, a stranger %d; want > 0 and 0", res+"-other", ml.Fence(res+"-other"), ml.Fence("stranger"))
	}
	_ = ml.Release(ctx)
	err = clients[1].DoAll(ctx, []string{res}, 5*time.Second, func(ctx context.Context) error {
		above("DoAll", MultiLockFromContext(ctx).Fence(res))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if MultiLockFromContext(ctx) != nil {
		t.Fatal("MultiLockFromContext of a context outside DoAll is not nil")
	}

	for _, s := range f[0] {
		eventually(t, 5*time.Second, s.Addr()+": only the counter is left", func() bool { return dbsize(t, s) == 1 })
		if got := counterOn(t, s, "app:", res); got <= 0 {
			t.Errorf("%s: no counter for %q under the key prefix (%d)", s.Addr(), res, got)
		}
	}
}

// TestFenceEveryKindWriteBack: for every lock kind, when the masters of the
// yes-majority disagree (master 0 far ahead, master 2 paused), the kind's
// fence is the maximum and it is written back before the acquisition
// returns (for LockAll, to every counter of the part); then, with master 0
// lost and master 2 back, every kind still gets a higher fence.
func TestFenceEveryKindWriteBack(t *testing.T) {
	f := fleet(t, 1, 3)
	m := f[0]
	cfg := fencedConfig(f, 300*time.Millisecond)
	c := newClient(t, cfg)
	ctx := context.Background()
	const res = "wbk"
	if slotOf(res) == slotOf(res+"-other") {
		t.Fatalf("setup: %q and %q share a counter slot", res, res+"-other")
	}
	kinds := fenceKinds(5 * time.Second)
	if err := m[2].Pause(); err != nil {
		t.Fatal(err)
	}
	high := int64(1) << 52
	for _, k := range kinds {
		if k.name == "Semaphore(2).TryAcquire" {
			continue // needs all three masters
		}
		high += 1_000_000
		if _, err := m[0].Do(ctx, "HSET", FenceCounterKey, slotOf(res), strconv.FormatInt(high, 10)); err != nil {
			t.Fatal(err)
		}
		fence, release, err := k.take(ctx, c, res)
		if err != nil {
			t.Fatalf("%s with master 2 paused: %v", k.name, err)
		}
		if fence != high+1 {
			t.Fatalf("%s: fence %d; want the maximum over the majority, %d", k.name, fence, high+1)
		}
		if got := counterOn(t, m[1], "", res); got < fence {
			t.Fatalf("%s: master 1's counter %d after it returned: the fence %d was not written back", k.name, got, fence)
		}
		if k.name == "LockAll" {
			for _, s := range m[:2] {
				if got := counterOn(t, s, "", res+"-other"); got < fence {
					t.Fatalf("LockAll: %s's counter of the part's other resource is %d, below the part's fence %d", s.Addr(), got, fence)
				}
			}
		}
		if err := release(); err != nil {
			t.Fatalf("%s: release: %v", k.name, err)
		}
	}
	if err := m[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[2].Resume(); err != nil {
		t.Fatal(err)
	}
	last := high + 1
	for _, k := range kinds {
		if k.name == "Semaphore(2).TryAcquire" {
			continue
		}
		var fence int64
		var release func() error
		eventually(t, 10*time.Second, k.name+" on {1, 2}", func() bool {
			tctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var err error
			fence, release, err = k.take(tctx, c, res)
			return err == nil
		})
		if fence <= last {
			t.Fatalf("%s: fence %d after the master with the highest counter was lost; want > %d", k.name, fence, last)
		}
		last = fence
		_ = release()
	}
}

// TestFenceEveryKindUnderMinorityFaults: two clients, four acquirers each,
// take one resource by every kind (writer, reader, one-permit semaphore,
// LockAll, plain lock) while one master at a time — of masters that persist
// with AOF always — is killed and restarted, paused (SIGSTOP, CLIENT
// PAUSE) or restarted empty. For every two completed acquisitions a, b with
// a done before b started, whatever their kinds, a's fence is below b's;
// and no writer held with anyone, no two permits at once.
func TestFenceEveryKindUnderMinorityFaults(t *testing.T) {
	f := fleetWith(t, 1, 3, aofAlways)
	cfg := fencedConfig(f, 200*time.Millisecond)
	cfg.RetryStrategy = LinearBackoff(1000, 20*time.Millisecond)
	clients := []*Client{newClient(t, cfg), newClient(t, cfg)}
	ctx := context.Background()
	const res = "mix"
	rw, sem := newHoldLog(0), newHoldLog(1)
	var kinds []fencedKind
	for _, k := range fenceKinds(2 * time.Second) {
		if k.name != "Semaphore(2).TryAcquire" { // needs all three masters: rarely there under faults
			kinds = append(kinds, k)
		}
	}
	counts := make([]atomic.Int64, len(kinds))
	finish := raceFences(t, clients, 4, func(c *Client, who string, n int) (int64, func(), error) {
		i := (n + int(who[len(who)-1])) % len(kinds)
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var l *Lock
		var err error
		var log *holdLog
		var kind byte
		switch kinds[i].name { // the kinds whose exclusion the hold logs check
		case "RWMutex.Lock":
			l, err = c.RWMutex(res).Lock(lctx, 2*time.Second)
			log, kind = rw, 'w'
		case "RWMutex.RLock":
			l, err = c.RWMutex(res).RLock(lctx, 2*time.Second)
			log, kind = rw, 'r'
		case "Semaphore(1).Acquire":
			var s *Semaphore
			if s, err = c.Semaphore(res, 1); err == nil {
				l, err = s.Acquire(lctx, 2*time.Second)
			}
			log, kind = sem, 'p'
		default:
			fence, release, err := kinds[i].take(lctx, c, res)
			if err != nil {
				return 0, nil, err
			}
			counts[i].Add(1)
			return fence, func() { _ = release() }, nil
		}
		if err != nil {
			return 0, nil, err
		}
		log.begin(l, kind)
		counts[i].Add(1)
		return l.Fence(), func() {
			log.end(l)
			_ = l.Release(ctx)
		}, nil
	})
	runMinorityFaults(t, f[0], 12, 300*time.Millisecond)
	done := finish()

	rw.check(t)
	sem.check(t)
	var per []string
	for i, k := range kinds {
		per = append(per, k.name+" "+strconv.FormatInt(counts[i].Load(), 10))
		if counts[i].Load() == 0 {
			t.Errorf("no %s completed under minority faults", k.name)
		}
	}
	violations := checkFenceOrder(t, done)
	t.Logf("%d acquisitions (%s) under 12 minority faults, %d fence order violations", len(done), strings.Join(per, ", "), violations)
}

// TestFenceOffEveryKind: without Fencing, every kind's Fence is 0, no fence
// counter appears on any master, and the masters ran the acquire scripts as
// they are — never their fenced forms (SCRIPT EXISTS), which a client with
// Fencing does run (the control).
func TestFenceOffEveryKind(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	c := newClient(t, cfg)
	ctx := context.Background()
	for _, k := range fenceKinds(5 * time.Second) {
		fence, release, err := k.take(ctx, c, "off")
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		if fence != 0 {
			t.Fatalf("%s: Fence() = %d without Fencing; want 0", k.name, fence)
		}
		if err := release(); err != nil {
			t.Fatalf("%s: release: %v", k.name, err)
		}
	}
	plain := []*script{rlockScript, wlockScript, semAcquireScript, newScript(multiAcquireScriptSrc)}
	fenced := []*script{rlockFenceScript, wlockFenceScript, semAcquireFenceScript, multiFenceScript, raiseSlotsScript, newScript(fenceAcquireScriptSrc)}
	for _, s := range plain {
		if strings.Contains(s.src, "hset") || strings.Contains(s.src, FenceCounterKey) {
			t.Fatalf("an unfenced acquire script touches the fence counters:\n%s", s.src)
		}
	}
	for _, s := range f[0] {
		eventually(t, 5*time.Second, s.Addr()+": empty after the releases", func() bool { return dbsize(t, s) == 0 })
		for i, sc := range plain {
			if !scriptExists(t, s, sc) {
				t.Errorf("%s: unfenced acquire script %d never ran", s.Addr(), i)
			}
		}
		for i, sc := range fenced {
			if scriptExists(t, s, sc) {
				t.Errorf("%s: fenced script %d ran without Fencing", s.Addr(), i)
			}
		}
	}
	// The control: with Fencing, the fenced forms are what the masters run.
	cfg.Fencing = true
	fc := newClient(t, cfg)
	for _, k := range fenceKinds(5 * time.Second) {
		_, release, err := k.take(ctx, fc, "on")
		if err != nil {
			t.Fatalf("%s with Fencing: %v", k.name, err)
		}
		_ = release()
	}
	barrier(t, fc, "on")
	for i, sc := range fenced[:4] {
		if !scriptExists(t, f[0][0], sc) {
			t.Errorf("fenced acquire script %d did not run with Fencing", i)
		}
	}
}

// scriptExists tells whether s's script cache holds sc (SCRIPT EXISTS).
func scriptExists(t *testing.T, s *redisproc.Server, sc *script) bool {
	t.Helper()
	sha, _ := sc.sha.(string)
	got, err := raw(t, s).ScriptExists(context.Background(), sha).Result()
	if err != nil || len(got) != 1 {
		t.Fatalf("%s: SCRIPT EXISTS: %v %v", s.Addr(), got, err)
	}
	return got[0]
}

// TestFenceLockAllAcrossGroups: a LockAll over resources of two groups gives
// each resource a fence above its previous plain lock's, the same fence to
// the resources of one group (its part) and its own to each group; the
// plain locks after it get higher fences again.
func TestFenceLockAllAcrossGroups(t *testing.T) {
	f := fleet(t, 2, 3)
	c := newClient(t, fencedConfig(f, 0))
	ctx := context.Background()
	var set []string
	byGroup := map[string][]string{}
	for i := 0; len(byGroup) < 2 || len(set) < 6; i++ {
		r := "across-" + strconv.Itoa(i)
		g := strings.Join(c.Route(r), ",")
		if len(byGroup[g]) < 3 {
			byGroup[g] = append(byGroup[g], r)
			set = append(set, r)
		}
	}
	before := map[string]int64{}
	for _, r := range set {
		l, err := c.Lock(ctx, r, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		before[r] = l.Fence()
		_ = l.Release(ctx)
	}
	m, err := c.LockAll(ctx, set, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for g, rs := range byGroup {
		for _, r := range rs {
			if m.Fence(r) <= before[r] {
				t.Errorf("%s: LockAll fence %d, not above the previous lock's %d", r, m.Fence(r), before[r])
			}
			if m.Fence(r) != m.Fence(rs[0]) {
				t.Errorf("group %s: %s's fence %d differs from %s's %d (one part, one fence)", g, r, m.Fence(r), rs[0], m.Fence(rs[0]))
			}
		}
	}
	_ = m.Release(ctx)
	for _, r := range set {
		l, err := c.Lock(ctx, r, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence() <= m.Fence(r) {
			t.Errorf("%s: fence %d after the LockAll, not above its %d", r, l.Fence(), m.Fence(r))
		}
		_ = l.Release(ctx)
	}
}

// TestFencedOpsTable: every fenced operation has a script and a name — an
// acquire's fenced form is named as the acquire and counts as one — and
// their numbers stay clear of the scripted ones.
func TestFencedOpsTable(t *testing.T) {
	if opFenced <= opSemExtend+16 {
		t.Fatalf("fenced operations start at %d, too close to the scripted ones (up to %d)", opFenced, opSemExtend)
	}
	if len(fencedOpNames) != len(fencedScripts) || int(opRaiseSlots-opFenced)+1 != len(fencedScripts) {
		t.Fatalf("%d fenced operations, %d names, %d scripts", opRaiseSlots-opFenced+1, len(fencedOpNames), len(fencedScripts))
	}
	acquires := map[opKind]opKind{opMultiAcquireFence: opMultiAcquire}
	for _, k := range []*lockKind{kindRead, kindWrite, kindPermit} {
		acquires[k.fenced] = k.acquire
	}
	for op := opFenced; op <= opRaiseSlots; op++ {
		if scriptOf(op) == nil {
			t.Fatalf("op %d has no script", op)
		}
		plain, isAcquire := acquires[op]
		if isAcquire && op.String() != plain.String() {
			t.Fatalf("fenced op %d is named %q, its acquire %q", op, op, plain)
		}
		if op.isAcquire() != isAcquire || op.isRelease() {
			t.Fatalf("op %s: isAcquire %v isRelease %v, want %v false", op, op.isAcquire(), op.isRelease(), isAcquire)
		}
	}
	if opRaiseSlots.String() != opRaise.String() || scriptOf(opRaiseSlots).src != raiseScriptSrc {
		t.Fatalf("the several-slot write-back is %q with another script than opRaise's", opRaiseSlots)
	}
}
