package redlock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// TestOneMasterHonoursContext (issue 9, item 7): a one-master group answers
// when the caller's ctx ends, not after NodeTimeout, for every operation —
// a 3-master group always did.
func TestOneMasterHonoursContext(t *testing.T) {
	f := fleet(t, 1, 1)
	cfg := faultConfig(f)
	cfg.NodeTimeout = 6 * time.Second // a wait for the paused master would be obvious
	c := newClient(t, cfg)
	bg := context.Background()
	held, err := c.Lock(bg, "one-held", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := f[0][0]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Resume() }()
	bound := cfg.NodeTimeout / 2 // far above a 100 ms ctx, far below NodeTimeout
	timed := func(what string, op func(ctx context.Context) error) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := op(ctx)
		if took := time.Since(start); took > bound {
			t.Fatalf("%s against a paused master with a 100ms ctx took %v (NodeTimeout %v): the ctx was ignored", what, took, cfg.NodeTimeout)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s = %v; want the ctx error joined", what, err)
		}
		return err
	}
	err = timed("TryLock", func(ctx context.Context) error { _, err := c.TryLock(ctx, "one-try", 30*time.Second); return err })
	if !errors.Is(err, ErrNotObtained) {
		t.Fatalf("TryLock = %v; want ErrNotObtained", err)
	}
	_ = timed("Extend", func(ctx context.Context) error { return held.Extend(ctx, 30*time.Second) })
	_ = timed("IsLocked", func(ctx context.Context) error { _, err := c.IsLocked(ctx, "one-held"); return err })
	_ = timed("Release", func(ctx context.Context) error { return held.Release(ctx) })
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	// The commands the callers gave up on still reach the master when it
	// answers again, and the releases clean up both keys, far sooner than
	// their 30 s TTL.
	eventually(t, 20*time.Second, "keys released after the master resumed", func() bool {
		return keyOn(t, s, "one-held") == "" && keyOn(t, s, "one-try") == ""
	})
}

// TestCleanupNotExpiredBehindItsSet (issue 9, item 5): with NodeTimeout
// longer than ReleaseTimeout, a cancelled attempt's cleanup waits in the
// queue behind its own SET on slow masters (CLIENT PAUSE, answered within
// NodeTimeout). The SET lands; the release must land after it instead of
// being answered "not sent", or the key blocks the resource for its TTL.
func TestCleanupNotExpiredBehindItsSet(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 5 * time.Second // ReleaseTimeout stays at its 1 s default
	cfg.RetryStrategy = NoRetry()
	c := newClient(t, cfg)
	for _, s := range f[0] {
		pauseCommands(t, s, 2*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := c.TryLock(ctx, "behind-set", 30*time.Second)
	cancel()
	if !errors.Is(err, ErrNotObtained) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryLock against masters holding commands = %v; want ErrNotObtained joined with the ctx error", err)
	}
	barrier(t, c, "behind-set") // the SETs landed when the pause ended, then what followed them
	eventually(t, 15*time.Second, "cleanup applied after its SET (TTL 30s)", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "behind-set") != "" {
				return false
			}
		}
		return true
	})
}

// TestKeptReleaseOutlivesLongPause (issue 9, item 6): a majority paused
// (SIGSTOP) longer than the TTL. The failed attempt's SETs apply on resume
// with a fresh TTL; the releases kept for those masters must still be sent
// when they answer again, not discarded because the TTL counted from the
// failure has passed.
func TestKeptReleaseOutlivesLongPause(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	c := newClient(t, cfg)
	const ttl = 5 * time.Second
	paused := f[0][1:]
	for _, s := range paused {
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.TryLock(context.Background(), "long-pause", ttl); !errors.Is(err, ErrNotObtained) {
		t.Fatalf("TryLock with a paused majority = %v; want ErrNotObtained", err)
	}
	time.Sleep(keyLife(ttl, cfg.DriftFactor) + 500*time.Millisecond) // longer than the key could live from the failure
	resumed := time.Now()
	for _, s := range paused {
		if err := s.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	// Their SETs apply now, with a fresh 5 s TTL; the kept releases follow
	// at reconnect (ReconnectInterval 50 ms).
	eventually(t, ttl*7/10, "kept releases sent at reconnect", func() bool {
		for _, s := range f[0] {
			if keyOn(t, s, "long-pause") != "" {
				return false
			}
		}
		return true
	})
	t.Logf("keys gone %v after resume (TTL %v)", time.Since(resumed).Round(time.Millisecond), ttl)
}

// fillWriter blocks master nd's only writer (PoolSize 1) on a paused server
// and fills its queue with real commands until it refuses one. The writer
// takes everything queued when it wakes (fewer than writerQueueLen calls: a
// full queue ends the filling), so up to twice writerQueueLen calls may be
// accepted when it wakes late under load.
func fillWriter(t *testing.T, _ *Client, nd *node, key string) {
	t.Helper()
	const most = 2*writerQueueLen + 16
	out := make(chan reply, most+2) // every accepted call's answer fits: the writer never blocks on it
	q := request{op: opExists, key: key, hash: 0, timeout: 20 * time.Second}
	args := newCmdArgs(key, "")
	for i := 0; ; i++ {
		cl := q.call(0, args, time.Now().Add(q.timeout), out)
		nd.submit(&cl, 0, false)
		select {
		case rp := <-out:
			if errors.Is(rp.err, errQueueFull) {
				return
			}
			t.Fatalf("filler %d answered before the queue was full: %+v", i, rp)
		default:
		}
		if i > most {
			t.Fatal("writer queue never filled")
		}
	}
}

// TestNeededReleaseNotDroppedWhenQueueFull: a release a master may need,
// which finds that master's queue full (up, but overloaded), is kept and
// retried instead of being answered "queue full" and dropped.
func TestNeededReleaseNotDroppedWhenQueueFull(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.PoolSize = 1
	cfg.NodeTimeout = 10 * time.Second
	c := newClient(t, cfg)
	ctx := context.Background()
	l, err := c.Lock(ctx, "qfull", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	barrier(t, c, "qfull")
	s := f[0][0]
	pauseCommands(t, s, 3*time.Second)
	fillWriter(t, c, c.groups[0].nodes[0], "filler")
	if err := l.Release(ctx); err != nil { // a quorum (masters 1 and 2) deletes it
		t.Fatalf("Release: %v", err)
	}
	eventually(t, 20*time.Second, "release reached the overloaded master (TTL 30s)", func() bool { return absentOn(s, "qfull") })
}

// TestNeededReleaseRetriedWhenBusy: a master busy running a script answers
// BUSY to a release it may need: the release is not applied, so it is
// retried, not dropped.
func TestNeededReleaseRetriedWhenBusy(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	c := newClient(t, cfg)
	ctx := context.Background()
	l, err := c.Lock(ctx, "busy", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	barrier(t, c, "busy")
	s := f[0][0]
	if v, err := s.Do(ctx, "CONFIG", "SET", "busy-reply-threshold", "10"); err != nil || v != "+OK" {
		t.Fatalf("CONFIG SET busy-reply-threshold: %q %v", v, err)
	}
	looping := make(chan struct{})
	go func() { // runs until SCRIPT KILL
		defer close(looping)
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, _ = s.Do(lctx, "EVAL", "while true do end", "0")
	}()
	eventually(t, 10*time.Second, "master busy", func() bool {
		_, err := s.Do(ctx, "PING")
		return err != nil && strings.HasPrefix(err.Error(), "BUSY")
	})
	if err := l.Release(ctx); err != nil { // masters 1 and 2 delete it
		t.Fatalf("Release: %v", err)
	}
	barrier(t, c, "busy") // master 0 has answered BUSY to the release by now
	if v, err := s.Do(ctx, "SCRIPT", "KILL"); err != nil || v != "+OK" {
		t.Fatalf("SCRIPT KILL: %q %v", v, err)
	}
	<-looping
	eventually(t, 20*time.Second, "release retried after BUSY (TTL 30s)", func() bool { return absentOn(s, "busy") })
}

// absentOn reports whether key is absent on s; false while s does not
// answer (paused, busy).
func absentOn(s *redisproc.Server, key string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	v, err := s.Do(ctx, "GET", key)
	return err == nil && v == "$-1"
}

// TestOneServerOneVote (issue 9, item 4): one redis-server reached under
// two spellings must never cast two votes, and two clients that spell one
// fleet differently must route every resource to the same group.
func TestOneServerOneVote(t *testing.T) {
	t.Run("IP literal spellings of one master are one master", func(t *testing.T) {
		s := fleet(t, 1, 3)[0]
		p := s[0].Port()
		for _, dup := range []string{
			fmt.Sprintf("redis://[::ffff:127.0.0.1]:%d/1", p),
			fmt.Sprintf("[0:0:0:0:0:ffff:7f00:1]:%d", p),
		} {
			cfg := Config{Servers: []string{fmt.Sprintf("redis://127.0.0.1:%d/0", p), dup, s[1].Addr()}, Logger: quietLogger}
			c, err := New(cfg)
			if err == nil {
				_ = c.Close()
				t.Fatalf("New accepted %q beside 127.0.0.1:%d: one process, two votes", dup, p)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "Servers[1]" || !strings.Contains(err.Error(), "Servers[0]") ||
				!strings.Contains(err.Error(), dup) || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d/0", p)) {
				t.Fatalf("New = %v; want a ConfigError on Servers[1] naming both spellings", err)
			}
		}
	})

	t.Run("two spellings of one fleet route alike and exclude each other", func(t *testing.T) {
		f := fleet(t, 3, 1)
		plain := make([][]string, 3)
		mapped := make([][]string, 3)
		for i, g := range f {
			plain[i] = []string{g[0].Addr()}
			if i%2 == 0 {
				mapped[i] = []string{fmt.Sprintf("[::ffff:127.0.0.1]:%d", g[0].Port())}
			} else {
				mapped[i] = []string{fmt.Sprintf("redis://[0:0:0:0:0:ffff:7f00:1]:%d", g[0].Port())}
			}
		}
		c1 := newClient(t, Config{Cluster: plain, NodeTimeout: time.Second, RetryStrategy: NoRetry()})
		c2 := newClient(t, Config{Cluster: mapped, NodeTimeout: time.Second, RetryStrategy: NoRetry()})
		ctx := context.Background()
		for i := 0; i < 200; i++ {
			res := fmt.Sprint("spelled-", i)
			l, err := c1.TryLock(ctx, res, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if l2, err := c2.TryLock(ctx, res, 10*time.Second); err == nil {
				_ = l2.Release(ctx)
				t.Fatalf("%q: two holders through two spellings of one fleet", res)
			} else if !errors.Is(err, ErrNotObtained) {
				t.Fatal(err)
			}
			_ = l.Release(ctx)
			g1, _ := c1.route(res)
			g2, _ := c2.route(res)
			if g1.index != g2.index {
				t.Fatalf("%q routed to group %d by one spelling of the fleet and %d by the other", res, g1.index, g2.index)
			}
		}
	})

	t.Run("an alias the text cannot unify is refused at New", func(t *testing.T) {
		s := fleet(t, 1, 3)[0]
		alias := startProxy(t, s[0].Addr())
		aliasURL := "redis://" + alias.Addr() + "/1" // db 1: a keyspace of its own, a second vote without the check
		cfg := Config{Servers: []string{s[0].Addr(), s[1].Addr(), aliasURL}, Logger: quietLogger, NodeTimeout: time.Second}
		c, err := New(cfg)
		if err == nil {
			_ = c.Close()
			t.Fatalf("New accepted %s, an alias of %s: one server, two votes", aliasURL, s[0].Addr())
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Servers[2]" || !strings.Contains(err.Error(), "same server as Servers[0]") ||
			!strings.Contains(err.Error(), aliasURL) || !strings.Contains(err.Error(), s[0].Addr()) {
			t.Fatalf("New = %v; want a ConfigError on Servers[2] naming both spellings", err)
		}
		t.Logf("New: %v", err)
	})

	t.Run("an alias found after New stays down and casts no vote", func(t *testing.T) {
		s := fleet(t, 1, 4)[0] // s[3] is where the alias points first
		alias := startProxy(t, s[3].Addr())
		aliasURL := "redis://" + alias.Addr() + "/1"
		cfg := faultConfig([][]*redisproc.Server{s[:3]})
		cfg.Servers = []string{s[0].Addr(), s[1].Addr(), aliasURL}
		c := newClient(t, cfg)
		ctx := context.Background()
		if l, err := c.TryLock(ctx, "alias-ok", 10*time.Second); err != nil {
			t.Fatal(err)
		} else {
			_ = l.Release(ctx)
		}
		// The alias now reaches s[0] (as a DNS name that moved would): its
		// connections close, the pool re-dials on the next command.
		alias.Stop()
		alias.SetUpstream(s[0].Addr()) // same listen address
		if err := alias.Start(); err != nil {
			t.Fatal(err)
		}
		// With s[1] stopped, only s[0] is live: it must not make a quorum
		// of 2 by voting as itself and as the alias.
		if err := s[1].Pause(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s[1].Resume() }()
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			l, err := c.TryLock(ctx, fmt.Sprint("one-vote-", i), 10*time.Second)
			if err == nil {
				_ = l.Release(ctx)
				t.Fatalf("locked with s[1] stopped: %s voted twice (as itself and as %s)", s[0].Addr(), aliasURL)
			}
			if !errors.Is(err, ErrNotObtained) {
				t.Fatalf("TryLock = %v; want ErrNotObtained", err)
			}
			st := c.MasterStats()[2]
			if !st.Up && strings.Contains(st.LastError, "same server as Servers[0]") {
				if !strings.Contains(st.LastError, s[0].Addr()) || !strings.Contains(st.LastError, aliasURL) {
					t.Fatalf("LastError %q does not name both spellings", st.LastError)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alias master not refused within 20s: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(3 * cfg.ReconnectInterval) // its reconnect loop retries meanwhile: still refused
		if _, err := c.TryLock(ctx, "one-vote-last", 10*time.Second); err == nil {
			t.Fatal("locked with one live server reached under two names")
		}
		if err := s[1].Resume(); err != nil {
			t.Fatal(err)
		}
		// Pointed at a server of its own again, it comes back.
		alias.Stop()
		alias.SetUpstream(s[3].Addr())
		if err := alias.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "alias back up on a server of its own", func() bool { return c.MasterStats()[2].Up })
	})
}

// TestKeptReleasesFullIsLoudAndDrains: a master down long enough to fill its
// kept releases drops the next one with a warning (never silently), and
// when it answers again every kept release is delivered, even though they
// are more than its writers' queues hold at once (the overflow is retried).
func TestKeptReleasesFullIsLoudAndDrains(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := faultConfig(f)
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := newClient(t, cfg)
	s := f[0][2]
	nd := c.groups[0].nodes[2]
	ctx := context.Background()
	// Keys on the master, as locks whose releases it then misses would leave.
	// Their TTL (5 min) is far beyond the wait for delivery below: only the
	// releases, not expiry, can empty the master in time.
	const n = maxKeptReleases
	for i := 0; i < n; i++ {
		k := fmt.Sprint("kf-", i)
		if v, err := s.Do(ctx, "SET", k, "tok-"+k, "PX", "300000"); err != nil || v != "+OK" {
			t.Fatalf("SET %s: %q %v", k, v, err)
		}
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Resume() }()
	if _, err := c.TryLock(ctx, "kf-probe", time.Second); err != nil { // times out on the paused master: marked down
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "master marked down", func() bool { return !c.MasterStats()[2].Up })
	for i := 0; i <= n; i++ { // one more than fits
		k := fmt.Sprint("kf-", i)
		cl := call{op: opRelease, key: k, token: "tok-" + k, hash: uint64(i) << 32, keepFor: time.Minute}
		nd.keepRelease(&cl)
	}
	if d := nd.keptDropped.Load(); d != 1 {
		t.Fatalf("%d releases dropped, want exactly the one that did not fit", d)
	}
	if !strings.Contains(logs.String(), "kept releases full") {
		t.Fatalf("dropping a needed release logged nothing: %s", logs.String())
	}
	// kf-probe's cleanup may also have been kept: the list is full either way.
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	// Delivered, not dropped: every key is deleted (kf-probe expires with
	// its 1 s TTL). The overflow of the writers' queues is kept and retried.
	eventually(t, 60*time.Second, "every kept release delivered", func() bool {
		nd.keptMu.Lock()
		left := len(nd.kept)
		nd.keptMu.Unlock()
		return left == 0 && c.MasterStats()[2].Up && dbSize(t, s) == 0
	})
	if d := nd.keptDropped.Load(); d != 1 {
		t.Fatalf("%d releases dropped in all, want 1", d)
	}
}

// dbSize returns the number of keys on s (-1 while it does not answer).
func dbSize(t *testing.T, s *redisproc.Server) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	v, err := s.Do(ctx, "DBSIZE")
	if err != nil || !strings.HasPrefix(v, ":") {
		return -1
	}
	n, err := strconv.Atoi(v[1:])
	if err != nil {
		t.Fatalf("DBSIZE: %q", v)
	}
	return n
}
