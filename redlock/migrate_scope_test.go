package redlock

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMigrationRefusesWhatItCannotLockTwice: Await, LockAll, DoAll and
// the locks of RWMutex and Semaphore are refused for a resource that moves (matching ErrRingChange, naming the
// resource and its groups), sending nothing; resources that do not move are
// served as usual.
func TestMigrationRefusesWhatItCannotLockTwice(t *testing.T) {
	m := newMigrationFleet(t)
	ctx := context.Background()
	r, s := m.moved[0], m.stayed[0]
	og, ng := m.groupOf(m.old, r), m.groupOf(m.nu, r)
	check := func(what string, err error) {
		t.Helper()
		want := "from group " + strconv.Itoa(og) + " to group " + strconv.Itoa(ng)
		if !errors.Is(err, ErrRingChange) || !strings.Contains(err.Error(), strconv.Quote(r)) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s of a moved resource: %v (want ErrRingChange naming %q and %q)", what, err, r, want)
		}
		if m.holders(t, og, r)+m.holders(t, ng, r) != 0 {
			t.Fatalf("%s of a moved resource left keys", what)
		}
	}
	_, err := m.mig.Await(ctx, r, time.Second)
	check("Await", err)
	_, err = m.mig.LockAll(ctx, []string{s, r}, time.Second)
	check("LockAll", err)
	ran := false
	err = m.mig.DoAll(ctx, []string{r}, time.Second, func(context.Context) error { ran = true; return nil })
	check("DoAll", err)
	if ran {
		t.Fatal("DoAll ran fn for a moved resource")
	}
	if m.holders(t, m.groupOf(m.nu, s), s) != 0 {
		t.Fatal("LockAll left the unmoved resource locked")
	}
	rw := m.mig.RWMutex(r)
	_, err = rw.RLock(ctx, time.Second)
	check("RWMutex.RLock", err)
	_, err = rw.Lock(ctx, time.Second)
	check("RWMutex.Lock", err)
	_, err = rw.TryRLock(ctx, time.Second)
	check("RWMutex.TryRLock", err)
	sem, err := m.mig.Semaphore(r, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sem.Acquire(ctx, time.Second)
	check("Semaphore.Acquire", err)
	err = sem.Do(ctx, time.Second, func(context.Context) error { ran = true; return nil })
	check("Semaphore.Do", err)
	if ran {
		t.Fatal("Semaphore.Do ran fn for a moved resource")
	}
	for g := range m.f { // nothing of the scripted locks was written anywhere
		for _, srv := range m.f[g] {
			if keys, _ := srv.Do(ctx, "KEYS", r+":*"); keys != "" && keys != "*0" {
				t.Fatalf("group %d has keys of the refused scripted locks: %q", g, keys)
			}
		}
	}

	// Unmoved resources: as without Previous.
	l, err := m.mig.Await(ctx, s, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wl, err := m.mig.RWMutex(s).Lock(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := wl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ml, err := m.mig.LockAll(ctx, []string{s, m.stayed[1]}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := ml.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Clients without Previous never refuse.
	l, err = m.nu.Await(ctx, r, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Release(ctx)
}

// TestMigrationErrorOneLine: a moved resource refused by its previous group
// is one *QuorumError, one line: Busy, the previous group's votes first,
// then the new group's.
func TestMigrationErrorOneLine(t *testing.T) {
	m := newMigrationFleet(t)
	ctx := context.Background()
	r := m.moved[1]
	lo, err := m.old.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lo.Release(ctx) }()
	barrier(t, m.old, r) // TryLock returns at quorum: its last SET lands now
	_, err = m.mig.TryLock(ctx, r, time.Second)
	var qe *QuorumError
	if !errors.Is(err, ErrNotObtained) || !errors.As(err, &qe) || !qe.Busy() {
		t.Fatalf("TryLock of a moved resource held on the old ring: %v", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") || !strings.Contains(msg, `lock "`+r+`": not obtained: busy (0 of 3 masters said yes`) ||
		!strings.Contains(msg, "; on the new group: ") || strings.Count(msg, "redlock:") != 1 {
		t.Fatalf("message: %s", msg)
	}
}

// TestMigrationAutoExtendBothGroups: the shared extender renews a moved
// resource's lock on both groups (by Extend), so it stays held by the
// migrating client — and refused to old-ring and new-ring clients — for
// several TTLs.
func TestMigrationAutoExtendBothGroups(t *testing.T) {
	m := newMigrationFleet(t)
	ctx := context.Background()
	r := m.moved[2]
	og, ng := m.groupOf(m.old, r), m.groupOf(m.nu, r)
	const ttl = 2 * time.Second
	err := m.mig.DoWith(ctx, r, ttl, func(fctx context.Context) error {
		l := LockFromContext(fctx)
		first := l.Until()
		deadline := time.Now().Add(3 * ttl)
		for time.Now().Before(deadline) {
			select {
			case <-fctx.Done():
				return context.Cause(fctx)
			case <-time.After(200 * time.Millisecond):
			}
			for _, c := range []*Client{m.old, m.nu} {
				if _, err := c.TryLock(ctx, r, time.Second); !errors.Is(err, ErrNotObtained) {
					return errors.New("a single-ring client got the resource: " + errString(err))
				}
			}
		}
		if !l.Until().After(first) {
			return errors.New("Until never moved: not renewed")
		}
		if m.holders(t, og, r) < 2 || m.holders(t, ng, r) < 2 {
			return errors.New("not held on both groups after 3 TTLs")
		}
		return nil
	}, WithAutoExtend())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "keys gone on both groups", func() bool { return m.holders(t, og, r)+m.holders(t, ng, r) == 0 })
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestMigrationFenceMaxOverBothGroups: with Fencing, a moved resource's
// fence is the maximum over both groups' counters, raised on both, so that
// fences stay monotonic across a ring change: the migrating client's fence
// is above the old group's, and the next fence from the new ring alone (step
// 2), or from an old-ring client still running in step 1, is above the
// migrating client's. (Old-ring and new-ring clients never run together:
// their fences are not ordered with each other.)
func TestMigrationFenceMaxOverBothGroups(t *testing.T) {
	m := newMigrationFleet(t)
	ctx := context.Background()
	r := m.moved[3]
	og, ng := m.groupOf(m.old, r), m.groupOf(m.nu, r)
	cfg := func(cluster, prev [][]string) Config {
		return Config{Cluster: cluster, Previous: prev, Fencing: true, NodeTimeout: time.Second}
	}
	old := newClient(t, cfg(m.oldC, nil))
	mig := newClient(t, cfg(m.newC, m.oldC))
	nu := newClient(t, cfg(m.newC, nil))

	l, err := old.Lock(ctx, r, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := l.Fence()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The old group runs far ahead of the new one (its counters count
	// every fence it handed out for the resource's slot).
	high := first + 1_000_000_000
	for _, s := range m.f[og] {
		if _, err := s.Do(ctx, "HSET", FenceCounterKey, slotOf(r), strconv.FormatInt(high, 10)); err != nil {
			t.Fatal(err)
		}
	}
	lm, err := mig.Lock(ctx, r, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fm := lm.Fence()
	if fm <= high {
		t.Fatalf("migrating fence %d; want above the old group's counters %d", fm, high)
	}
	for _, g := range []int{og, ng} {
		raised := 0
		for _, s := range m.f[g] {
			if counterOn(t, s, "", r) >= fm {
				raised++
			}
		}
		if raised < 2 {
			t.Fatalf("group %d: %d masters' counters at or above the fence %d; want a majority", g, raised, fm)
		}
	}
	if err := lm.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{nu, old} {
		l, err := c.Lock(ctx, r, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence() <= fm {
			t.Fatalf("single-ring fence %d after the migrating client's %d: not monotonic across the change", l.Fence(), fm)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
