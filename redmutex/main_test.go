package redmutex

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/leakcheck"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig is the base of the clients made in tests: quiet, and a per-node
// timeout generous enough for a loaded machine running -race (a command that
// times out is a failed vote, which would make liveness checks flaky).
func testConfig() redlock.Config {
	return redlock.Config{Logger: quietLogger, NodeTimeout: 2 * time.Second}
}

// server starts one redis-server for the test.
func server(t *testing.T) *redisproc.Server {
	t.Helper()
	return redisproc.StartT(t, 1, redisproc.Options{})[0]
}

// newMutex makes a Mutex on s closed at the end of the test.
func newMutex(t *testing.T, s *redisproc.Server, key string, exp time.Duration) *Mutex {
	t.Helper()
	m, err := New(Options{Addr: s.Addr(), Config: testConfig(), Key: key, Expiration: exp})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// newLocker makes a Locker on s closed at the end of the test.
func newLocker(t *testing.T, s *redisproc.Server) *Locker {
	t.Helper()
	lk, err := NewLocker(LockerOptions{Addr: s.Addr(), Config: testConfig()})
	if err != nil {
		t.Fatalf("NewLocker: %v", err)
	}
	t.Cleanup(func() { _ = lk.Close() })
	return lk
}

// get reads key on s directly ("" when absent).
func get(t *testing.T, s *redisproc.Server, key string) string {
	t.Helper()
	return s.GetT(t, key)
}

// pttl reads key's remaining time to live on s, in milliseconds (negative
// when the key is absent or has no expiration).
func pttl(t *testing.T, s *redisproc.Server, key string) int {
	t.Helper()
	v, err := s.Do(context.Background(), "PTTL", key)
	if err != nil || !strings.HasPrefix(v, ":") {
		t.Fatalf("PTTL %s = %q, %v", key, v, err)
	}
	n, err := strconv.Atoi(v[1:])
	if err != nil {
		t.Fatal(err)
	}
	return n
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
