package redlock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// passwordServer is a redis-server that requires password (requirepass).
func passwordServer(t *testing.T, password string) *redisproc.Server {
	t.Helper()
	s := redisproc.StartT(t, 1, redisproc.Options{})[0]
	if got, err := s.Do(context.Background(), "CONFIG", "SET", "requirepass", password); err != nil || got != "+OK" {
		t.Fatalf("CONFIG SET requirepass: %q %v", got, err)
	}
	return s
}

// TestStrictStartPermanent: with StrictStart, New fails at once on a
// misconfiguration, names the master, and IsPermanent says so; without
// it, New succeeds and Ping tells the same (the documented Ping pattern).
func TestStrictStartPermanent(t *testing.T) {
	const good, wrong = "s3cret-good", "s3cret-wrong"
	srv := passwordServer(t, good)
	plain := redisproc.StartT(t, 3, redisproc.Options{})
	b := genTLS(t, "strict")
	other := genTLS(t, "strict-other")
	ts := startTLS(t, 1, b, false)[0]
	cases := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"wrong password", Config{Servers: []string{srv.Addr()}, Password: wrong}, "WRONGPASS"},
		{"no password", Config{Servers: []string{srv.Addr()}}, "NOAUTH"},
		{"password in the URL, wrong", Config{Servers: []string{"redis://:" + wrong + "@" + srv.Addr()}}, "WRONGPASS"},
		{"DB index out of range", Config{Servers: []string{"redis://" + plain[0].Addr() + "/99"}}, "DB index is out of range"},
		{"TLS certificate of an unknown CA", Config{Servers: []string{"rediss://" + ts.tlsAddr}, TLSConfig: &tls.Config{RootCAs: other.CAPool}}, "certificate"},
		{"one misconfigured master of three", Config{Servers: []string{plain[0].Addr(), plain[1].Addr(), "redis://" + plain[2].Addr() + "/1000"}}, "DB index is out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Logger = quietLogger
			cfg.DialTimeout = 10 * time.Second // loading the system roots may take seconds under -race
			cfg.NodeTimeout = 2 * time.Second
			cfg.StrictStart = true
			start := time.Now()
			c, err := New(cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("New with StrictStart succeeded")
			}
			if took := time.Since(start); took > 9*time.Second {
				t.Errorf("New took %v: it should fail at the first answer", took)
			}
			if !IsPermanent(err) {
				t.Errorf("IsPermanent(%v) = false", err)
			}
			var se *StartError
			var me *MasterError
			if !errors.As(err, &se) || !errors.As(err, &me) {
				t.Fatalf("err %T %v: want a *StartError with a *MasterError", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "redlock: start: a master is misconfigured: ") || !strings.Contains(msg, tc.want) ||
				!strings.Contains(msg, "(permanent)") || strings.ContainsAny(msg, "\n") {
				t.Errorf("error %q: want one line naming the master, %q and (permanent)", msg, tc.want)
			}
			if strings.Contains(msg, wrong) || strings.Contains(msg, good) {
				t.Errorf("error %q shows a password", msg)
			}

			// Default: New succeeds; Ping tells permanent from transient.
			cfg.StrictStart = false
			c = newClient(t, cfg)
			permanent := 0
			for _, p := range c.Ping(context.Background()) {
				if p.Err != nil && IsPermanent(p.Err) {
					permanent++
				}
			}
			if permanent != 1 {
				t.Errorf("Ping: %d permanent failures, want 1: %v", permanent, c.Ping(context.Background()))
			}
		})
	}
}

// TestStrictStartTransient: a dead fleet fails New with StrictStart, as a
// transient error; a minority down does not.
func TestStrictStartTransient(t *testing.T) {
	live := redisproc.StartT(t, 2, redisproc.Options{})
	dead := []string{deadAddr(t), deadAddr(t), deadAddr(t)}
	base := Config{Logger: quietLogger, StrictStart: true, DialTimeout: 5 * time.Second, NodeTimeout: 2 * time.Second}

	cfg := base
	cfg.Servers = dead
	c, err := New(cfg)
	if err == nil {
		_ = c.Close()
		t.Fatal("New with StrictStart on a dead fleet succeeded")
	}
	if IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true for a dead fleet", err)
	}
	want := "redlock: start: group 0 has 0 of 3 masters reachable, 2 needed: " + dead[0] + ": "
	if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "connection refused") != 3 {
		t.Errorf("error %q: want prefix %q and every master's refusal", err, want)
	}

	cfg.Servers = nil
	cfg.Cluster = [][]string{{live[0].Addr()}, {live[1].Addr(), dead[0], dead[1]}}
	if c2, err := New(cfg); err == nil {
		_ = c2.Close()
		t.Fatal("New with StrictStart and a group without quorum succeeded")
	} else if !strings.Contains(err.Error(), "group 1 has 1 of 3 masters reachable, 2 needed") {
		t.Errorf("error %q does not name group 1", err)
	}

	cfg.Cluster = nil
	cfg.Servers = []string{live[0].Addr(), live[1].Addr(), dead[2]}
	c = newClient(t, cfg) // a minority down: fine
	l, err := c.TryLock(context.Background(), "strict", time.Minute)
	if err != nil {
		t.Fatalf("TryLock with a minority down: %v", err)
	}
	_ = l.Release(context.Background())
}

// TestNoRetries: MaxRetry NoRetries makes Lock a single attempt, 0 keeps
// the default 3, and every other negative value is refused.
func TestNoRetries(t *testing.T) {
	srv := redisproc.StartT(t, 1, redisproc.Options{})[0]
	ctx := context.Background()
	holder := newClient(t, Config{Servers: []string{srv.Addr()}})
	if _, err := holder.Lock(ctx, "busy", time.Minute); err != nil {
		t.Fatal(err)
	}
	attempts := func(maxRetry int) int64 {
		c := newClient(t, Config{Servers: []string{srv.Addr()}, MaxRetry: maxRetry, RetryInterval: time.Millisecond, NodeTimeout: 2 * time.Second})
		before := setCalls(t, srv)
		if _, err := c.Lock(ctx, "busy", time.Minute); !errors.Is(err, ErrNotObtained) {
			t.Fatalf("Lock of a busy resource: %v", err)
		}
		return setCalls(t, srv) - before // one SET per attempt
	}
	if n := attempts(NoRetries); n != 1 {
		t.Errorf("MaxRetry NoRetries: %d attempts, want 1", n)
	}
	if n := attempts(0); n != 1+DefaultMaxRetry {
		t.Errorf("MaxRetry 0: %d attempts, want %d", n, 1+DefaultMaxRetry)
	}
	if n := attempts(1); n != 2 {
		t.Errorf("MaxRetry 1: %d attempts, want 2", n)
	}
	for _, v := range []int{-1, -3, NoRetries + 1} {
		_, err := New(Config{Servers: []string{srv.Addr()}, MaxRetry: v})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "MaxRetry" || !strings.Contains(err.Error(), "NoRetries") {
			t.Errorf("MaxRetry %d: %v, want a ConfigError that points to NoRetries", v, err)
		}
	}
}

// TestSettings: the effective settings, printable, every default filled in
// and no password.
func TestSettings(t *testing.T) {
	srv := redisproc.StartT(t, 1, redisproc.Options{})[0]
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Servers: []string{srv.Addr()}},
			fmt.Sprintf("redlock.Config{Servers:[%s] PoolSize:2 DriftFactor:0.01 MaxRetry:3 RetryInterval:200ms ReconnectInterval:500ms NodeTimeout:100ms DialTimeout:1s HealthCheckPeriod:15s ReleaseTimeout:1s KeyPrefix:\"\" MaxResourceLen:4096}", srv.Addr())},
		{Config{Servers: []string{"redis://u:hunter2@" + srv.Addr()}, Password: "hunter3", MaxRetry: NoRetries, PoolSize: 4, KeyPrefix: "l:"},
			fmt.Sprintf("redlock.Config{Servers:[redis://u:xxxxx@%s] PoolSize:4 DriftFactor:0.01 MaxRetry:NoRetries RetryInterval:200ms ReconnectInterval:500ms NodeTimeout:100ms DialTimeout:1s HealthCheckPeriod:15s ReleaseTimeout:1s KeyPrefix:\"l:\" MaxResourceLen:4096 Password:xxxxx}", srv.Addr())},
		{Config{Servers: []string{srv.Addr()}, RetryStrategy: NoRetry(), NodeTimeout: time.Second, StrictStart: true},
			fmt.Sprintf("redlock.Config{Servers:[%s] PoolSize:2 DriftFactor:0.01 MaxRetry:3 RetryInterval:200ms ReconnectInterval:500ms NodeTimeout:1s DialTimeout:1s HealthCheckPeriod:15s ReleaseTimeout:1s KeyPrefix:\"\" MaxResourceLen:4096 RetryStrategy:custom StrictStart:true}", srv.Addr())},
		{Config{Servers: []string{srv.Addr()}, Fencing: true, RestartQuarantine: 90 * time.Second},
			fmt.Sprintf("redlock.Config{Servers:[%s] PoolSize:2 DriftFactor:0.01 MaxRetry:3 RetryInterval:200ms ReconnectInterval:500ms NodeTimeout:100ms DialTimeout:1s HealthCheckPeriod:15s ReleaseTimeout:1s KeyPrefix:\"\" MaxResourceLen:4096 Fencing:true RestartQuarantine:1m30s}", srv.Addr())},
	}
	for _, tc := range cases {
		tc.cfg.Logger = quietLogger
		c := newClient(t, tc.cfg)
		s := c.Settings()
		for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), s.String()} {
			if got != tc.want {
				t.Errorf("Settings\n got %s\nwant %s", got, tc.want)
			}
		}
		if strings.Contains(s.Password+strings.Join(s.Servers, ""), "hunter") {
			t.Errorf("Settings shows a password: %q %q", s.Password, s.Servers)
		}
		if s.Logger != quietLogger {
			t.Errorf("Settings().Logger is not the configured logger")
		}
		if (tc.cfg.RetryStrategy == nil) != (s.RetryStrategy == nil) {
			t.Errorf("Settings().RetryStrategy = %v, configured %v", s.RetryStrategy, tc.cfg.RetryStrategy)
		}
	}
	// The defaults filled in are the ones a zero Config selects.
	c := newClient(t, Config{Servers: []string{srv.Addr()}, Logger: quietLogger})
	if s := c.Settings(); s.PoolSize != DefaultPoolSize || s.MaxRetry != DefaultMaxRetry || s.NodeTimeout != DefaultNodeTimeout ||
		s.DialTimeout != DefaultDialTimeout || s.RetryInterval != DefaultRetryInterval || s.ReconnectInterval != DefaultReconnectInterval ||
		s.HealthCheckPeriod != DefaultHealthCheckPeriod || s.ReleaseTimeout != DefaultReleaseTimeout || s.MaxResourceLen != DefaultMaxResourceLen ||
		s.DriftFactor != DefaultDriftFactor {
		t.Errorf("Settings() = %v: a default is missing", s)
	}
}

// setCalls is the number of SET commands s has run.
func setCalls(t *testing.T, s *redisproc.Server) int64 {
	t.Helper()
	info, err := s.Do(context.Background(), "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_set:calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			n, err := strconv.ParseInt(calls, 10, 64)
			if err != nil {
				t.Fatalf("INFO commandstats: %q: %v", line, err)
			}
			return n
		}
	}
	return 0
}
