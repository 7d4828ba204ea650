package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/integration/safety"
	"github.com/quorumlock/quorumlock/internal/leakcheck"
	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// Client timeouts of every suite: small, so faults are detected and healed
// quickly, and far below every TTL used.
const (
	nodeTimeout       = 150 * time.Millisecond
	reconnectInterval = 75 * time.Millisecond
	dialTimeout       = 500 * time.Millisecond

	// slack is added to every liveness bound: the machines are small, shared
	// and noisy, so the suites assert "answers, and not after seconds", never
	// a latency.
	slack = 3 * time.Second

	// faultNodeTimeout is the NodeTimeout of the minority and majority
	// fault suites. They assert outcomes (a quorum of healthy masters
	// answers; a majority fault is reported, naming the masters), not
	// speed, and make single attempts: a healthy master on a loaded daemon
	// missed the 150 ms nodeTimeout and failed them. A paused master costs
	// one faultNodeTimeout per command, so every bound adds it.
	faultNodeTimeout = time.Second
)

// faultConfig is the fleet's client config with faultNodeTimeout.
func faultConfig(f redlocktest.Fleet) redlock.Config {
	cfg := f.Config()
	cfg.NodeTimeout = faultNodeTimeout
	return cfg
}

// startContainers starts a container fleet of groups × masters for the test
// (skipped without Docker, failed in CI) and checks, after everything else
// is cleaned up, that no goroutine of a redlock client outlived it.
func startContainers(t *testing.T, groups, masters int) redlocktest.Fleet {
	t.Helper()
	checkNoClientGoroutines(t)
	t0 := time.Now()
	f := redlocktest.StartT(t, groups, masters)
	t.Logf("container fleet %d×%d started in %v: %v", groups, masters, time.Since(t0).Round(time.Millisecond), f.Addrs())
	return f
}

// startProcesses is startContainers with redis-server processes.
func startProcesses(t *testing.T, groups, masters int) redlocktest.Fleet {
	t.Helper()
	checkNoClientGoroutines(t)
	return redlocktest.StartProcessesT(t, groups, masters)
}

// clientConfig is cfg with the suites' timeouts (nodeTimeout unless cfg sets
// its own) and a logger into the test log.
func clientConfig(t *testing.T, cfg redlock.Config) redlock.Config {
	if cfg.NodeTimeout == 0 { // a suite that is not about time sets a generous one
		cfg.NodeTimeout = nodeTimeout
	}
	cfg.ReconnectInterval = reconnectInterval
	cfg.DialTimeout = dialTimeout
	cfg.ReleaseTimeout = time.Second
	cfg.MaxRetry = 0
	cfg.RetryInterval = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

// newClient creates a client with the suites' timeouts, closed at the end of
// the test.
func newClient(t *testing.T, cfg redlock.Config) *redlock.Client {
	t.Helper()
	c, err := redlock.New(clientConfig(t, cfg))
	if err != nil {
		t.Fatalf("redlock.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testWriter sends a client's log lines to the test log.
type testWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checkNoClientGoroutines registers a cleanup, run after every later one
// (clients, fleets), that fails the test if a goroutine of package redlock
// is still running: rule 7, no goroutine outlives Close.
func checkNoClientGoroutines(t *testing.T) {
	t.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(3 * time.Second)
		for {
			leaked = clientGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines of redlock outlived Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// clientGoroutines returns the stacks of the goroutines running in package
// redlock.
func clientGoroutines() []string {
	return leakcheck.Stacks(func(stack string) bool {
		return strings.Contains(stack, "quorumlock/quorumlock/redlock.")
	})
}

// keyOn reads key on one master ("", false when absent).
func keyOn(t *testing.T, m redlocktest.Master, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := m.Do(ctx, "GET", key)
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	if err != nil {
		t.Fatalf("GET %s on %s: %v", key, m.Name(), err)
	}
	s, _ := v.(string)
	return s, true
}

// eventually polls cond until it holds or d passes, and returns how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(t0)
}

// within fails the test if fn takes longer than d (a liveness bound: "no
// hang"), and returns how long it took.
func within(t *testing.T, d time.Duration, what string, fn func()) time.Duration {
	t.Helper()
	t0 := time.Now()
	fn()
	took := time.Since(t0)
	if took > d {
		t.Errorf("%s took %v, bound %v", what, took, d)
	}
	return took
}

// stat returns the MasterStats entry of addr.
func stat(t *testing.T, c *redlock.Client, addr string) redlock.MasterStat {
	t.Helper()
	for _, s := range c.MasterStats() {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no MasterStats entry for %s", addr)
	return redlock.MasterStat{}
}

// masters returns the masters of group g.
func masters(f redlocktest.Fleet, g int) []redlocktest.Master {
	out := make([]redlocktest.Master, f.MastersPerGroup())
	for i := range out {
		out[i] = f.Master(g, i)
	}
	return out
}

// heal ends every fault in the fleet and empties every master, so the next
// subtest starts from a clean fleet.
func heal(t *testing.T, f redlocktest.Fleet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := safety.HealAll(ctx, f); err != nil {
		t.Fatalf("heal the fleet: %v", err)
	}
	for g := range f.Groups() {
		for _, m := range masters(f, g) {
			if _, err := m.Do(ctx, "FLUSHALL"); err != nil {
				t.Fatalf("FLUSHALL on %s: %v", m.Name(), err)
			}
		}
	}
}

// quorumErr extracts the *QuorumError of err, failing the test without one.
func quorumErr(t *testing.T, err error) *redlock.QuorumError {
	t.Helper()
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) carries no *redlock.QuorumError", err, err)
	}
	return qe
}

// checkNamesFailed asserts that err names every master in addrs as failed,
// both in the QuorumError's votes and in its message.
func checkNamesFailed(t *testing.T, err error, addrs ...string) {
	t.Helper()
	qe := quorumErr(t, err)
	var failed []string
	for _, v := range qe.Failed() {
		failed = append(failed, v.Addr)
	}
	for _, a := range addrs {
		if !slices.Contains(failed, a) {
			t.Errorf("QuorumError does not list %s as failed (failed: %v): %v", a, failed, err)
		}
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error message does not name %s: %v", a, err)
		}
	}
}

// addrsOf returns the addresses of ms.
func addrsOf(ms ...redlocktest.Master) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Addr()
	}
	return out
}

// waitLandsOn acquires fresh resources routed to m's group until a lock's
// key shows up on m with the lock's token, which proves the client uses m
// again. It fails the test if that does not happen within bound after from
// (when the fault healed) and returns how long after from it happened. Each
// lock is released.
func waitLandsOn(t *testing.T, c *redlock.Client, m redlocktest.Master, prefix string, from time.Time, bound time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	var err error
	for i := 0; ; i++ {
		res := fmt.Sprintf("%s/%d", prefix, i)
		if !slices.Contains(c.Route(res), m.Addr()) {
			continue
		}
		// While the client has m marked down, m votes "no" without being
		// asked: wait for the reconnect loop first.
		if !stat(t, c, m.Addr()).Up {
			if time.Since(from) > bound {
				t.Fatalf("the client did not reconnect to %s within %v: %+v", m.Name(), bound, stat(t, c, m.Addr()))
			}
			time.Sleep(5 * time.Millisecond)
			i--
			continue
		}
		var l *redlock.Lock
		l, err = c.TryLock(ctx, res, 5*time.Second)
		if err == nil {
			landed := false
			deadline := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if v, ok := keyOn(t, m, l.Resource()); ok && v == l.Token() {
					landed = true
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := l.Release(ctx); err != nil {
				t.Errorf("release %s: %v", l.Resource(), err)
			}
			if landed {
				took := time.Since(from)
				if !stat(t, c, m.Addr()).Up {
					t.Errorf("a lock landed on %s but MasterStats says it is down", m.Name())
				}
				return took
			}
		}
		if time.Since(from) > bound {
			t.Fatalf("no lock landed on %s within %v (last error: %v; stats: %+v)", m.Name(), bound, err, stat(t, c, m.Addr()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
