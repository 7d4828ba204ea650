package redlock

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// quarantineVotes returns the quarantine errors among a QuorumError's votes.
func quarantineVotes(err error) map[string]*QuarantineError {
	out := map[string]*QuarantineError{}
	var qe *QuorumError
	if !errors.As(err, &qe) {
		return out
	}
	for _, v := range qe.Votes {
		var q *QuarantineError
		if errors.As(v.Err, &q) {
			out[v.Addr] = q
		}
	}
	return out
}

// TestQuarantineFreshServers: a client started after the masters' restart
// (just now) sees it from their uptime: every master votes no, saying it is
// quarantined and for how long; MasterStats shows it; the log says it once
// per master however many connections are opened; LockAll is refused too;
// Release, Extend and IsLocked still go through.
func TestQuarantineFreshServers(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.RestartQuarantine = time.Hour
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := newClient(t, cfg)
	ctx := context.Background()
	for range 3 {
		_, err := c.TryLock(ctx, "q", 5*time.Second)
		if !errors.Is(err, ErrNotObtained) {
			t.Fatalf("TryLock with every master quarantined = %v; want ErrNotObtained", err)
		}
		qv := quarantineVotes(err)
		if len(qv) < 2 {
			t.Fatalf("want at least a quorum of quarantine votes, got %v", err)
		}
		for addr, q := range qv {
			if q.Left <= 58*time.Minute || q.Left > time.Hour || q.RunID == "" {
				t.Errorf("%s: %+v; want about an hour left and a run_id", addr, q)
			}
		}
		if msg := err.Error(); !strings.Contains(msg, "quarantined") || !strings.Contains(msg, "more") {
			t.Errorf("error does not say quarantined and for how long: %v", msg)
		}
	}
	// LockAll's several-key script is an acquisition too: refused alike,
	// and nothing is left on the masters.
	if _, err := c.lockAll(ctx, []string{"q1", "q2", "q3"}, 5*time.Second, true); !errors.Is(err, ErrNotObtained) || len(quarantineVotes(err)) < 2 {
		t.Fatalf("LockAll with every master quarantined = %v; want ErrNotObtained with a quorum of quarantine votes", err)
	}
	for _, s := range f[0] {
		if n, err := s.Do(ctx, "EXISTS", "q1", "q2", "q3"); err != nil || n != ":0" {
			t.Errorf("%s: EXISTS q1 q2 q3 = %q, %v; want none set by a refused LockAll", s.Addr(), n, err)
		}
	}
	for _, st := range c.MasterStats() {
		if left := time.Until(st.QuarantinedUntil); left < 58*time.Minute || left > time.Hour {
			t.Errorf("%s: QuarantinedUntil %v from now; want about an hour", st.Addr, left)
		}
		if st.RunID == "" || !st.Up {
			t.Errorf("%s: RunID %q, Up %v; want a run_id and up", st.Addr, st.RunID, st.Up)
		}
	}
	// New connections (an idle one closed by the server) do not log again.
	for _, s := range f[0] {
		if _, err := s.Do(ctx, "CLIENT", "KILL", "TYPE", "normal"); err != nil {
			t.Fatal(err)
		}
	}
	// A connection used less than staleAfter ago is taken without the
	// liveness peek (usable): let the killed ones be idle for longer, as
	// connections a server closes while idle are.
	time.Sleep(5 * staleAfter)
	_, _ = c.TryLock(ctx, "q", 5*time.Second)
	if n := strings.Count(logs.String(), "master restarted recently"); n != 3 {
		t.Errorf("logged %d quarantines for 3 masters:\n%s", n, logs.String())
	}
	// Non-acquiring operations still work.
	if ok, err := c.IsLocked(ctx, "q"); err != nil || ok {
		t.Errorf("IsLocked = %v, %v; want false, nil", ok, err)
	}
	if err := c.ReleaseToken(ctx, "q", "nobody"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("ReleaseToken = %v; want ErrNotHeld (the masters answered)", err)
	}
}

// waitUptime waits until every server has been up for at least d (INFO
// server's uptime_in_seconds).
func waitUptime(t *testing.T, servers []*redisproc.Server, d time.Duration) {
	t.Helper()
	for _, s := range servers {
		eventually(t, d+10*time.Second, s.Addr()+" uptime", func() bool {
			return uptimeOf(t, s) >= d
		})
	}
}

func uptimeOf(t *testing.T, s *redisproc.Server) time.Duration {
	t.Helper()
	txt, err := s.Do(context.Background(), "INFO", "server")
	if err != nil {
		t.Fatal(err)
	}
	si := parseServerInfo(strings.TrimPrefix(txt, "$"), time.Now())
	if si == nil {
		t.Fatalf("%s: INFO server without run_id: %q", s.Addr(), txt)
	}
	return si.uptime
}

// TestQuarantineRestarts: a long-lived client meets masters that restarted.
// One restarted master (a minority) costs no availability and is
// quarantined — noticed on the connection dialed after the server closed the
// idle one, not by a health check. With a majority restarted, TryLock fails
// naming the quarantined masters; the first lock after the window works.
func TestQuarantineRestarts(t *testing.T) {
	const window = 4 * time.Second
	f := fleet(t, 1, 3)
	m := f[0]
	waitUptime(t, m, window+time.Second) // uptime_in_seconds may run a second ahead: the client takes one off
	cfg := clusterConfig(f)
	cfg.RestartQuarantine = window
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.HealthCheckPeriod = time.Hour // restarts must be noticed without health checks
	c := newClient(t, cfg)
	ctx := context.Background()
	l, err := c.TryLock(ctx, "qr", 5*time.Second)
	if err != nil {
		t.Fatalf("TryLock before any restart: %v", err)
	}
	_ = l.Release(ctx)
	before := c.MasterStats()[0].RunID

	// A minority restart.
	if err := m[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[0].Restart(); err != nil {
		t.Fatal(err)
	}
	l, err = c.TryLock(ctx, "qr", 5*time.Second)
	if err != nil {
		t.Fatalf("TryLock with one master restarted: %v", err)
	}
	_ = l.Release(ctx)
	eventually(t, 2*time.Second, "master 0 quarantined", func() bool {
		st := c.MasterStats()[0]
		return !st.QuarantinedUntil.IsZero() && st.RunID != before
	})

	// A majority restarted.
	if err := m[1].Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := m[1].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := m[2].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m[2].Restart(); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	refused := 0
	eventually(t, window+10*time.Second, "a lock after the quarantine", func() bool {
		l, err = c.TryLock(ctx, "qr", 5*time.Second)
		if err == nil {
			first = time.Now()
			return true
		}
		if qv := quarantineVotes(err); len(qv) >= 2 {
			refused++
		} else if refused == 0 {
			t.Logf("TryLock right after the restarts: %v", err) // e.g. connections still being re-established
		}
		return false
	})
	_ = l.Release(ctx)
	if refused == 0 {
		t.Errorf("no TryLock was refused by quarantined masters")
	}
	// Two masters must be out of quarantine: master 1's window started after
	// `restarted` (its process start), and uptime is rounded down.
	if first.Before(restarted.Add(window)) {
		t.Errorf("a lock was obtained %v after a majority restarted; the quarantine is %v", first.Sub(restarted), window)
	}
	t.Logf("%d attempts refused; first lock %v after the majority restart", refused, first.Sub(restarted).Round(time.Millisecond))
}
