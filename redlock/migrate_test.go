package redlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

func TestPreviousValidated(t *testing.T) {
	ok := [][]string{{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}}
	for _, tc := range []struct {
		prev  [][]string
		field string
	}{
		{[][]string{{}}, "Previous[0]"},
		{[][]string{ok[0], {"127.0.0.1:4", "127.0.0.1:5"}}, "Previous[1]"},
		{[][]string{{"127.0.0.1:4", "bad host:x", "127.0.0.1:6"}}, "Previous[0][1]"},
		{[][]string{{"127.0.0.1:4"}, {"127.0.0.1:4"}}, "Previous[1][0]"},
	} {
		_, err := Config{Cluster: ok, Previous: tc.prev}.validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Previous %v: %v, want a ConfigError on %s", tc.prev, err, tc.field)
		}
	}
	// A master may be in both fleets (groups that do not change).
	if _, err := (Config{Servers: ok[0], Previous: ok}).validate(); err != nil {
		t.Fatal(err)
	}
	if s := (Config{Servers: ok[0], Previous: [][]string{{"redis://:secret@127.0.0.1:9"}}}).String(); !containsAll(s, "Previous:", "xxxxx") || containsAll(s, "secret") {
		t.Fatalf("String: %s", s)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// groupsOf builds n groups of 3 fake addresses (the plan contacts nobody).
func groupsOf(n, first int) [][]string {
	out := make([][]string, n)
	for g := range out {
		for m := range 3 {
			out[g] = append(out[g], fmt.Sprintf("10.0.%d.%d:6379", (first+g)/200, (first+g)%200*3+m))
		}
	}
	return out
}

func TestPlanRingChange(t *testing.T) {
	old := groupsOf(4, 0)
	// No change, whatever the order of groups and masters: nothing moves.
	shuffled := [][]string{old[2], old[0], {old[3][2], old[3][0], old[3][1]}, old[1]}
	p, err := PlanRingChange(old, shuffled)
	if err != nil || p.Moved != 0 || len(p.Moves) != 0 || !p.Exact {
		t.Fatalf("same fleet: %+v, %v", p, err)
	}
	// Adding a fifth group moves about a fifth, almost all to the new group
	// (bounded loads move a little between the others too).
	p, err = PlanRingChange(old, append(slices.Clone(old), groupsOf(1, 4)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if p.Moved < 0.15 || p.Moved > 0.3 || !p.Exact {
		t.Fatalf("adding a group to 4 moved %.3f", p.Moved)
	}
	sum, toNew := 0.0, 0.0
	for _, m := range p.Moves {
		if m.To == 4 {
			toNew += m.Share
		}
		sum += m.Share
	}
	if toNew < 0.15 || toNew < 0.8*p.Moved {
		t.Fatalf("%.3f of %.3f moved to the new group: %+v", toNew, p.Moved, p.Moves)
	}
	if math.Abs(sum-p.Moved) > 1e-9 {
		t.Fatalf("moves sum to %v, Moved %v", sum, p.Moved)
	}
	// Replacing one master changes its group's identity: its whole share moves.
	changed := slices.Clone(old)
	changed[1] = []string{old[1][0], old[1][1], "10.9.9.9:6379"}
	p, err = PlanRingChange(old, changed)
	if err != nil || p.Moved < 0.15 {
		t.Fatalf("replacing a master: %+v, %v", p, err)
	}
	// From one group to a cluster, and across the partition-count boundary (estimated).
	if p, err = PlanRingChange(old[:1], old); err != nil || p.Moved < 0.6 || p.Moved > 0.9 {
		t.Fatalf("one group to four: %+v, %v", p, err)
	}
	// Rings of different partition counts (past 1024 groups): the share is
	// estimated. Partitions 3 and 5: the exact share is counted over 15.
	a := &ring{owner: []int32{0, 1, 1}}
	b := &ring{owner: []int32{0, 0, 1, 1, 1}}
	exact := 0
	for h := range 15 {
		if a.ownerOf(uint64(h)) != b.ownerOf(uint64(h)) {
			exact++
		}
	}
	p = planRings([]string{"x", "y"}, []string{"x", "y"}, a, b)
	if p.Exact || math.Abs(p.Moved-float64(exact)/15) > 0.005 {
		t.Fatalf("estimated %v, exact %v", p.Moved, float64(exact)/15)
	}
	// Bad fleets name the field.
	var ce *ConfigError
	if _, err := PlanRingChange(old, [][]string{{"a:1", "b:1"}}); !errors.As(err, &ce) || ce.Field != "Cluster[0]" {
		t.Fatalf("even group: %v", err)
	}
	if _, err := PlanRingChange([][]string{{"x y"}}, old); !errors.As(err, &ce) || ce.Field != "Previous[0][0]" {
		t.Fatalf("bad address: %v", err)
	}
}

// migrationFleet is 3 groups of 3 masters: the old ring has the first two
// groups, the new ring all three.
type migrationFleet struct {
	f             [][]*redisproc.Server
	oldC, newC    [][]string
	old, mig, nu  *Client
	moved, stayed []string // resources whose group changes / does not
}

func newMigrationFleet(t *testing.T) *migrationFleet {
	t.Helper()
	m := &migrationFleet{f: fleet(t, 3, 3)}
	for i, g := range m.f {
		if i < 2 {
			m.oldC = append(m.oldC, redisproc.Addrs(g))
		}
		m.newC = append(m.newC, redisproc.Addrs(g))
	}
	m.old = newClient(t, Config{Cluster: m.oldC, NodeTimeout: time.Second})
	m.mig = newClient(t, Config{Cluster: m.newC, Previous: m.oldC, NodeTimeout: time.Second})
	m.nu = newClient(t, Config{Cluster: m.newC, NodeTimeout: time.Second})
	for i := 0; len(m.moved) < 6 || len(m.stayed) < 3; i++ {
		r := fmt.Sprintf("mig:%d", i)
		if _, pg, _ := m.mig.routeBoth(r); pg != nil {
			if len(m.moved) < 6 {
				m.moved = append(m.moved, r)
			}
		} else if len(m.stayed) < 3 {
			m.stayed = append(m.stayed, r)
		}
	}
	return m
}

// holders counts the masters of group g that have key.
func (m *migrationFleet) holders(t *testing.T, g int, key string) int {
	n := 0
	for _, s := range m.f[g] {
		if keyOn(t, s, key) != "" {
			n++
		}
	}
	return n
}

func (m *migrationFleet) groupOf(c *Client, r string) int {
	g, _ := c.route(r)
	return g.index
}

func TestMigrationLocksBothGroups(t *testing.T) {
	m := newMigrationFleet(t)
	ctx := context.Background()
	r := m.moved[0]
	og, ng := m.groupOf(m.old, r), m.groupOf(m.nu, r)
	if og == ng {
		t.Fatal("moved resource on the same group")
	}
	if got := m.mig.Route(r); !slices.Equal(got, m.newC[ng]) {
		t.Fatalf("Route = %v, want the new group %v", got, m.newC[ng])
	}

	// Without Previous, an old-ring and a new-ring client both get a moved
	// resource: the hazard migration mode exists for.
	lo, err := m.old.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := m.nu.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatalf("control: the new-ring client should get the moved resource the old-ring client holds: %v", err)
	}
	// The migrating client is refused by either holder.
	if _, err := m.mig.TryLock(ctx, r, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("migrating TryLock while both hold: %v", err)
	}
	_ = ln.Release(ctx)
	if _, err := m.mig.TryLock(ctx, r, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("migrating TryLock while the old-ring client holds: %v", err)
	}
	if locked, err := m.mig.IsLocked(ctx, r); err != nil || !locked {
		t.Fatalf("IsLocked while the old-ring client holds: %v %v", locked, err)
	}
	_ = lo.Release(ctx)

	// The migrating client holds it on a majority of both groups; both
	// single-ring clients are refused; Extend and Release act on both.
	l, err := m.mig.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.holders(t, og, r) < 2 || m.holders(t, ng, r) < 2 {
		t.Fatalf("held on %d old and %d new masters", m.holders(t, og, r), m.holders(t, ng, r))
	}
	for _, c := range []*Client{m.old, m.nu} {
		if _, err := c.TryLock(ctx, r, time.Second); !errors.Is(err, ErrNotObtained) {
			t.Fatalf("single-ring TryLock while the migrating client holds: %v", err)
		}
	}
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, g := range []int{og, ng} {
		extended := 0
		for _, s := range m.f[g] {
			if pttl, _ := s.Do(ctx, "PTTL", r); len(pttl) > 0 {
				if ms, err := strconv.Atoi(strings.TrimPrefix(pttl, ":")); err == nil && ms > 10000 {
					extended++
				}
			}
		}
		if extended < 2 {
			t.Fatalf("extended on %d masters of group %d", extended, g)
		}
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "keys gone on both groups", func() bool { return m.holders(t, og, r)+m.holders(t, ng, r) == 0 })

	// Lost on the old group only: Extend says so.
	l, err = m.mig.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.f[og] {
		_, _ = s.Do(ctx, "DEL", r)
	}
	if err := l.Extend(ctx, 10*time.Second); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Extend after the old group lost it: %v", err)
	}
	if err := l.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Release after the old group lost it: %v", err)
	}

	// ReleaseToken from the migrating client frees an old-ring holder's lock.
	lo, err = m.old.TryLock(ctx, r, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.mig.ReleaseToken(ctx, r, lo.Token()); err != nil {
		t.Fatalf("ReleaseToken of an old-ring lock: %v", err)
	}
	if err := m.mig.ReleaseToken(ctx, r, lo.Token()); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second ReleaseToken: %v", err)
	}

	// A resource that does not move is locked on its group only.
	s := m.stayed[0]
	ls, err := m.mig.TryLock(ctx, s, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ls.prev != nil {
		t.Fatal("an unmoved resource has a previous group")
	}
	for g := range m.f {
		if n := m.holders(t, g, s); (g == m.groupOf(m.nu, s)) != (n > 0) {
			t.Fatalf("unmoved resource: %d keys on group %d", n, g)
		}
	}
	_ = ls.Release(ctx)
}

// TestMigrationNoOverlap proves the two-step rollout under contention with
// real masters: at each step, the two kinds of client that can run at the
// same time never hold one resource together. An in-process slot per
// resource records the holder between TryLock and Release; finding it taken
// by a lock still valid is an overlap.
func TestMigrationNoOverlap(t *testing.T) {
	m := newMigrationFleet(t)
	resources := append(slices.Clone(m.moved), m.stayed...)
	for _, step := range []struct {
		name string
		a, b *Client
	}{
		{"step 1: old ring vs migrating", m.old, m.mig},
		{"step 2: migrating vs new ring", m.mig, m.nu},
	} {
		t.Run(step.name, func(t *testing.T) {
			var slots [64]atomic.Pointer[Lock]
			var overlaps, holds [2]atomic.Int64
			var wg sync.WaitGroup
			deadline := time.Now().Add(20 * time.Second)
			for w := range 8 {
				c, side := step.a, 0
				if w%2 == 1 {
					c, side = step.b, 1
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					ctx := context.Background()
					for i := 0; i < 300 && time.Now().Before(deadline); i++ {
						ri := rng.IntN(len(resources))
						l, err := c.TryLock(ctx, resources[ri], 10*time.Second)
						if err != nil {
							if !errors.Is(err, ErrNotObtained) {
								t.Errorf("TryLock: %v", err)
								return
							}
							continue
						}
						if !slots[ri].CompareAndSwap(nil, l) {
							if other := slots[ri].Load(); other != nil && other.Valid() {
								overlaps[side].Add(1)
							}
						} else {
							holds[side].Add(1)
							time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
							slots[ri].CompareAndSwap(l, nil)
						}
						if err := l.Release(ctx); err != nil {
							t.Errorf("Release: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("holds %d / %d, overlaps %d / %d", holds[0].Load(), holds[1].Load(), overlaps[0].Load(), overlaps[1].Load())
			if overlaps[0].Load()+overlaps[1].Load() != 0 {
				t.Fatalf("%d overlapping holds", overlaps[0].Load()+overlaps[1].Load())
			}
			if holds[0].Load() == 0 || holds[1].Load() == 0 {
				t.Fatalf("one side never held a lock: %d / %d", holds[0].Load(), holds[1].Load())
			}
		})
	}
}
