package redlock

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in       string
		identity string
		tls      bool
		user     string
		pass     string
		err      string
	}{
		{in: "127.0.0.1:6379", identity: "127.0.0.1:6379"},
		{in: "Redis-1.Example.COM:7000", identity: "redis-1.example.com:7000"},
		{in: "localhost", identity: "localhost:6379"},
		{in: "[::1]:7000", identity: "[::1]:7000"},
		{in: "[::1]", identity: "[::1]:6379"},
		{in: "redis://10.0.0.1:7000", identity: "10.0.0.1:7000"},
		{in: "redis://10.0.0.1", identity: "10.0.0.1:6379"},
		{in: "REDIS://10.0.0.1:7000/3", identity: "10.0.0.1:7000"},
		{in: "redis://10.0.0.1:7000/0", identity: "10.0.0.1:7000"},
		{in: "redis://:s3cret@10.0.0.1:7000", identity: "10.0.0.1:7000", pass: "s3cret"},
		{in: "redis://app:s3cr%40t@10.0.0.1:7000/2", identity: "10.0.0.1:7000", user: "app", pass: "s3cr@t"},
		{in: "rediss://app:p@ss@[::1]:6380", identity: "[::1]:6380", tls: true, user: "app", pass: "p@ss"},
		// IP literals are canonical: one server, one identity.
		{in: "[::ffff:127.0.0.1]:7000", identity: "127.0.0.1:7000"},
		{in: "redis://[0:0:0:0:0:ffff:7f00:1]:7000/1", identity: "127.0.0.1:7000"},
		{in: "[::FFFF:7F00:1]:7000", identity: "127.0.0.1:7000"},
		{in: "[0:0:0:0:0:0:0:1]:7000", identity: "[::1]:7000"},
		{in: "[2001:DB8:0:0:0:0:0:1]", identity: "[2001:db8::1]:6379"},
		{in: "", err: "empty address"},
		{in: "10.0.0.1:", err: "bad port"},
		{in: "10.0.0.1:0", err: "bad port"},
		{in: "10.0.0.1:65536", err: "bad port"},
		{in: "10.0.0.1:http", err: "bad port"},
		{in: "::1", err: "bracketed"},
		{in: "http://10.0.0.1", err: "unsupported scheme"},
		{in: "redis://", err: "missing host"},
		{in: "redis://10.0.0.1/x", err: "bad database"},
		{in: "redis://10.0.0.1?db=1", err: "query strings"},
		{in: "10.0.0.1/1", err: "want"},
		{in: "host name:1", err: "space"},
		{in: ":6379", err: "missing host"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			a, err := parseAddress(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseAddress(%q) error = %v, want it to mention %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAddress(%q): %v", tc.in, err)
			}
			if a.identity() != tc.identity || a.tls != tc.tls || a.username != tc.user || a.password != tc.pass {
				t.Fatalf("parseAddress(%q) = id %q tls %v user %q pass %q", tc.in, a.identity(), a.tls, a.username, a.password)
			}
			if tc.pass != "" && strings.Contains(a.redacted, tc.pass) {
				t.Fatalf("redacted form %q shows the password", a.redacted)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	three := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
		msg   string
	}{
		{"no masters", Config{}, "Servers", "no masters"},
		{"both modes", Config{Servers: three, Cluster: [][]string{three}}, "Cluster", "not both"},
		{"empty group", Config{Cluster: [][]string{three, {}}}, "Cluster[1]", "empty group"},
		{"even group", Config{Servers: three[:2]}, "Servers", "odd number"},
		{"even group in cluster", Config{Cluster: [][]string{three, {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}}}, "Cluster[1]", "4 masters tolerate no more failures than 3"},
		{"duplicate in group", Config{Servers: []string{"127.0.0.1:7001", "127.0.0.1:7002", "redis://127.0.0.1:7001"}}, "Servers[2]", "duplicate master: same as Servers[0]"},
		{"duplicate across groups", Config{Cluster: [][]string{three, {"127.0.0.1:7003"}}}, "Cluster[1][0]", "duplicate master: same as Cluster[0][2]"},
		{"two databases of one server", Config{Servers: []string{"redis://127.0.0.1:7001/1", "redis://127.0.0.1:7001/2", "127.0.0.1:7003"}}, "Servers[1]", "duplicate master: same as Servers[0]"},
		{"unparsable", Config{Servers: []string{"127.0.0.1:notaport"}}, "Servers[0]", "bad port"},
		{"unparsable keeps password secret", Config{Servers: []string{"redis://u:hunter2@h:99999"}}, "Servers[0]", "bad port"},
		{"negative pool", Config{Servers: three, PoolSize: -1}, "PoolSize", "negative"},
		{"negative drift", Config{Servers: three, DriftFactor: -0.1}, "DriftFactor", "[0, 1)"},
		{"drift one", Config{Servers: three, DriftFactor: 1}, "DriftFactor", "[0, 1)"},
		{"negative retry", Config{Servers: three, MaxRetry: -1}, "MaxRetry", "negative"},
		{"negative interval", Config{Servers: three, RetryInterval: -time.Second}, "RetryInterval", "negative"},
		{"negative reconnect", Config{Servers: three, ReconnectInterval: -1}, "ReconnectInterval", "negative"},
		{"negative node timeout", Config{Servers: three, NodeTimeout: -1}, "NodeTimeout", "negative"},
		{"negative dial timeout", Config{Servers: three, DialTimeout: -1}, "DialTimeout", "negative"},
		{"negative resource len", Config{Servers: three, MaxResourceLen: -1}, "MaxResourceLen", "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("New accepted a bad config")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("New: %v (field %q), want field %q and %q", err, ce.Field, tc.field, tc.msg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestConfigDefaultsAndSecrets(t *testing.T) {
	s, err := Config{Servers: []string{"redis://u:hunter2@127.0.0.1:1"}, Password: "topsecret"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.PoolSize != DefaultPoolSize || s.DriftFactor != DefaultDriftFactor || s.MaxRetry != DefaultMaxRetry ||
		s.RetryInterval != DefaultRetryInterval || s.ReconnectInterval != DefaultReconnectInterval ||
		s.NodeTimeout != DefaultNodeTimeout || s.DialTimeout != DefaultDialTimeout || s.MaxResourceLen != DefaultMaxResourceLen {
		t.Fatalf("defaults not applied: %+v", s.Config)
	}
	cfg := Config{Servers: []string{"redis://u:hunter2@127.0.0.1:1"}, Password: "topsecret"}
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%s", cfg), fmt.Sprintf("%v", &cfg)} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "topsecret") {
			t.Fatalf("Config printed a password: %s", out)
		}
	}
}

func TestDrift(t *testing.T) {
	if got := driftAllowance(10*time.Second, 0.01); got != 102*time.Millisecond {
		t.Fatalf("driftAllowance(10s, 0.01) = %v, want 102ms", got)
	}
	if got := validity(10*time.Second, 50*time.Millisecond, 0.01); got != 10*time.Second-152*time.Millisecond {
		t.Fatalf("validity = %v", got)
	}
	for _, f := range []float64{0, 0.01, 0.1, 0.5, 0.9} {
		m := minTTL(f)
		if validity(m, 0, f) <= 0 {
			t.Fatalf("minTTL(%g) = %v leaves no validity", f, m)
		}
		if validity(m-time.Millisecond, 0, f) > 0 {
			t.Fatalf("minTTL(%g) = %v is not the smallest millisecond TTL", f, m)
		}
	}
	if ttlMillis(1500*time.Microsecond) != 2 || ttlMillis(time.Second) != 1000 {
		t.Fatal("ttlMillis must round up to whole milliseconds")
	}
}

func TestRetryStrategies(t *testing.T) {
	lin := LinearBackoff(3, 100*time.Millisecond)
	seen := map[time.Duration]bool{}
	for retry := 1; retry <= 3; retry++ {
		for i := 0; i < 50; i++ {
			d, ok := lin.Backoff(retry)
			if !ok || d < 50*time.Millisecond || d >= 150*time.Millisecond {
				t.Fatalf("LinearBackoff retry %d = %v, %v", retry, d, ok)
			}
			seen[d] = true
		}
	}
	if len(seen) < 10 {
		t.Fatal("LinearBackoff delays are not randomized")
	}
	if _, ok := lin.Backoff(4); ok {
		t.Fatal("LinearBackoff(3) allowed a 4th retry")
	}
	exp := ExponentialBackoff(10, 10*time.Millisecond, 80*time.Millisecond)
	for retry := 1; retry <= 10; retry++ {
		limit := min(10*time.Millisecond<<(retry-1), 80*time.Millisecond)
		for i := 0; i < 50; i++ {
			d, ok := exp.Backoff(retry)
			if !ok || d < time.Millisecond || d > limit {
				t.Fatalf("ExponentialBackoff retry %d = %v (limit %v)", retry, d, limit)
			}
		}
	}
	if _, ok := NoRetry().Backoff(1); ok {
		t.Fatal("NoRetry retried")
	}
}
