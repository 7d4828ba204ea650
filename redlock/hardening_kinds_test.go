package redlock

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/redis/go-redis/v9"
)

// Issue 9's classes (items 4–7) across every lock kind: RWMutex readers and
// writers (with the writer's waiting mark), Semaphore permits, LockAll,
// fenced acquisitions, migration mode.

// anyLock is a lock of any kind, as these tests use it.
type anyLock interface {
	Extend(ctx context.Context, ttl time.Duration) error
	Release(ctx context.Context) error
}

// asAnyLock turns an acquisition's result into a anyLock (nil on error, not
// a typed nil).
func asAnyLock[T anyLock](l T, err error) (anyLock, error) {
	if err != nil {
		return nil, err
	}
	return l, nil
}

type acquireFn func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error)

// lockCase is one kind of lock: the keys it leaves on a master, the lock
// held before a fault (hold), and the acquisitions tried during it on the
// same resource — one attempt (try) and the blocking form (block).
type lockCase struct {
	name             string
	keys             func(c *Client, res string) []string
	hold, try, block acquireFn
}

func rwKeys(c *Client, res string) []string {
	p := c.s.KeyPrefix + res
	return []string{p + ":rw:writer", p + ":rw:readers", p + ":rw:waiting"}
}

func multiSet(res string) []string { return []string{res + ".a", res + ".b"} }

func twoPermits(c *Client, res string) *Semaphore {
	s, err := c.Semaphore(res, 2)
	if err != nil {
		panic(err) // a valid resource and permit count
	}
	return s
}

const behindReader = "writer behind a reader"

// lockCases are every kind. "writer behind a reader" holds a reader's
// share while writers try: a blocking writer leaves its waiting mark.
func lockCases() []lockCase {
	plainKeys := func(c *Client, res string) []string { return []string{c.s.KeyPrefix + res} }
	lock := func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
		return asAnyLock(c.Lock(ctx, res, ttl))
	}
	tryLock := func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
		return asAnyLock(c.TryLock(ctx, res, ttl))
	}
	rlock := func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
		return asAnyLock(c.RWMutex(res).RLock(ctx, ttl))
	}
	wlock := func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
		return asAnyLock(c.RWMutex(res).Lock(ctx, ttl))
	}
	tryW := func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
		return asAnyLock(c.RWMutex(res).TryLock(ctx, ttl))
	}
	return []lockCase{
		{name: "lock", keys: plainKeys, hold: lock, try: tryLock, block: lock},
		{name: "await", keys: plainKeys, hold: lock, try: tryLock,
			block: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(c.Await(ctx, res, ttl))
			}},
		{name: "reader", keys: rwKeys, hold: rlock, block: rlock,
			try: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(c.RWMutex(res).TryRLock(ctx, ttl))
			}},
		{name: "writer", keys: rwKeys, hold: wlock, try: tryW, block: wlock},
		{name: behindReader, keys: rwKeys, hold: rlock, try: tryW, block: wlock},
		{name: "permit", keys: func(c *Client, res string) []string { return []string{c.s.KeyPrefix + res + ":sem:holders"} },
			hold: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(twoPermits(c, res).Acquire(ctx, ttl))
			},
			try: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(twoPermits(c, res).TryAcquire(ctx, ttl))
			},
			block: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(twoPermits(c, res).Acquire(ctx, ttl))
			}},
		{name: "lockall",
			keys: func(c *Client, res string) []string {
				set := multiSet(res)
				return []string{c.s.KeyPrefix + set[0], c.s.KeyPrefix + set[1]}
			},
			hold: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(c.LockAll(ctx, multiSet(res), ttl))
			},
			try: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(c.lockAll(ctx, multiSet(res), ttl, true))
			},
			block: func(ctx context.Context, c *Client, res string, ttl time.Duration) (anyLock, error) {
				return asAnyLock(c.LockAll(ctx, multiSet(res), ttl))
			}},
	}
}

// liveScript counts the keys that still hold something: a string (a lock
// key, a writer, a waiting mark) or a sorted set with a member that has not
// expired on this master's clock (a reader's share, a permit).
const liveScript = `local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for i = 1, #KEYS do
  local ty = redis.call("type", KEYS[i]).ok
  if ty == "string" then n = n + 1
  elseif ty == "zset" and redis.call("zcount", KEYS[i], "(" .. now, "+inf") > 0 then n = n + 1 end
end
return n`

// liveOn is the number of keys that still hold something on master rc (-1
// while it does not answer).
func liveOn(rc *redis.Client, keys []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	n, err := rc.Eval(ctx, liveScript, keys).Int()
	if err != nil {
		return -1
	}
	return n
}

// leftHeld names the kinds (and masters) where something is still held.
func leftHeld(rcs []*redis.Client, keys map[string][]string) string {
	var left []string
	for name, ks := range keys {
		for i, rc := range rcs {
			if liveOn(rc, ks) != 0 {
				left = append(left, name+" on master "+itoa(i))
			}
		}
	}
	return strings.Join(left, ", ")
}

// waitNothingHeld fails the test unless, within d, no master holds any of
// keys (by kind).
func waitNothingHeld(t *testing.T, rcs []*redis.Client, keys map[string][]string, d time.Duration, why string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		left := leftHeld(rcs, keys)
		if left == "" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still held after %v: %s", why, d, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kindClients are a plain client and a fenced one on the same fleet: every
// kind is tried in both forms (fenced acquisitions run their own scripts).
func kindClients(t *testing.T, f [][]*redisproc.Server, tune func(*Config)) map[string]*Client {
	t.Helper()
	out := make(map[string]*Client, 2)
	for _, fenced := range []bool{false, true} {
		cfg := clusterConfig(f)
		cfg.Fencing = fenced
		cfg.ReconnectInterval = 50 * time.Millisecond
		cfg.RetryStrategy = LinearBackoff(1000, 20*time.Millisecond)
		tune(&cfg)
		name := "plain"
		if fenced {
			name = "fenced"
		}
		out[name] = newClient(t, cfg)
	}
	return out
}

// faultRun is every kind, plain and fenced, on one fleet: a lock of each
// held before a fault, and the keys to check afterwards.
type faultRun struct {
	cases   []lockCase
	clients map[string]*Client
	held    map[string]anyLock  // by kind name
	keys    map[string][]string // by kind name
}

func resOf(cl, kind string) string { return "hk-" + cl + "-" + strings.ReplaceAll(kind, " ", "-") }

func newFaultRun(t *testing.T, clients map[string]*Client, holdTTL func(lc lockCase) time.Duration) *faultRun {
	t.Helper()
	fr := &faultRun{cases: lockCases(), clients: clients, held: map[string]anyLock{}, keys: map[string][]string{}}
	for cn, c := range clients {
		for _, lc := range fr.cases {
			name := cn + "/" + lc.name
			h, err := lc.hold(context.Background(), c, resOf(cn, lc.name), holdTTL(lc))
			if err != nil {
				t.Fatalf("%s: hold: %v", name, err)
			}
			fr.held[name] = h
			fr.keys[name] = lc.keys(c, resOf(cn, lc.name))
		}
	}
	return fr
}

// each runs op for every kind of every client, all at once, and waits.
func (fr *faultRun) each(op func(name string, c *Client, lc lockCase, res string, h anyLock)) {
	var wg sync.WaitGroup
	for cn, c := range fr.clients {
		for _, lc := range fr.cases {
			name := cn + "/" + lc.name
			wg.Go(func() { op(name, c, lc, resOf(cn, lc.name), fr.held[name]) })
		}
	}
	wg.Wait()
}

// TestOneMasterCtxEveryKind (issue 9, item 7, every kind): against a
// one-master group whose master is stopped (SIGSTOP), every call of every
// kind — plain and fenced acquisitions, blocking and not, Await, Extend,
// Release, IsLocked — returns once its 100 ms ctx ends, long before the
// 5 s NodeTimeout; and what those calls may have left on the master
// (their SETs run when it resumes) is cleaned up long before the 30 s TTL.
func TestOneMasterCtxEveryKind(t *testing.T) {
	f := fleet(t, 1, 1)
	clients := kindClients(t, f, func(cfg *Config) { cfg.NodeTimeout = 5 * time.Second })
	const ttl = 30 * time.Second
	fr := newFaultRun(t, clients, func(lockCase) time.Duration { return ttl })
	s := f[0][0]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Resume() }()
	bound := 5 * time.Second / 2 // far above the 100 ms ctx, far below NodeTimeout
	var mu sync.Mutex
	var failures []string
	timed := func(name, what string, op func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := op(ctx)
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case took > bound:
			failures = append(failures, name+" "+what+" took "+took.String()+" (ctx 100ms, NodeTimeout 5s)")
		case !errors.Is(err, context.DeadlineExceeded):
			failures = append(failures, name+" "+what+" = "+errString(err)+"; want the ctx error joined")
		}
	}
	fr.each(func(name string, c *Client, lc lockCase, res string, h anyLock) {
		acq := func(fn acquireFn) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				l, err := fn(ctx, c, res, ttl)
				if err == nil {
					_ = l.Release(context.Background())
					return errors.New("obtained against a stopped master")
				}
				return err
			}
		}
		// One after another on one resource, as an application would: the
		// master gets them all, in this order, when it resumes.
		timed(name, "try", acq(lc.try))
		timed(name, "block", acq(lc.block))
		timed(name, "IsLocked", func(ctx context.Context) error { _, err := c.IsLocked(ctx, res); return err })
		timed(name, "Extend", func(ctx context.Context) error { return h.Extend(ctx, ttl) })
		timed(name, "Release", h.Release)
	})
	if len(failures) > 0 {
		t.Fatalf("%d calls ignored their ctx:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	// Stopped for longer than ReleaseTimeout (1 s): the cleanups waiting
	// behind the commands the master holds are past their deadline when
	// it resumes, and must be sent all the same.
	time.Sleep(clients["plain"].s.ReleaseTimeout + 500*time.Millisecond)
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	took := waitNothingHeld(t, raws(t, f[0]), fr.keys, 20*time.Second, "after the master resumed (TTL 30s)")
	t.Logf("nothing held %v after resume (TTL %v)", took.Round(time.Millisecond), ttl)
}

// attemptDuring runs, for every kind, the blocking form and one attempt on
// the held lock's resource, each with a ctx of d, then the held lock's
// Release (ctx d): all against masters that do not answer in time. None
// may obtain a lock; what they may have left is cleaned up later.
func (fr *faultRun) attemptDuring(t *testing.T, ttl, d time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var obtained []string
	fr.each(func(name string, c *Client, lc lockCase, res string, h anyLock) {
		// The blocking form first: a master that stops answering is marked
		// down after NodeTimeout and gets nothing more, so only the first
		// commands reach a stopped master — the blocking writer's too,
		// which leaves its waiting mark there.
		for _, fn := range []acquireFn{lc.block, lc.try} {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			if l, err := fn(ctx, c, res, ttl); err == nil {
				mu.Lock()
				obtained = append(obtained, name)
				mu.Unlock()
				_ = l.Release(context.Background())
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_ = h.Release(ctx)
		cancel()
	})
	if len(obtained) > 0 {
		t.Fatalf("obtained while the lock was held and the masters did not answer: %v", obtained)
	}
}

// TestKeptReleasesEveryKindAfterLongPause (issue 9, item 6, every kind): a
// majority paused — SIGSTOP, CLIENT PAUSE ALL, CLIENT PAUSE WRITE — for
// longer than the TTL while every kind's attempts, blocking acquisitions
// (a writer's waiting mark among them) and releases are in flight. The
// paused masters apply what they held when they resume, with a fresh TTL;
// every release they missed — cleanups, the writer's mark lift, the held
// locks' releases, plain and fenced — must reach them then, so nothing
// stays held for that TTL. (A stopped process runs the commands buffered on
// a connection the client has closed; a server in CLIENT PAUSE notices the
// close and drops them: there, the releases that were held or kept are
// what must land. Only SIGSTOP failed before the mark lift was kept.)
func TestKeptReleasesEveryKindAfterLongPause(t *testing.T) {
	const ttl = 4 * time.Second
	long := keyLife(ttl, DefaultDriftFactor) + 2*time.Second // the TTL, and the second of calls before it
	for _, pause := range []struct {
		name   string
		pause  func(t *testing.T, s *redisproc.Server)
		resume func(t *testing.T, s *redisproc.Server)
	}{
		{"SIGSTOP",
			func(t *testing.T, s *redisproc.Server) {
				if err := s.Pause(); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, s *redisproc.Server) {
				if err := s.Resume(); err != nil {
					t.Fatal(err)
				}
			}},
		{"CLIENT PAUSE ALL", func(t *testing.T, s *redisproc.Server) { clientPause(t, s, long, "ALL") }, nil},
		{"CLIENT PAUSE WRITE", func(t *testing.T, s *redisproc.Server) { clientPause(t, s, long, "WRITE") }, nil},
	} {
		t.Run(pause.name, func(t *testing.T) {
			t.Parallel() // a fleet each: the pauses overlap
			f := fleet(t, 1, 3)
			clients := kindClients(t, f, func(cfg *Config) {
				cfg.NodeTimeout = 300 * time.Millisecond
				cfg.DialTimeout = 300 * time.Millisecond
			})
			// The held locks expire during the pause, so the attempts' SETs
			// land when the masters resume — except the reader a writer
			// waits behind: its share outlives the pause (its release is
			// kept too), so the writer's script, applied then, leaves its
			// waiting mark.
			fr := newFaultRun(t, clients, func(lc lockCase) time.Duration {
				if lc.name == behindReader {
					return 30 * time.Second
				}
				return ttl
			})
			paused := f[0][1:]
			start := time.Now()
			for _, s := range paused {
				pause.pause(t, s)
			}
			if pause.resume != nil {
				defer func() {
					for _, s := range paused {
						_ = s.Resume()
					}
				}()
			}
			fr.attemptDuring(t, ttl, time.Second)
			time.Sleep(time.Until(start.Add(long)))
			if pause.resume != nil {
				for _, s := range paused {
					pause.resume(t, s)
				}
			}
			took := waitNothingHeld(t, raws(t, f[0]), fr.keys, ttl*7/10, "after the majority resumed")
			t.Logf("nothing held %v after resume (TTL %v)", took.Round(time.Millisecond), ttl)
		})
	}
}

// clientPause holds s's commands of mode (ALL, WRITE) for d.
func clientPause(t *testing.T, s *redisproc.Server, d time.Duration, mode string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v, err := s.Do(ctx, "CLIENT", "PAUSE", itoa(int(d.Milliseconds())), mode); err != nil || v != "+OK" {
		t.Fatalf("CLIENT PAUSE %s on %s: %q %v", mode, s.Addr(), v, err)
	}
}

// TestCleanupsBehindTheirSetEveryKind (issue 9, item 5, every kind): with
// NodeTimeout (5 s) above ReleaseTimeout (1 s), every master holds
// commands (CLIENT PAUSE ALL, 2 s) while every kind's attempts are
// cancelled (100 ms ctx) and the held locks released. The cleanups — the
// writer's mark lift among them — wait in the queue behind the SETs they
// undo, past their own deadline; they must be sent after them, not
// answered "not sent", or the keys block the resource for the 30 s TTL.
func TestCleanupsBehindTheirSetEveryKind(t *testing.T) {
	f := fleet(t, 1, 3)
	clients := kindClients(t, f, func(cfg *Config) { cfg.NodeTimeout = 5 * time.Second })
	const ttl = 30 * time.Second
	fr := newFaultRun(t, clients, func(lockCase) time.Duration { return ttl })
	for _, s := range f[0] {
		pauseCommands(t, s, 2*time.Second)
	}
	fr.attemptDuring(t, ttl, 100*time.Millisecond)
	took := waitNothingHeld(t, raws(t, f[0]), fr.keys, 15*time.Second, "after the pause (TTL 30s)")
	t.Logf("nothing held %v after the last call (TTL %v)", took.Round(time.Millisecond), ttl)
}

// TestMigrationOneServerOneVote (issue 9, item 4, migration mode): a master
// in both rings is one node whatever its spelling in each — one
// connection pool, one vote, one group when the group's masters are the
// same — and one server reached under a name the text cannot unify
// across the rings (a DNS alias) is refused by New, naming both.
func TestMigrationOneServerOneVote(t *testing.T) {
	s := fleet(t, 1, 4)[0]
	mapped := func(srv *redisproc.Server) string { return "[::ffff:127.0.0.1]:" + itoa(srv.Port()) }
	expanded := func(srv *redisproc.Server) string {
		return "redis://[0:0:0:0:0:ffff:7f00:1]:" + itoa(srv.Port()) + "/0"
	}
	plain := redisproc.Addrs(s[:3])

	t.Run("same group respelled is not a ring change", func(t *testing.T) {
		prev := [][]string{{mapped(s[2]), expanded(s[0]), s[1].Addr()}}
		plan, err := PlanRingChange(prev, [][]string{plain})
		if err != nil || plan.Moved != 0 {
			t.Fatalf("PlanRingChange(respelled) = %+v, %v; want nothing moved", plan, err)
		}
		c := newClient(t, Config{Servers: plain, Previous: prev, NodeTimeout: time.Second, RetryStrategy: NoRetry()})
		if len(c.nodes) != 3 || c.prevGroups[0] != c.groups[0] {
			t.Fatalf("%d nodes, previous group shared: %v; want 3 nodes and one group", len(c.nodes), c.prevGroups[0] == c.groups[0])
		}
		// Nothing moves: the kinds migration mode refuses for a moved
		// resource work, and a plain lock is one key per server.
		ctx := context.Background()
		r, err := c.RWMutex("mig-respelled").RLock(ctx, 10*time.Second)
		if err != nil {
			t.Fatalf("RLock with a respelled Previous: %v", err)
		}
		_ = r.Release(ctx)
		l, err := c.Lock(ctx, "mig-respelled", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l.prev != nil {
			t.Fatal("a lock on a respelled group is held on a \"previous\" group too")
		}
		_ = l.Release(ctx)
	})

	t.Run("a master in both rings is one node", func(t *testing.T) {
		// Old group {A, B, C} written with mapped spellings; the new
		// group {A, B, D}: A and B are in both rings.
		prev := [][]string{{mapped(s[0]), expanded(s[1]), s[2].Addr()}}
		c := newClient(t, Config{Servers: []string{s[0].Addr(), s[1].Addr(), s[3].Addr()}, Previous: prev,
			NodeTimeout: time.Second, RetryStrategy: NoRetry()})
		if len(c.nodes) != 4 {
			t.Fatalf("%d nodes for 4 servers: a master in both rings counted twice", len(c.nodes))
		}
		g, pg := c.groups[0], c.prevGroups[0]
		for i := range 2 {
			if g.nodes[i] != pg.nodes[i] {
				t.Fatalf("master %d of both rings has two nodes (%q, %q)", i, g.addrs[i], pg.addrs[i])
			}
		}
		ctx := context.Background()
		// Every resource of the group moves ({A,B,C} → {A,B,D}): each
		// is locked on both groups, and A and B are in both. Their one
		// key votes in both groups: locks and releases succeed — fenced
		// too, with fences that grow.
		fc := newClient(t, Config{Servers: []string{s[0].Addr(), s[1].Addr(), s[3].Addr()}, Previous: prev,
			NodeTimeout: time.Second, RetryStrategy: NoRetry(), Fencing: true})
		for name, cl := range map[string]*Client{"plain": c, "fenced": fc} {
			var fence int64
			for range 10 {
				res := "mig-cycle" // one resource: its fences grow
				l, err := cl.TryLock(ctx, res, 10*time.Second)
				if err != nil {
					t.Fatalf("%s TryLock %s of a moved resource, nobody else holding it: %v", name, res, err)
				}
				if name == "fenced" && l.Fence() <= fence {
					t.Fatalf("fence %d after %d of the same resource", l.Fence(), fence)
				}
				fence = l.Fence()
				if err := l.Extend(ctx, 10*time.Second); err != nil {
					t.Fatalf("%s Extend %s: %v", name, res, err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatalf("%s Release %s: %v", name, res, err)
				}
			}
		}
		l, err := c.Lock(ctx, "mig-shared", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Release(ctx) }()
		// A client on either ring alone is excluded.
		for name, cfg := range map[string]Config{
			"old": {Servers: prev[0], NodeTimeout: time.Second, RetryStrategy: NoRetry()},
			"new": {Servers: []string{s[0].Addr(), s[1].Addr(), s[3].Addr()}, NodeTimeout: time.Second, RetryStrategy: NoRetry()},
		} {
			o := newClient(t, cfg)
			if l2, err := o.TryLock(ctx, "mig-shared", 10*time.Second); !errors.Is(err, ErrNotObtained) {
				if err == nil {
					_ = l2.Release(ctx)
				}
				t.Fatalf("a client on the %s ring alone: TryLock = %v; want ErrNotObtained", name, err)
			}
		}
	})

	t.Run("a DNS alias across the rings is refused", func(t *testing.T) {
		prev := [][]string{{"localhost:" + itoa(s[0].Port()), s[1].Addr(), s[2].Addr()}}
		c, err := New(Config{Servers: plain, Previous: prev, NodeTimeout: time.Second, Logger: quietLogger})
		if err == nil {
			_ = c.Close()
			t.Fatal("New accepted localhost and 127.0.0.1 for one server in the two rings: one process, two votes")
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "Previous[0][0]") || !strings.Contains(err.Error(), "Servers[0]") {
			t.Fatalf("New = %v; want a ConfigError naming Previous[0][0] and Servers[0]", err)
		}
	})
}

// TestKeptMultiReleaseBehindNoScript (items 5–6, NOSCRIPT): a MultiLock's
// kept release is kept as one single-key release per key, all with the
// lock's token, and flushed together: one pipeline. When the master does
// not know the release script (SCRIPT FLUSH), only the last of a token's
// commands in a pipeline is sent again as EVAL (an earlier one would land
// after it); the others were not applied — a release among them must be
// kept and retried, not answered NOSCRIPT and dropped, leaving its key for
// the whole TTL.
func TestKeptMultiReleaseBehindNoScript(t *testing.T) {
	f := fleet(t, 1, 1)
	s := f[0][0]
	cfg := clusterConfig(f)
	cfg.PoolSize = 1
	cfg.NodeTimeout = 5 * time.Second
	cfg.ReconnectInterval = 50 * time.Millisecond
	c := newClient(t, cfg)
	nd := c.groups[0].nodes[0]
	ctx := context.Background()
	const token = "multi-token"
	keys := []string{"nsk-a", "nsk-b", "nsk-c"}
	for _, k := range keys {
		if v, err := s.Do(ctx, "SET", k, token, "PX", "60000"); err != nil || v != "+OK" {
			t.Fatalf("SET %s: %q %v", k, v, err)
		}
	}
	if v, err := s.Do(ctx, "SCRIPT", "FLUSH"); err != nil || v != "+OK" {
		t.Fatalf("SCRIPT FLUSH: %q %v", v, err)
	}
	// The writer waits on a held command while the kept releases queue
	// behind it: they go out as one pipeline.
	pauseCommands(t, s, time.Second)
	out := make(chan reply, 1)
	blocker := request{op: opExists, key: "nsk-blocker", timeout: 10 * time.Second}
	bl := blocker.call(0, newCmdArgs(blocker.key, ""), time.Now().Add(blocker.timeout), out)
	nd.submit(&bl, 0, false)
	time.Sleep(100 * time.Millisecond) // the writer took it (a failed wait only batches it with the releases)
	rel := request{op: opMultiRelease, key: keys[0], keys: keys, token: token, keepMask: 1, keepFor: time.Minute}
	cl := rel.call(0, &cmdArgs{key: keys[0], token: token, keys: keys}, time.Now(), make(chan reply, 1))
	nd.keepRelease(&cl)
	nd.flushKept()
	eventually(t, 20*time.Second, "every key of the kept release deleted (TTL 60s)", func() bool {
		for _, k := range keys {
			if !absentOn(s, k) {
				return false
			}
		}
		return true
	})
}

// TestMigrationKeptReleasesAfterLongPause (items 4 and 6, migration mode):
// a group changes one master ({A,B,C} → {A,B,D}), so every resource is
// locked on both groups, and A and B are in both. With A and B stopped
// for longer than the TTL while attempts, a blocking Lock and a release
// are in flight, the releases they miss — kept for both groups, sent once
// per server — reach them when they resume: nothing stays held.
func TestMigrationKeptReleasesAfterLongPause(t *testing.T) {
	s := fleet(t, 1, 4)[0]
	const ttl = 4 * time.Second
	clients := map[string]*Client{}
	for _, fenced := range []bool{false, true} {
		cfg := Config{Servers: []string{s[0].Addr(), s[1].Addr(), s[3].Addr()}, Previous: [][]string{redisproc.Addrs(s[:3])},
			Fencing: fenced, NodeTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond,
			ReconnectInterval: 50 * time.Millisecond, RetryStrategy: LinearBackoff(1000, 20*time.Millisecond)}
		name := map[bool]string{false: "plain", true: "fenced"}[fenced]
		clients[name] = newClient(t, cfg)
	}
	ctx := context.Background()
	keys := map[string][]string{}
	held := map[string]*Lock{}
	for name, c := range clients {
		l, err := c.Lock(ctx, "migp-held-"+name, 30*time.Second) // outlives the pause: its release must land
		if err != nil {
			t.Fatal(err)
		}
		held[name] = l
		keys[name] = []string{c.s.KeyPrefix + "migp-held-" + name, c.s.KeyPrefix + "migp-try-" + name}
	}
	paused := s[:2]
	for _, srv := range paused {
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, srv := range paused {
			_ = srv.Resume()
		}
	}()
	var wg sync.WaitGroup
	for name, c := range clients {
		wg.Go(func() {
			for _, try := range []bool{false, true} {
				actx, cancel := context.WithTimeout(ctx, time.Second)
				var l2 *Lock
				var err error
				if try {
					l2, err = c.TryLock(actx, "migp-try-"+name, ttl)
				} else {
					l2, err = c.Lock(actx, "migp-try-"+name, ttl)
				}
				cancel()
				if err == nil {
					_ = l2.Release(ctx)
					t.Errorf("%s: obtained with A and B stopped", name)
				}
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = held[name].Release(rctx)
			cancel()
		})
	}
	wg.Wait()
	time.Sleep(keyLife(ttl, clients["plain"].s.DriftFactor) + 500*time.Millisecond)
	for _, srv := range paused {
		if err := srv.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	took := waitNothingHeld(t, raws(t, s), keys, ttl*7/10, "after A and B resumed")
	t.Logf("nothing held %v after resume (TTL %v)", took.Round(time.Millisecond), ttl)
}

// TestMigrationOneKeyspacePerMaster (item 4, migration mode): a master in
// both rings is one node, connected with the new ring's address. Written
// with another database in Previous, its votes in the previous group would
// be taken in a keyspace the clients on the old ring do not use, and one
// server would grant the resource to both: New refuses it, naming both.
func TestMigrationOneKeyspacePerMaster(t *testing.T) {
	const a, b, c, d = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", "127.0.0.1:7004"
	for _, tc := range []struct{ prev, cur string }{
		{"redis://" + a + "/1", "redis://" + a + "/0"},
		{"redis://[::ffff:127.0.0.1]:7001/3", a},
	} {
		_, err := Config{Servers: []string{tc.cur, b, d}, Previous: [][]string{{tc.prev, b, c}}}.validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Previous[0][0]" || !strings.Contains(err.Error(), "Servers[0]") ||
			!strings.Contains(err.Error(), tc.prev) || !strings.Contains(err.Error(), "database") {
			t.Fatalf("Previous %q beside %q: %v; want a ConfigError on Previous[0][0] naming Servers[0] and the databases", tc.prev, tc.cur, err)
		}
	}
	// The same database, however written, is one master.
	if _, err := (Config{Servers: []string{"redis://" + a + "/0", b, d}, Previous: [][]string{{a, b, c}}}).validate(); err != nil {
		t.Fatalf("the same master in both rings, database 0 both times: %v", err)
	}
}

// TestReleaseTokenKeptForADownMaster (items 5–6, ReleaseToken): a lock
// handed over to another process is released there with ReleaseToken.
// A master marked down in that process when it releases (stopped) misses
// the release; the key it holds must be deleted when it answers again,
// as the holder's own Release would, not left for the 30 s TTL.
func TestReleaseTokenKeptForADownMaster(t *testing.T) {
	f := fleet(t, 1, 3)
	holder := newClient(t, clusterConfig(f))
	cfg := faultConfig(f)
	other := newClient(t, cfg)
	ctx := context.Background()
	l, err := holder.Lock(ctx, "handed-over", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	heldEverywhere(t, f[0], l)
	s := f[0][2]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Resume() }()
	eventually(t, 10*time.Second, "the stopped master marked down", func() bool {
		_, _ = other.IsLocked(ctx, "handed-over") // times out there, marking it down
		return !other.MasterStats()[2].Up
	})
	if err := other.ReleaseToken(ctx, "handed-over", l.Token()); err != nil {
		t.Fatalf("ReleaseToken with a majority up: %v", err)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the released key gone from the master that was down (TTL 30s)", func() bool { return absentOn(s, "handed-over") })
}
