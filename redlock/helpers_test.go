package redlock

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// fleet starts groups × masters redis-server processes.
func fleet(t testing.TB, groups, masters int) [][]*redisproc.Server {
	t.Helper()
	all := redisproc.StartT(t, groups*masters, redisproc.Options{})
	out := make([][]*redisproc.Server, groups)
	for g := range out {
		out[g] = all[g*masters : (g+1)*masters]
	}
	return out
}

// clusterConfig is a config for the fleet. Its NodeTimeout is generous:
// these tests run under the race detector on a shared machine, and a
// healthy master must never look down; fault tests set their own.
func clusterConfig(f [][]*redisproc.Server) Config {
	if len(f) == 1 {
		return Config{Servers: redisproc.Addrs(f[0]), NodeTimeout: time.Second}
	}
	cl := make([][]string, len(f))
	for i, g := range f {
		cl[i] = redisproc.Addrs(g)
	}
	return Config{Cluster: cl, NodeTimeout: time.Second}
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newClient creates a client closed at the end of the test.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keyOn reads key on one master directly ("" when absent).
func keyOn(t *testing.T, s *redisproc.Server, key string) string {
	t.Helper()
	return s.GetT(t, key)
}

// heldEverywhere waits until every master in masters holds l's key with
// its token. Lock returns at quorum, so a master it did not wait for may
// still be applying the SET; a test that faults a master and then expects
// the holder's release to reach a majority must first let the holder's
// SET land everywhere, or a competitor's SET NX can overtake it on the
// master that was late (that competitor then cleans up, leaving the
// holder with a bare majority).
func heldEverywhere(t *testing.T, masters []*redisproc.Server, l *Lock) {
	t.Helper()
	eventually(t, 30*time.Second, "the holder's key on every master", func() bool {
		for _, s := range masters {
			if s.GetT(t, l.key) != l.Token() {
				return false
			}
		}
		return true
	})
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
