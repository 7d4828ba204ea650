package redlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// Seeds live in testdata/fuzz/<FuzzName>/ and run as normal tests in
// `go test`; run a fuzzer with
//
//	go test -run='^$' -fuzz=FuzzParseAddress -fuzztime=60s ./redlock/

// errorBoilerplate is the fixed text of address errors: a fuzzed "password"
// such as "port" may legitimately appear in it.
const errorBoilerplate = `empty address address longer than bytes address contains a space or control character ` +
	`unsupported scheme (want redis:// or rediss://) query strings and fragments are not supported; use Config fields ` +
	`bad username: truncated %-escape bad %-escape bad password escape (the password is not shown) bad database number ` +
	`want "host:port" or a redis:// URL missing host bad host:port: missing port in address too many colons in address ` +
	`IPv6 addresses must be bracketed: [::1]:6379 bad host bad port (want 1-65535) ` +
	`redlock: invalid Config.Servers[] Cluster[] xxxxx … ""`

// secretOf returns the part of an address that a reader would take for a
// password — in a URL "scheme://user:PASSWORD@host", and also in malformed
// spellings such as "redis:/user:PASSWORD@host" or "user:PASSWORD@host" —
// and the address with that part cut out. ok is false when there is none.
func secretOf(raw string) (secret, rest string, ok bool) {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return "", raw, false
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + 3
	}
	c := strings.IndexByte(raw[start:at], ':')
	if c < 0 {
		return "", raw, false
	}
	p0 := start + c + 1
	return raw[p0:at], raw[:p0] + raw[at:], true
}

// leaks reports whether text shows secret — or its first or last 12 bytes,
// as a truncated echo would — more often than the rest of the input and the
// fixed error texts can explain. Short secrets are skipped: "1" is in every
// port number.
func leaks(text, secret, rest string) bool {
	if len(secret) < 4 {
		return false
	}
	probes := []string{secret}
	if len(secret) > 12 {
		probes = append(probes, secret[:12], secret[len(secret)-12:])
	}
	for _, p := range probes {
		if strings.Count(text, p) > strings.Count(rest+"\x00"+errorBoilerplate, p) {
			return true
		}
	}
	return false
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:6379", "localhost", "redis://u:p@h:1/2", "rediss://:pw@[::1]:6380", "[::1]", "::1",
		"redis://u:pa%41ss@h", "redis://u:pa%zz@h", "REDIS://H:1", "redis://h/99999999", "redis://u:p@h:1?x",
		"redis:/u:secret@h:1", "u:secret@h:1", "redis://h:0", "h:+80", "redis://[a:b]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := parseAddress(raw)
		secret, rest, hasSecret := secretOf(raw)
		if err != nil {
			if hasSecret && leaks(err.Error(), secret, rest) {
				t.Fatalf("parseAddress(%q): the password %q appears in the error: %v", raw, secret, err)
			}
			return
		}
		if hasSecret && leaks(a.redacted, secret, rest) {
			t.Fatalf("parseAddress(%q): the password %q appears in the redacted form %q", raw, secret, a.redacted)
		}
		if a.password != "" && len(a.password) >= 4 && strings.Contains(a.redacted, a.password) && !strings.Contains(rest, a.password) {
			t.Fatalf("parseAddress(%q): the password appears in the redacted form %q", raw, a.redacted)
		}
		if a.port < 1 || a.port > 65535 || a.host == "" || a.db < 0 {
			t.Fatalf("parseAddress(%q) accepted host %q port %d db %d", raw, a.host, a.port, a.db)
		}
		if want := strings.HasPrefix(strings.ToLower(raw), "rediss://"); a.tls != want {
			t.Fatalf("parseAddress(%q): tls = %v", raw, a.tls)
		}
		// The identity names the same master when parsed again, in every
		// spelling the client shows or accepts.
		id := a.identity()
		forms := []string{"redis://" + id, "rediss://" + id, a.redacted}
		if a.db == 0 {
			forms = append(forms, id, a.hostPort())
		}
		for _, form := range forms {
			b, err := parseAddress(form)
			if err != nil {
				t.Fatalf("parseAddress(%q) → identity %q; %q does not parse: %v", raw, id, form, err)
			}
			if b.identity() != id {
				t.Fatalf("parseAddress(%q) → identity %q; %q has identity %q", raw, id, form, b.identity())
			}
		}
	})
}

var configField = regexp.MustCompile(`^(Servers|Cluster|PoolSize|DriftFactor|MaxRetry|RetryInterval|ReconnectInterval|NodeTimeout|DialTimeout|HealthCheckPeriod|ReleaseTimeout|KeyPrefix|MaxResourceLen|Username|Password|TLSConfig|Logger|RetryStrategy)(\[\d+\])*$`)

// fuzzConfig builds a Config from fuzzed values. shape: bits 0-2 the number
// of masters (taken from a0, a1, a2 and then distinct loopback addresses),
// bit 3 Cluster instead of Servers, bits 4-5 the group size − 1, bit 6 both
// Servers and Cluster, bit 7 one empty group.
func fuzzConfig(a0, a1, a2 string, shape uint8, pool, retry int, drift float64, d1, d2 int64, maxRes int, user, pass string) Config {
	pick := []string{a0, a1, a2, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}
	n := int(shape & 7)
	addrs := pick[:n]
	cfg := Config{
		PoolSize: pool, MaxRetry: retry, DriftFactor: drift,
		RetryInterval: time.Duration(d1), ReconnectInterval: time.Duration(d2),
		NodeTimeout: time.Duration(d1 >> 3), DialTimeout: time.Duration(d2 >> 5),
		HealthCheckPeriod: time.Duration(d1 ^ d2), ReleaseTimeout: time.Duration(d2 - d1),
		MaxResourceLen: maxRes, Username: user, Password: pass, KeyPrefix: user,
	}
	if shape&8 == 0 || shape&64 != 0 {
		cfg.Servers = addrs
	}
	if shape&8 != 0 {
		size := int(shape>>4&3) + 1
		for len(addrs) > 0 {
			k := min(size, len(addrs))
			cfg.Cluster = append(cfg.Cluster, addrs[:k])
			addrs = addrs[k:]
		}
		if shape&128 != 0 {
			cfg.Cluster = append(cfg.Cluster, nil)
		}
	}
	return cfg
}

func FuzzConfigValidate(f *testing.F) {
	f.Add("127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002", uint8(3), 2, 3, 0.01, int64(time.Second), int64(time.Second), 4096, "", "")
	f.Add("redis://u:Secret-1@h:1", "h:2", "h:3", uint8(3), 0, 0, 0.0, int64(0), int64(0), 0, "user", "Config-Pass-1")
	f.Add("redis://u:Secret-2@h:99999", "h:2", "h:3", uint8(3), 0, 0, 0.0, int64(0), int64(0), 0, "", "")
	f.Add("h:1", "h:1", "h:3", uint8(3), 0, 0, 0.0, int64(0), int64(0), 0, "", "")
	f.Add("h:1", "h:2", "h:3", uint8(0x1f), -1, 0, math.NaN(), int64(-1), int64(0), -1, "", "")
	f.Add("h:1", "h:2", "h:3", uint8(0x28|0x80), 0, 0, 0.0, int64(0), int64(0), 0, "", "")
	f.Fuzz(func(t *testing.T, a0, a1, a2 string, shape uint8, pool, retry int, drift float64, d1, d2 int64, maxRes int, user, pass string) {
		cfg := fuzzConfig(a0, a1, a2, shape, pool, retry, drift, d1, d2, maxRes, user, pass)
		s, err := cfg.validate()
		// Neither %v nor the error may depend on the value of Config.Password.
		other := cfg
		if other.Password != "" {
			other.Password = "a-different-password"
		}
		_, otherErr := other.validate()
		formatted := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg)
		if f2 := fmt.Sprintf("%v %+v %#v %s", other, other, other, other); formatted != f2 {
			t.Fatalf("%%v of Config depends on Config.Password:\n%s\n%s", formatted, f2)
		}
		if fmt.Sprint(err) != fmt.Sprint(otherErr) {
			t.Fatalf("validate's error depends on Config.Password:\n%v\n%v", err, otherErr)
		}
		for _, a := range []string{a0, a1, a2} {
			if secret, rest, ok := secretOf(a); ok && leaks(formatted, secret, rest+"\x00"+a0+a1+a2+user) {
				t.Fatalf("the password %q of %q appears in %%v of the Config: %s", secret, a, formatted)
			}
		}
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("validate: %T is not a *ConfigError: %v", err, err)
			}
			if !configField.MatchString(ce.Field) || ce.Reason == "" {
				t.Fatalf("validate: ConfigError names no field or reason: %#v", ce)
			}
			msg := err.Error()
			for _, a := range []string{a0, a1, a2} {
				if secret, rest, ok := secretOf(a); ok && leaks(msg, secret, rest) {
					t.Fatalf("the password %q of %q appears in the error: %v", secret, a, err)
				}
			}
			return
		}
		// Accepted: the defaults are usable and the drift allowance leaves a TTL.
		if len(s.groups) == 0 {
			t.Fatal("accepted with no group")
		}
		for _, g := range s.groups {
			if len(g)%2 == 0 {
				t.Fatalf("accepted a group of %d masters", len(g))
			}
		}
		for name, d := range map[string]time.Duration{"RetryInterval": s.RetryInterval, "ReconnectInterval": s.ReconnectInterval,
			"NodeTimeout": s.NodeTimeout, "DialTimeout": s.DialTimeout, "HealthCheckPeriod": s.HealthCheckPeriod, "ReleaseTimeout": s.ReleaseTimeout} {
			if d <= 0 {
				t.Fatalf("accepted %s = %v", name, d)
			}
		}
		if s.PoolSize < 1 || s.PoolSize > 1024 || s.MaxResourceLen < 1 || (s.MaxRetry < 0 && s.MaxRetry != NoRetries) {
			t.Fatalf("accepted PoolSize %d MaxResourceLen %d MaxRetry %d", s.PoolSize, s.MaxResourceLen, s.MaxRetry)
		}
		if m := minTTL(s.DriftFactor); m <= 0 || validity(2*m, 0, s.DriftFactor) <= 0 {
			t.Fatalf("accepted DriftFactor %v: the smallest TTL is %v (validity of 2× it: %v) — no TTL can hold a lock",
				s.DriftFactor, m, validity(2*m, 0, s.DriftFactor))
		}
	})
}

// FuzzResource sends fuzzed resource names through TryLock, IsLocked,
// Extend and Release against one real redis-server, started once per fuzz
// process (each -fuzz worker has its own) and shared by every input.
func FuzzResource(f *testing.F) {
	for _, s := range []string{"a", "lock:1", "\x00", "a\x00b", "\r\nDEL x\r\n", "*1\r\n$4\r\nPING\r\n", "ключ", "🔒", "\xff\xfe",
		" ", "{tag}", strings.Repeat("x", DefaultMaxResourceLen), strings.Repeat("y", DefaultMaxResourceLen+1)} {
		f.Add(s)
	}
	srv := redisproc.StartT(f, 1, redisproc.Options{})[0]
	c, err := New(Config{Servers: []string{srv.Addr()}, Logger: quietLogger, NodeTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	f.Fuzz(func(t *testing.T, resource string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := c.TryLock(ctx, resource, 5*time.Second)
		if resource == "" || len(resource) > DefaultMaxResourceLen {
			var ie *InputError
			if !errors.As(err, &ie) || errors.Is(err, ErrNotObtained) {
				t.Fatalf("TryLock(%d bytes) = %v; want an *InputError", len(resource), err)
			}
			if _, err := c.IsLocked(ctx, resource); !errors.As(err, &ie) {
				t.Fatalf("IsLocked(%d bytes) = %v; want an *InputError", len(resource), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("TryLock(%q): %v", resource, err)
		}
		if got := keyOn(t, srv, resource); got != l.Token() {
			t.Fatalf("TryLock(%q): key holds %q, want the token %q", resource, got, l.Token())
		}
		if ok, err := c.IsLocked(ctx, resource); err != nil || !ok {
			t.Fatalf("IsLocked(%q) = %v, %v after TryLock", resource, ok, err)
		}
		if _, err := c.TryLock(ctx, resource, time.Second); !errors.Is(err, ErrNotObtained) {
			t.Fatalf("second TryLock(%q) = %v; want ErrNotObtained", resource, err)
		}
		if err := l.Extend(ctx, 5*time.Second); err != nil {
			t.Fatalf("Extend(%q): %v", resource, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release(%q): %v", resource, err)
		}
		if ok, err := c.IsLocked(ctx, resource); err != nil || ok {
			t.Fatalf("IsLocked(%q) = %v, %v after Release", resource, ok, err)
		}
		if got := keyOn(t, srv, resource); got != "" {
			t.Fatalf("Release(%q) left %q", resource, got)
		}
	})
}

// TestResourceHostileNames locks binary, unicode, NUL, RESP-looking and huge
// resource names on a real 3-master group and checks the stored key byte for
// byte; it also checks MaxResourceLen and its error.
func TestResourceHostileNames(t *testing.T) {
	f := fleet(t, 1, 3)
	ctx := context.Background()
	for _, s := range f[0] {
		if _, err := s.Do(ctx, "SET", "victim", "v"); err != nil {
			t.Fatal(err)
		}
	}
	huge := strings.Repeat("\x00\xff€", 1<<20/5)
	for _, tc := range []struct {
		name, prefix string
		maxLen       int
		resources    []string
	}{
		{"default limit", "", 0, []string{
			"\x00", "a\x00b\x00", "\r\nDEL victim\r\n", "*2\r\n$3\r\nDEL\r\n$6\r\nvictim\r\n", "ключ-🔒-鍵", "\xff\xfe\xfd",
			"\u202eevil", " ", "*", "victim?", strings.Repeat("z", DefaultMaxResourceLen),
			string([]byte{0xc0, 0x80}), strings.Repeat("\x00", DefaultMaxResourceLen),
		}},
		{"binary key prefix", "\x00pfx\xff:", 0, []string{"a", "\x00", "ключ"}},
		{"1 MiB resource with MaxResourceLen 1 MiB", "", 1 << 20, []string{huge}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(f)
			cfg.KeyPrefix, cfg.MaxResourceLen, cfg.NodeTimeout = tc.prefix, tc.maxLen, 2*time.Second
			c := newClient(t, cfg)
			for _, r := range tc.resources {
				name := fmt.Sprintf("%.40q (%d bytes, valid UTF-8 %v)", r, len(r), utf8.ValidString(r))
				l, err := c.TryLock(ctx, r, 5*time.Second)
				if err != nil {
					t.Fatalf("TryLock %s: %v", name, err)
				}
				for _, s := range f[0] {
					eventually(t, 2*time.Second, "key on "+s.Addr(), func() bool { return keyOn(t, s, tc.prefix+r) == l.Token() })
				}
				if ok, err := c.IsLocked(ctx, r); err != nil || !ok {
					t.Errorf("IsLocked %s = %v, %v", name, ok, err)
				}
				if err := l.Release(ctx); err != nil {
					t.Errorf("Release %s: %v", name, err)
				}
				if ok, err := c.IsLocked(ctx, r); err != nil || ok {
					t.Errorf("IsLocked after Release %s = %v, %v", name, ok, err)
				}
			}
		})
	}
	for _, s := range f[0] {
		if got := keyOn(t, s, "victim"); got != "v" {
			t.Errorf("%s: a RESP-looking resource changed another key: victim = %q", s.Addr(), got)
		}
	}

	t.Run("MaxResourceLen", func(t *testing.T) {
		for _, tc := range []struct {
			maxLen, ok, tooLong int
		}{
			{0, DefaultMaxResourceLen, DefaultMaxResourceLen + 1},
			{16, 16, 17},
		} {
			cfg := clusterConfig(f)
			cfg.MaxResourceLen = tc.maxLen
			c := newClient(t, cfg)
			l, err := c.TryLock(ctx, strings.Repeat("m", tc.ok), time.Second)
			if err != nil {
				t.Fatalf("TryLock of %d bytes (MaxResourceLen %d): %v", tc.ok, tc.maxLen, err)
			}
			_ = l.Release(ctx)
			long := strings.Repeat("m", tc.tooLong)
			var ie *InputError
			_, err = c.TryLock(ctx, long, time.Second)
			if !errors.As(err, &ie) || errors.Is(err, ErrNotObtained) || ie.Arg != "resource" || !strings.Contains(err.Error(), "MaxResourceLen") {
				t.Fatalf("TryLock of %d bytes (MaxResourceLen %d) = %v; want an *InputError naming MaxResourceLen", tc.tooLong, tc.maxLen, err)
			}
			t.Logf("%v", err)
			if strings.Contains(err.Error(), long) {
				t.Errorf("the error echoes the whole resource")
			}
			if _, err := c.Lock(ctx, long, time.Second); !errors.As(err, &ie) {
				t.Errorf("Lock too long = %v; want *InputError", err)
			}
			if _, err := c.IsLocked(ctx, long); !errors.As(err, &ie) {
				t.Errorf("IsLocked too long = %v; want *InputError", err)
			}
			if err := c.Do(ctx, long, time.Second, func(context.Context) error { t.Error("fn ran"); return nil }); !errors.As(err, &ie) {
				t.Errorf("Do too long = %v; want *InputError", err)
			}
			if _, err := c.TryLock(ctx, "", time.Second); !errors.As(err, &ie) {
				t.Errorf("TryLock(\"\") = %v; want *InputError", err)
			}
		}
	})
}

// TestResourceWrongTypeKey puts a hash where the lock's string key lives.
// Release, Extend and IsLocked must report the server's WRONGTYPE as an
// error, never as "not held" or "locked"/"busy".
func TestResourceWrongTypeKey(t *testing.T) {
	f := fleet(t, 1, 3)
	// A generous NodeTimeout: the test is about WRONGTYPE replies, and a
	// healthy master that misses the 100 ms default on a loaded machine
	// would be reported as timed out (or marked down) instead.
	c := newClient(t, Config{Servers: redisproc.Addrs(f[0]), MaxRetry: 1, RetryInterval: 5 * time.Millisecond, NodeTimeout: 5 * time.Second})
	ctx := context.Background()
	toHash := func(key string) {
		for _, s := range f[0] {
			if _, err := s.Do(ctx, "DEL", key); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Do(ctx, "HSET", key, "f", "v"); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("Release and Extend", func(t *testing.T) {
		l, err := c.Lock(ctx, "wt-held", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range f[0] {
			eventually(t, 10*time.Second, "key set", func() bool { return keyOn(t, s, "wt-held") == l.Token() })
		}
		toHash("wt-held")
		err = l.Extend(ctx, 30*time.Second)
		t.Logf("Extend over a hash: %v", err)
		if err == nil || errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("Extend over a hash = %v; want an error with WRONGTYPE, not ErrNotHeld", err)
		}
		err = l.Release(ctx)
		t.Logf("Release over a hash: %v", err)
		if err == nil || errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("Release over a hash = %v; want an error with WRONGTYPE, not ErrNotHeld", err)
		}
		var qe *QuorumError
		if errors.As(err, &qe) && len(qe.Failed()) < 2 {
			t.Errorf("Release: %d failed masters, want every master of the majority named: %v", len(qe.Failed()), err)
		}
		for _, st := range c.MasterStats() {
			if !st.Up {
				t.Errorf("%s marked down by a WRONGTYPE reply", st.Addr)
			}
		}
	})

	t.Run("IsLocked", func(t *testing.T) {
		toHash("wt-islocked")
		ok, err := c.IsLocked(ctx, "wt-islocked")
		t.Logf("IsLocked over a hash = %v, %v", ok, err)
		if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("IsLocked over a hash = %v, %v; want an error with WRONGTYPE (EXISTS says \"locked\" for any type)", ok, err)
		}
	})

	t.Run("TryLock and Lock", func(t *testing.T) {
		// SET NX answers nil for an existing key of any type; the client
		// then checks the type so the hash is reported, not taken for busy.
		toHash("wt-acquire")
		l, err := c.TryLock(ctx, "wt-acquire", 30*time.Second)
		if l != nil {
			t.Fatalf("TryLock over a hash obtained a lock")
		}
		var qe *QuorumError
		if err == nil || errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), "WRONGTYPE") || !errors.As(err, &qe) {
			t.Fatalf("TryLock over a hash = %v; want a *QuorumError with WRONGTYPE, not ErrNotObtained", err)
		}
		start := time.Now()
		_, err = c.Lock(ctx, "wt-acquire", 30*time.Second)
		if err == nil || errors.Is(err, ErrNotObtained) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("Lock over a hash = %v; want WRONGTYPE, not ErrNotObtained", err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("Lock over a hash retried instead of reporting at once")
		}
		for _, s := range f[0] {
			if got, _ := s.Do(ctx, "TYPE", "wt-acquire"); got != "+hash" {
				t.Errorf("%s: the failed attempt's cleanup changed the hash: TYPE = %q", s.Addr(), got)
			}
		}
	})
}
