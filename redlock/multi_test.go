package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// serverOf maps each master address to its process.
func serverOf(f [][]*redisproc.Server) map[string]*redisproc.Server {
	m := make(map[string]*redisproc.Server)
	for _, g := range f {
		for _, s := range g {
			m[s.Addr()] = s
		}
	}
	return m
}

// TestLockAllAcrossGroups: LockAll over three groups sets every key on every
// master of its group, in one command per master; Extend and Release act on
// all of them.
func TestLockAllAcrossGroups(t *testing.T) {
	f := fleet(t, 3, 3)
	c := newClient(t, clusterConfig(f))
	servers := serverOf(f)
	ctx := context.Background()
	var res []string
	for i := range 30 {
		res = append(res, fmt.Sprintf("multi-%02d", 29-i)) // unsorted on purpose
	}
	groups := map[string]bool{}
	for _, r := range res {
		groups[c.Route(r)[0]] = true
	}
	if len(groups) < 2 {
		t.Fatalf("the resources landed in %d group(s); the test needs several", len(groups))
	}
	before := c.MasterStats()
	m, err := c.LockAll(ctx, res, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// One command per master of each involved group (the last master may
	// still be answering: early quorum).
	eventually(t, 10*time.Second, "every master got its one command", func() bool {
		after := c.MasterStats()
		for i, st := range after {
			want := int64(0)
			for _, r := range res {
				if slices.Contains(c.Route(r), st.Addr) {
					want = 1
				}
			}
			if st.Commands-before[i].Commands != want {
				return false
			}
		}
		return true
	})
	if !slices.IsSorted(m.Resources()) || len(m.Resources()) != len(res) {
		t.Errorf("Resources() = %v", m.Resources())
	}
	if u := m.Until(); time.Until(u) < 9*time.Second || time.Until(u) > 10*time.Second {
		t.Errorf("Until in %v, want within the 10 s TTL", time.Until(u))
	}
	for _, r := range res {
		for _, addr := range c.Route(r) {
			eventually(t, 5*time.Second, r+" on "+addr, func() bool { return servers[addr].GetT(t, r) == m.Token() })
		}
	}
	if err := m.Extend(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if u := m.Until(); time.Until(u) < 29*time.Second {
		t.Errorf("Until after Extend(30s) in %v", time.Until(u))
	}
	for _, r := range res {
		addr := c.Route(r)[0]
		got, err := servers[addr].Do(ctx, "PTTL", r)
		if err != nil || len(got) < 3 || got[:3] != ":29" && got[:3] != ":30" {
			t.Errorf("PTTL %s on %s = %q %v after Extend(30s)", r, addr, got, err)
		}
	}
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !m.Until().IsZero() {
		t.Error("Until not zero after Release")
	}
	for _, r := range res {
		for _, addr := range c.Route(r) {
			eventually(t, 5*time.Second, r+" released on "+addr, func() bool { return servers[addr].GetT(t, r) == "" })
		}
	}
	if err := m.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Release = %v, want ErrNotHeld", err)
	}
}

// TestLockAllAllOrNothing: one resource of the set is busy: LockAll fails
// with ErrNotObtained and none of the other keys stays on any master.
func TestLockAllAllOrNothing(t *testing.T) {
	f := fleet(t, 3, 3)
	cfg := clusterConfig(f)
	cfg.MaxRetry = 2
	cfg.RetryInterval = 20 * time.Millisecond
	c := newClient(t, cfg)
	other := newClient(t, cfg)
	servers := serverOf(f)
	ctx := context.Background()
	res := []string{"aon-a", "aon-b", "aon-c", "aon-d", "aon-e", "aon-f", "aon-g"}
	busy, err := other.Lock(ctx, "aon-d", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Lock returns at quorum: let its SET land on the master it did not
	// wait for, or LockAll's may get there first (and the check below
	// finds neither key on that master).
	var dMasters []*redisproc.Server
	for _, addr := range c.Route("aon-d") {
		dMasters = append(dMasters, servers[addr])
	}
	heldEverywhere(t, dMasters, busy)
	_, err = c.LockAll(ctx, res, 10*time.Second)
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("LockAll with a busy resource = %v, want ErrNotObtained", err)
	}
	t.Logf("LockAll with a busy resource: %v", err)
	for _, r := range res {
		for _, addr := range c.Route(r) {
			want := ""
			if r == "aon-d" {
				want = busy.Token()
			}
			eventually(t, 5*time.Second, r+" on "+addr, func() bool { return servers[addr].GetT(t, r) == want })
		}
	}
	// A cancelled LockAll leaves nothing behind either.
	if err := busy.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i)*40*time.Microsecond)
		m, err := c.LockAll(cctx, res, time.Minute)
		cancel()
		if err == nil {
			if err := m.Release(ctx); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, ErrNotObtained) {
			t.Fatalf("cancelled LockAll: %v", err)
		}
	}
	for _, r := range res {
		for _, addr := range c.Route(r) {
			eventually(t, 5*time.Second, r+" gone from "+addr, func() bool { return servers[addr].GetT(t, r) == "" })
		}
	}
}

// TestLockAllNoDeadlock: clients lock overlapping sets listed in opposite
// orders, over and over: all make progress, and no resource ever has two
// holders.
func TestLockAllNoDeadlock(t *testing.T) {
	f := fleet(t, 3, 1)
	cfg := clusterConfig(f)
	cfg.RetryStrategy = ExponentialBackoff(1000, time.Millisecond, 20*time.Millisecond)
	sets := [][]string{
		{"dl-1", "dl-2", "dl-3", "dl-4"},
		{"dl-4", "dl-3", "dl-2", "dl-1"},
		{"dl-3", "dl-1", "dl-5"},
		{"dl-5", "dl-2"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	holder := map[string]int{}
	var wg sync.WaitGroup
	var rounds [4]atomic.Int32
	for i, set := range sets {
		c := newClient(t, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				m, err := c.LockAll(ctx, set, 5*time.Second)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				mu.Lock()
				for _, r := range set {
					if h, ok := holder[r]; ok {
						t.Errorf("%s held by %d and %d", r, h, i)
					}
					holder[r] = i
				}
				mu.Unlock()
				time.Sleep(200 * time.Microsecond)
				mu.Lock()
				for _, r := range set {
					delete(holder, r)
				}
				mu.Unlock()
				if err := m.Release(ctx); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				rounds[i].Add(1)
			}
		}()
	}
	wg.Wait()
	for i := range rounds {
		if n := rounds[i].Load(); n != 25 {
			t.Errorf("client %d: %d of 25 rounds", i, n)
		}
	}
}

// TestLockAllInput: bad input is an InputError naming what is wrong.
func TestLockAllInput(t *testing.T) {
	f := fleet(t, 1, 1)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	for _, tc := range []struct {
		res  []string
		ttl  time.Duration
		want string
	}{
		{nil, time.Second, "resources: empty"},
		{[]string{"a", "b", "a"}, time.Second, `"a" is listed twice`},
		{[]string{"a", ""}, time.Second, "resource: empty"},
		{[]string{"a"}, 0, "ttl"},
		{make([]string, MaxLockAll+1), time.Second, "more than MaxLockAll"},
	} {
		_, err := c.LockAll(ctx, tc.res, tc.ttl)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("LockAll(%d resources, %v) = %v; want an InputError with %q", len(tc.res), tc.ttl, err, tc.want)
		}
	}
}

// TestLockAllPartLost: a part's key is deleted behind the lock's back:
// Extend reports ErrNotHeld, Done is closed, and DoAll's context ends with
// ErrLockLost.
func TestLockAllPartLost(t *testing.T) {
	f := fleet(t, 3, 1)
	c := newClient(t, clusterConfig(f))
	servers := serverOf(f)
	ctx := context.Background()
	res := []string{"lost-a", "lost-b", "lost-c", "lost-d"}
	err := c.DoAll(ctx, res, 5*time.Second, func(ctx context.Context) error {
		for _, addr := range c.Route("lost-c") {
			if _, err := servers[addr].Do(ctx, "DEL", "lost-c"); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrNotHeld) {
		t.Errorf("DoAll whose part was deleted = %v; want the release's ErrNotHeld", err)
	}
	m, err := c.LockAll(ctx, res, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range c.Route("lost-b") {
		if _, err := servers[addr].Do(ctx, "DEL", "lost-b"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Extend(ctx, 5*time.Second); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Extend with a part gone = %v, want ErrNotHeld", err)
	}
	select {
	case <-m.Done():
	default:
		t.Error("Done not closed after Extend found a part gone")
	}
	if m.Valid() {
		t.Error("still Valid")
	}
	_ = m.Release(ctx)
	// Other keys of the set were not extended by the failed Extend, and
	// Release removed them.
	for _, r := range res {
		for _, addr := range c.Route(r) {
			eventually(t, 5*time.Second, r+" gone", func() bool { return servers[addr].GetT(t, r) == "" })
		}
	}
}
