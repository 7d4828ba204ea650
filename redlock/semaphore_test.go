package redlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// overbooked reports whether k+1 holders, each holding q of n masters,
// can coexist when every master grants at most k: whether a semaphore of
// k permits with quorum q can have k+1 holders. Exhaustive search.
func overbooked(n, k, q int) bool {
	var sets []int
	for m := 0; m < 1<<n; m++ {
		if popcount(m) == q {
			sets = append(sets, m)
		}
	}
	load := make([]int, n)
	var pick func(from, left int) bool
	pick = func(from, left int) bool {
		if left == 0 {
			return true
		}
		for i := from; i < len(sets); i++ {
			ok := true
			for b := 0; b < n; b++ {
				if sets[i]&(1<<b) != 0 && load[b] == k {
					ok = false
				}
			}
			if !ok {
				continue
			}
			for b := 0; b < n; b++ {
				if sets[i]&(1<<b) != 0 {
					load[b]++
				}
			}
			found := pick(i, left-1)
			for b := 0; b < n; b++ {
				if sets[i]&(1<<b) != 0 {
					load[b]--
				}
			}
			if found {
				return true
			}
		}
		return false
	}
	return pick(0, k+1)
}

func popcount(m int) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// TestSemaphoreQuorumFormula: SemaphoreQuorum is the least q for which no
// k+1 holders can coexist, checked exhaustively for small groups, and the
// README's table.
func TestSemaphoreQuorumFormula(t *testing.T) {
	for n := 1; n <= 6; n++ {
		for k := 1; k <= 5; k++ {
			q, err := SemaphoreQuorum(k, n)
			if err != nil {
				t.Fatal(err)
			}
			if q < 1 || q > n {
				t.Fatalf("N=%d k=%d: q=%d outside [1, N]", n, k, q)
			}
			if overbooked(n, k, q) {
				t.Errorf("N=%d k=%d: q=%d lets %d holders coexist", n, k, q, k+1)
			}
			if q > 1 && !overbooked(n, k, q-1) {
				t.Errorf("N=%d k=%d: q=%d is not the least safe quorum (%d is safe too)", n, k, q, q-1)
			}
			if (k+1)*q <= k*n {
				t.Errorf("N=%d k=%d: q=%d does not satisfy q > k·N/(k+1)", n, k, q)
			}
		}
	}
	// The table in the README: (N, k) → q, failures tolerated N − q.
	table := []struct{ n, k, q int }{
		{1, 1, 1}, {1, 5, 1},
		{3, 1, 2}, {3, 2, 3}, {3, 3, 3},
		{5, 1, 3}, {5, 2, 4}, {5, 3, 4}, {5, 4, 5}, {5, 10, 5},
		{7, 1, 4}, {7, 2, 5}, {7, 3, 6}, {7, 5, 6}, {7, 6, 7},
		{9, 2, 7}, {9, 3, 7}, {9, 4, 8},
	}
	for _, c := range table {
		if q, _ := SemaphoreQuorum(c.k, c.n); q != c.q {
			t.Errorf("SemaphoreQuorum(%d, %d) = %d, want %d", c.k, c.n, q, c.q)
		}
	}
	// Huge permits do not overflow.
	if q, _ := SemaphoreQuorum(int(^uint(0)>>1), 5); q != 5 {
		t.Errorf("SemaphoreQuorum(MaxInt, 5) = %d, want 5", q)
	}
	for _, bad := range [][2]int{{0, 3}, {-1, 3}, {2, 0}} {
		var ie *InputError
		if _, err := SemaphoreQuorum(bad[0], bad[1]); !errors.As(err, &ie) {
			t.Errorf("SemaphoreQuorum(%d, %d): %v, want an InputError", bad[0], bad[1], err)
		}
	}
}

// TestSemaphoreMajorityIsNotEnough is the counterexample on real servers:
// 3 masters, 2 permits, three clients each cut off from a different master
// (its address there is a closed port). With a plain majority (what the
// test forces by hand) all three hold at once — every master granted only
// 2, yet there are 3 holders of 2 permits. With q = 3 every one is refused.
func TestSemaphoreMajorityIsNotEnough(t *testing.T) {
	all := redisproc.StartT(t, 6, redisproc.Options{})
	m, dead := all[:3], all[3:]
	for _, d := range dead {
		_ = d.Close() // its port now refuses connections
	}
	groups := [][]string{
		{m[0].Addr(), m[1].Addr(), dead[0].Addr()}, // A reaches masters 0 and 1
		{dead[1].Addr(), m[1].Addr(), m[2].Addr()}, // B reaches 1 and 2
		{m[0].Addr(), dead[2].Addr(), m[2].Addr()}, // C reaches 0 and 2
	}
	ctx := context.Background()
	sems := make([]*Semaphore, 3)
	for i, g := range groups {
		c := newClient(t, Config{Servers: g, NodeTimeout: time.Second, RetryStrategy: NoRetry()})
		s, err := c.Semaphore("pair", 2)
		if err != nil {
			t.Fatal(err)
		}
		if s.Quorum() != 3 {
			t.Fatalf("3 masters, 2 permits: Quorum %d, want 3", s.Quorum())
		}
		sems[i] = s
	}
	ms := raws(t, m)

	// The real semaphore refuses all three: each reaches 2 masters, and 3
	// are needed (the attempt ends as soon as the unreachable one answers).
	for i, s := range sems {
		_, err := s.TryAcquire(ctx, 10*time.Second)
		var qe *QuorumError
		if !errors.Is(err, ErrNotObtained) || !errors.As(err, &qe) || qe.Quorum != 3 || len(qe.Failed()) != 1 {
			t.Fatalf("client %d with q=3: %v, want ErrNotObtained, 3 needed, 1 master failed", i, err)
		}
	}
	for i, c := range ms {
		eventually(t, 5*time.Second, "refused attempts cleaned up on master "+itoa(i), func() bool {
			return c.Exists(ctx, "pair:sem:holders").Val() == 0
		})
	}

	// What a plain majority would do: every client holds.
	var held []*Lock
	for i, s := range sems {
		majority := *s
		majority.s.need = 2
		l, err := majority.TryAcquire(ctx, 10*time.Second)
		if err != nil {
			t.Fatalf("client %d with a majority quorum: %v", i, err)
		}
		held = append(held, l)
	}
	valid := 0
	for _, l := range held {
		if l.Valid() {
			valid++
		}
	}
	for i, c := range ms {
		if n := c.ZCard(ctx, "pair:sem:holders").Val(); n != 2 {
			t.Fatalf("master %d granted %d permits, want 2 (each master stays within k)", i, n)
		}
	}
	if valid != 3 {
		t.Fatalf("%d majority holders valid, want 3 (the counterexample)", valid)
	}
	t.Logf("with a plain majority, %d holders of a 2-permit semaphore hold at once; each master granted 2", valid)
	for _, l := range held {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSemaphoreNeverMoreThanPermits: three clients (nine holders) contend
// for 2 permits on 5 masters (q = 4): never more than 2 hold within their
// validity, and 2 do hold at once.
func TestSemaphoreNeverMoreThanPermits(t *testing.T) {
	_, cfg := oneGroup(t, 5, clusterConfig, LinearBackoff(1000, 2*time.Millisecond))
	log := runPermitHolders(t, cfg, 2, "contend", 3*time.Second)
	log.check(t)
	if log.maxAtOnce['p'] != 2 {
		t.Fatalf("at most %d held at once, want 2", log.maxAtOnce['p'])
	}
}

// runPermitHolders runs 3 clients × 3 holders on a semaphore of permits
// permits for d (each holds ~3 ms), checking the holds.
func runPermitHolders(t *testing.T, cfg Config, permits int, resource string, d time.Duration) *holdLog {
	t.Helper()
	log := newHoldLog(permits)
	clients := []*Client{newClient(t, cfg), newClient(t, cfg), newClient(t, cfg)}
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := range 9 {
		s, err := clients[i%3].Semaphore(resource, permits)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for n := 0; n < 500 && time.Now().Before(deadline); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				l, err := s.Acquire(ctx, time.Second)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrNotObtained) {
						t.Errorf("Acquire: %v", err)
						return
					}
					continue
				}
				log.begin(l, 'p')
				time.Sleep(3 * time.Millisecond)
				log.end(l)
				_ = l.Release(context.Background())
			}
		})
	}
	wg.Wait()
	t.Logf("%d permits held, at most %d at once", log.holds['p'], log.maxAtOnce['p'])
	if log.holds['p'] == 0 {
		t.Fatal("no permit obtained")
	}
	return log
}

// TestSemaphoreMinorityFaults: 5 masters, 2 permits, q = 4 tolerates one
// failed master: with one paused (SIGSTOP), then one killed, permits are
// still obtained and never more than 2 hold.
func TestSemaphoreMinorityFaults(t *testing.T) {
	f, cfg := oneGroup(t, 5, faultConfig, LinearBackoff(1000, 2*time.Millisecond))
	for _, fault := range []string{"pause", "kill"} {
		t.Run(fault, func(t *testing.T) {
			defer pauseOrKill(t, fault, f[0][4])()
			runPermitHolders(t, cfg, 2, "faults-"+fault, 3*time.Second).check(t)
		})
	}
}

// TestSemaphoreReleaseAndExtendNeedQ: with 3 masters and 2 permits (q = 3)
// and one master paused, a held permit can be neither extended nor
// released with confidence: both report the quorum they missed.
func TestSemaphoreReleaseAndExtendNeedQ(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	cfg.NodeTimeout = time.Second // q = 3: every master must answer the first Acquire and Extend
	c := newClient(t, cfg)
	ctx := context.Background()
	s, err := c.Semaphore("q", 2)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, 10*time.Second); err != nil {
		t.Fatalf("extend with every master up: %v", err)
	}
	if err := f[0][1].Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f[0][1].Resume() }()
	var qe *QuorumError
	if err := l.Extend(ctx, 10*time.Second); !errors.As(err, &qe) || qe.Quorum != 3 || qe.Yes() != 2 {
		t.Fatalf("extend on 2 of 3 masters: %v, want a QuorumError (2 yes, 3 needed)", err)
	}
	if err := l.Release(ctx); !errors.As(err, &qe) || qe.Quorum != 3 {
		t.Fatalf("release on 2 of 3 masters: %v, want a QuorumError (3 needed)", err)
	}
	// A majority semaphore would report both as done.
}

// TestSemaphoreHoldersExpireOnServerClock: a crashed holder's permit frees
// at its TTL by the masters' clocks; the other holder's is untouched.
func TestSemaphoreHoldersExpireOnServerClock(t *testing.T) {
	f, c := oneGroupClient(t, clusterConfig, LinearBackoff(10000, 20*time.Millisecond))
	ctx := context.Background()
	ms := raws(t, f[0])
	s, err := c.Semaphore("exp", 2)
	if err != nil {
		t.Fatal(err)
	}
	crashed, err := s.Acquire(ctx, 700*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	alive, err := s.Acquire(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	aliveScore, _ := zscore(t, ms[0], "exp:sem:holders", alive.Token())
	expiry, _ := zscore(t, ms[0], "exp:sem:holders", crashed.Token())
	if _, err := s.TryAcquire(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("third holder of 2 permits: %v, want ErrNotObtained", err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	third, err := s.Acquire(actx, time.Minute)
	if err != nil {
		t.Fatalf("after a holder crashed: %v", err)
	}
	if now := serverMs(t, ms[0]); now < expiry {
		t.Fatalf("a permit was freed at %d on master 0's clock, before its expiry %d", now, expiry)
	}
	if sc, ok := zscore(t, ms[0], "exp:sem:holders", alive.Token()); !ok || sc != aliveScore {
		t.Fatalf("the live holder's expiry moved: %d → %d (present %v)", aliveScore, sc, ok)
	}
	_ = third.Release(ctx)
	_ = alive.Release(ctx)
}

// TestSemaphorePermitsMismatch: clients must agree on permits; a different
// number is refused with ErrPermitsMismatch naming a master (not retried as
// busy) while holders live, and accepted once the semaphore is idle.
func TestSemaphorePermitsMismatch(t *testing.T) {
	f, cfg := oneGroup(t, 3, clusterConfig, LinearBackoff(100, 10*time.Millisecond))
	a, b := newClient(t, cfg), newClient(t, cfg)
	ctx := context.Background()
	s2, _ := a.Semaphore("k", 2)
	s3, _ := b.Semaphore("k", 3)
	l, err := s2.Acquire(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s3.Acquire(ctx, time.Second)
	if !errors.Is(err, ErrPermitsMismatch) || errors.Is(err, ErrNotObtained) {
		t.Fatalf("3 permits against live holders of 2: %v, want ErrPermitsMismatch", err)
	}
	if !containsAny(err.Error(), redisproc.Addrs(f[0])) {
		t.Fatalf("the error names no master: %v", err)
	}
	t.Logf("mismatch: %v (after %v)", err, time.Since(start))
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l3, err := s3.Acquire(ctx, time.Second)
	if err != nil {
		t.Fatalf("3 permits once the semaphore is idle: %v", err)
	}
	_ = l3.Release(ctx)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestSemaphoreDoAndBadInput: Do runs fn holding a permit and releases it;
// permits < 1 and bad resources are input errors.
func TestSemaphoreDoAndBadInput(t *testing.T) {
	_, c := oneGroupClient(t, clusterConfig, NoRetry())
	ctx := context.Background()
	s, err := c.Semaphore("do", 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Permits() != 1 || s.Quorum() != 2 || s.Resource() != "do" {
		t.Fatalf("Permits %d Quorum %d Resource %q", s.Permits(), s.Quorum(), s.Resource())
	}
	ran := false
	err = s.Do(ctx, 5*time.Second, func(ctx context.Context) error {
		ran = true
		if _, err := s.TryAcquire(ctx, time.Second); !errors.Is(err, ErrNotObtained) {
			return fmt.Errorf("second permit of 1: %w", err)
		}
		return nil
	}, WithAutoExtend())
	if err != nil || !ran {
		t.Fatalf("Do: %v (ran %v)", err, ran)
	}
	l, err := s.TryAcquire(ctx, time.Second)
	if err != nil {
		t.Fatalf("after Do: %v", err)
	}
	_ = l.Release(ctx)
	var ie *InputError
	for _, p := range []int{0, -3} {
		if _, err := c.Semaphore("x", p); !errors.As(err, &ie) || ie.Arg != "permits" {
			t.Fatalf("permits %d: %v, want an InputError on permits", p, err)
		}
	}
	if _, err := c.Semaphore("", 2); !errors.As(err, &ie) {
		t.Fatalf("empty resource: %v", err)
	}
}

// TestSemaphoreLateGrantOnAPausedMasterIsTakenBack: an Acquire whose
// script reaches a paused master fails (q = 3 of 3), but that master runs
// the script when it resumes — a late grant. The failed attempt's release
// is kept for it and sent when it answers again: the late permit is gone
// long before its one-minute TTL, and the semaphore is whole again.
func TestSemaphoreLateGrantOnAPausedMasterIsTakenBack(t *testing.T) {
	f, c := oneGroupClient(t, faultConfig, LinearBackoff(100, 20*time.Millisecond)) // the final Acquires wait for the master to be back up
	ctx := context.Background()
	s, err := c.Semaphore("late", 2)
	if err != nil {
		t.Fatal(err)
	}
	// Warm the connections, so the paused master gets the script itself
	// (not a dial that fails).
	if l, err := s.TryAcquire(ctx, time.Second); err != nil {
		t.Fatal(err)
	} else if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	paused := f[0][2]
	pc := raw(t, paused)
	zadds := func() int64 { // ZADD calls, from scripts too: grants on this master
		info := pc.Info(ctx, "commandstats").Val()
		_, rest, ok := strings.Cut(info, "cmdstat_zadd:calls=")
		if !ok {
			return 0
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		return n
	}
	before := zadds()
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = paused.Resume() }()
	if _, err := s.TryAcquire(ctx, time.Minute); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("acquire with a master paused (q = 3 of 3): %v, want ErrNotObtained", err)
	}
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "late grant taken back on the resumed master", func() bool {
		return pc.Exists(ctx, "late:sem:holders").Val() == 0
	})
	if n := zadds() - before; n != 1 {
		t.Fatalf("the resumed master ran %d grants, want the one late grant", n)
	}
	for range 2 {
		l, err := s.Acquire(ctx, time.Second)
		if err != nil {
			t.Fatalf("permits after the late grant was taken back: %v", err)
		}
		defer func() { _ = l.Release(ctx) }()
	}
}

// TestSemaphorePermitsMismatchOnAMinority: a master whose live holders use
// another permits refuses the attempt even when the other masters reach the
// quorum: the caller gets ErrPermitsMismatch (naming that master) and the
// grants it got elsewhere are taken back. (The other masters are held back
// with CLIENT PAUSE WRITE so that the refusal is seen before the quorum.)
func TestSemaphorePermitsMismatchOnAMinority(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 3 * time.Second
	cfg.RetryStrategy = NoRetry()
	c := newClient(t, cfg)
	ctx := context.Background()
	ms := raws(t, f[0])
	// A holder of a 2-permit semaphore on master 0 only, by its script.
	args := []any{"tok-k2", 60000, 2}
	if v, err := ms[0].EvalSha(ctx, semAcquireScript.sha.(string), []string{"mm:sem:holders", "mm:sem:permits"}, args...).Int(); err != nil {
		if v, err = ms[0].Eval(ctx, semAcquireScript.src, []string{"mm:sem:holders", "mm:sem:permits"}, args...).Int(); err != nil || v != 1 {
			t.Fatalf("placing a k=2 holder: %v %v", v, err)
		}
	} else if v != 1 {
		t.Fatalf("placing a k=2 holder: %v", v)
	}
	s, err := c.Semaphore("mm", 1) // q = 2 of 3: masters 1 and 2 suffice
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range f[0][1:] {
		if _, err := srv.Do(ctx, "CLIENT", "PAUSE", "500", "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.TryAcquire(ctx, time.Minute)
	if !errors.Is(err, ErrPermitsMismatch) || errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), f[0][0].Addr()) {
		t.Fatalf("k=1 against a k=2 holder on one master of 3: %v, want ErrPermitsMismatch naming %s", err, f[0][0].Addr())
	}
	for i, mc := range ms[1:] {
		eventually(t, 10*time.Second, "grant taken back on master "+itoa(i+1), func() bool {
			return mc.Exists(ctx, "mm:sem:holders").Val() == 0
		})
	}
}
