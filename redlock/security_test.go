package redlock

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/internal/tlsgen"
)

// ---------------------------------------------------------------- TLS

// tlsServer is a redis-server with a TLS port. The plaintext port stays open
// (redisproc checks readiness on it, and the tests read keys through it);
// the client under test only ever dials the TLS port.
type tlsServer struct {
	*redisproc.Server
	tlsAddr string
}

func genTLS(t *testing.T, name string) *tlsgen.Bundle {
	t.Helper()
	b, err := tlsgen.Generate(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTLS starts n redis-servers that serve TLS with b's server certificate;
// with authClients they demand a client certificate signed by b's CA.
func startTLS(t *testing.T, n int, b *tlsgen.Bundle, authClients bool) []tlsServer {
	t.Helper()
	auth := "no"
	if authClients {
		auth = "yes"
	}
	out := make([]tlsServer, n)
	for i := range out {
		var s *redisproc.Server
		var err error
		var port int
		for try := 0; try < 5; try++ { // the TLS port is picked before start: retry a lost race
			port = freeLoopbackPort(t)
			s, err = redisproc.Start(redisproc.Options{Args: []string{
				"--tls-port", strconv.Itoa(port),
				"--tls-cert-file", b.ServerCertFile,
				"--tls-key-file", b.ServerKeyFile,
				"--tls-ca-cert-file", b.CAFile,
				"--tls-auth-clients", auth,
			}})
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("start TLS redis-server: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out[i] = tlsServer{Server: s, tlsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	}
	return out
}

// exerciseLock runs Lock, the key check on every master, IsLocked, Extend,
// Release and IsLocked again; it fails the test on any error.
func exerciseLock(t *testing.T, c *Client, masters []*redisproc.Server, keyPrefix, resource string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Lock(ctx, resource, 5*time.Second)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	// Lock returns at the early quorum: the last master's SET may still be in flight.
	for _, s := range masters {
		eventually(t, 2*time.Second, s.Addr()+": key holds the token", func() bool {
			return keyOn(t, s, keyPrefix+resource) == l.Token()
		})
	}
	if ok, err := c.IsLocked(ctx, resource); err != nil || !ok {
		t.Errorf("IsLocked after Lock = %v, %v; want true, nil", ok, err)
	}
	if err := l.Extend(ctx, 6*time.Second); err != nil {
		t.Errorf("Extend: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if ok, err := c.IsLocked(ctx, resource); err != nil || ok {
		t.Errorf("IsLocked after Release = %v, %v; want false, nil", ok, err)
	}
}

func plainServers(ts []tlsServer) []*redisproc.Server {
	out := make([]*redisproc.Server, len(ts))
	for i, s := range ts {
		out[i] = s.Server
	}
	return out
}

func TestSecurityTLSGoodChain(t *testing.T) {
	b := genTLS(t, "good")
	ts := startTLS(t, 3, b, false)
	var rediss, hostPort []string
	for _, s := range ts {
		rediss = append(rediss, "rediss://"+s.tlsAddr)
		hostPort = append(hostPort, s.tlsAddr)
	}
	for _, tc := range []struct {
		name    string
		servers []string
	}{
		{"rediss URL with Config.TLSConfig", rediss},
		{"host:port with Config.TLSConfig", hostPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, Config{Servers: tc.servers, TLSConfig: &tls.Config{RootCAs: b.CAPool, MinVersion: tls.VersionTLS12}})
			for _, st := range c.MasterStats() {
				if !st.Up {
					t.Fatalf("%s down after New: %s", st.Addr, st.LastError)
				}
			}
			exerciseLock(t, c, plainServers(ts), "", "tls-good")
		})
	}
}

// checkDownQuickly asserts that New succeeded with the only master down with
// an error that mentions want, and that TryLock answers quickly with
// ErrNotObtained naming the master.
func checkDownQuickly(t *testing.T, c *Client, addr string, want ...string) {
	t.Helper()
	st := c.MasterStats()[0]
	if st.Up {
		t.Fatalf("%s is up; want down", st.Addr)
	}
	t.Logf("MasterStats: Up=%v LastError=%q", st.Up, st.LastError)
	for _, w := range want {
		if !strings.Contains(st.LastError, w) {
			t.Errorf("LastError %q does not mention %q", st.LastError, w)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.TryLock(ctx, "tls-bad", time.Second)
	took := time.Since(start)
	if err == nil {
		_ = l.Release(ctx)
		t.Fatal("TryLock succeeded against a master that must be unreachable")
	}
	t.Logf("TryLock (%v): %v", took.Round(time.Microsecond), err)
	if !errors.Is(err, ErrNotObtained) {
		t.Errorf("TryLock error is not ErrNotObtained: %v", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("TryLock error does not name the master %s: %v", addr, err)
	}
	if took > 5*time.Second { // liveness: the master is down, it votes no at once (generous: a loaded machine)
		t.Errorf("TryLock took %v with the master down", took)
	}
}

// TestSecurityTLSFailures: every refused handshake leaves the master down
// with an error that says why. The cases that expect a certificate error
// give the dial 10 s: they are about the error, not about speed, and loading
// the system roots on the first handshake alone took 0.45–2.2 s under -race
// on a loaded machine (beyond the 1 s default DialTimeout, which then
// reported a timeout instead of the certificate).
func TestSecurityTLSFailures(t *testing.T) {
	const dial = 10 * time.Second
	good := genTLS(t, "good")
	other := genTLS(t, "other")
	ts := startTLS(t, 1, good, false)[0]
	t.Run("wrong CA", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{"rediss://" + ts.tlsAddr},
			TLSConfig: &tls.Config{RootCAs: other.CAPool}, DialTimeout: dial})
		checkDownQuickly(t, c, ts.tlsAddr, "certificate")
	})
	t.Run("rediss without TLSConfig: system roots do not know the test CA", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{"rediss://" + ts.tlsAddr}, DialTimeout: dial})
		checkDownQuickly(t, c, ts.tlsAddr, "certificate")
	})
	t.Run("server name mismatch", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{"rediss://" + ts.tlsAddr},
			TLSConfig: &tls.Config{RootCAs: good.CAPool, ServerName: "not-this-server.example"}, DialTimeout: dial})
		checkDownQuickly(t, c, ts.tlsAddr, "certificate")
	})
	t.Run("TLS client to the plaintext port", func(t *testing.T) {
		// The server waits for a line that never comes: DialTimeout bounds the handshake.
		c := newClient(t, Config{Servers: []string{"rediss://" + ts.Addr()},
			TLSConfig: &tls.Config{RootCAs: good.CAPool}, DialTimeout: 300 * time.Millisecond})
		checkDownQuickly(t, c, ts.Addr())
	})
	t.Run("plaintext client to the TLS port", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{ts.tlsAddr}})
		checkDownQuickly(t, c, ts.tlsAddr)
	})
}

func TestSecurityTLSMutual(t *testing.T) {
	b := genTLS(t, "mtls")
	other := genTLS(t, "stranger")
	ts := startTLS(t, 1, b, true)[0]
	addr := "rediss://" + ts.tlsAddr
	t.Run("with the client certificate", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{addr},
			TLSConfig: &tls.Config{RootCAs: b.CAPool, Certificates: []tls.Certificate{b.ClientCert}}})
		exerciseLock(t, c, []*redisproc.Server{ts.Server}, "", "mtls")
	})
	t.Run("without a client certificate", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{addr}, TLSConfig: &tls.Config{RootCAs: b.CAPool}})
		checkDownQuickly(t, c, ts.tlsAddr)
	})
	t.Run("with a client certificate of another CA", func(t *testing.T) {
		c := newClient(t, Config{Servers: []string{addr},
			TLSConfig: &tls.Config{RootCAs: b.CAPool, Certificates: []tls.Certificate{other.ClientCert}}})
		checkDownQuickly(t, c, ts.tlsAddr)
	})
}

// ---------------------------------------------------------------- ACL

const aclUser = "locker"

// isLockedCmd is the command IsLocked sends: TYPE, so that a key of another
// type is reported as WRONGTYPE, not "locked" (see TestResourceWrongTypeKey).
const isLockedCmd = "type"

// minimalACL is the smallest rule set the lock client needs (see ACL.md),
// without the commands in minus. keys is the key pattern, e.g. "~*" or "~lock:*".
func minimalACL(keys string, minus ...string) []string {
	cmds := []string{"+ping", "+set", "+" + isLockedCmd, "+evalsha", "+eval", "+script|load", "+info", "+get", "+del", "+pexpire", "+hget", "+hset", "+time",
		"+exists", "+pttl", "+publish", "+subscribe", "+unsubscribe"}
	out := []string{}
	for _, c := range cmds {
		skip := false
		for _, m := range minus {
			if c == "+"+m {
				skip = true
			}
		}
		if !skip {
			out = append(out, c)
		}
	}
	channels := "&" + releasedChannelPrefix + strings.TrimPrefix(keys, "~") // the release channels of those keys
	return append([]string{"-@all", keys, "resetchannels", channels}, out...)
}

// exerciseWaiting runs Await against a held lock (woken by its release),
// and LockAll, under the ACL rule in force.
func exerciseWaiting(t *testing.T, c *Client, resource string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.Lock(ctx, resource, time.Minute)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		l2, err := c.Await(ctx, resource, 5*time.Second)
		if err == nil {
			err = l2.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Await: %v", err)
	}
	m, err := c.LockAll(ctx, []string{resource + "-b", resource + "-a"}, 5*time.Second)
	if err != nil {
		t.Fatalf("LockAll: %v", err)
	}
	if err := m.Extend(ctx, 5*time.Second); err != nil {
		t.Errorf("MultiLock.Extend: %v", err)
	}
	if err := m.Release(ctx); err != nil {
		t.Fatalf("MultiLock.Release: %v", err)
	}
}

// setACLUser (re)creates the ACL user with password and rules on s, through
// the default user (kept open so tests can inspect keys), and clears the ACL log.
func setACLUser(t *testing.T, s *redisproc.Server, password string, rules []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	args := append([]string{"ACL", "SETUSER", aclUser, "reset", "on", ">" + password}, rules...)
	if got, err := s.Do(ctx, args...); err != nil || got != "+OK" {
		t.Fatalf("ACL SETUSER: %q %v", got, err)
	}
	if _, err := s.Do(ctx, "ACL", "LOG", "RESET"); err != nil {
		t.Fatal(err)
	}
}

// aclDenials returns how many entries the ACL log holds ("*N").
func aclDenials(t *testing.T, s *redisproc.Server) int {
	t.Helper()
	got, err := s.Do(context.Background(), "ACL", "LOG")
	if err != nil || !strings.HasPrefix(got, "*") {
		t.Fatalf("ACL LOG: %q %v", got, err)
	}
	n, _ := strconv.Atoi(got[1:])
	return n
}

// aclURL is the URL of s for aclUser with password pass.
func aclURL(pass string, s *redisproc.Server) string {
	return "redis://" + aclUser + ":" + pass + "@" + s.Addr()
}

func TestSecurityACLMinimalRule(t *testing.T) {
	const pass = "s3cret-Minimal-Pass"
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	urls := func() []string {
		var out []string
		for _, s := range servers {
			out = append(out, aclURL(pass, s))
		}
		return out
	}
	setAll := func(t *testing.T, rules []string) {
		for _, s := range servers {
			setACLUser(t, s, pass, rules)
		}
	}
	denials := func(t *testing.T) int {
		n := 0
		for _, s := range servers {
			n += aclDenials(t, s)
		}
		return n
	}

	t.Run("credentials in the URL, ~*", func(t *testing.T) {
		setAll(t, minimalACL("~*"))
		// Fencing and RestartQuarantine exercise +time and +info too (a
		// nanosecond of quarantine: INFO is read, nothing is refused).
		c := newClient(t, Config{Servers: urls(), Fencing: true, RestartQuarantine: time.Nanosecond})
		exerciseLock(t, c, servers, "", "acl-url")
		exerciseWaiting(t, c, "acl-url-wait")
		if n := denials(t); n != 0 {
			t.Errorf("ACL LOG has %d denials with the minimal rule", n)
		}
	})
	t.Run("Config.Username/Password, key prefix ~lock:*", func(t *testing.T) {
		setAll(t, minimalACL("~lock:*"))
		c := newClient(t, Config{Servers: redisproc.Addrs(servers), Username: aclUser, Password: pass, KeyPrefix: "lock:", Fencing: true, RestartQuarantine: time.Nanosecond})
		exerciseLock(t, c, servers, "lock:", "acl-prefix")
		exerciseWaiting(t, c, "acl-prefix-wait")
		if n := denials(t); n != 0 {
			t.Errorf("ACL LOG has %d denials with the minimal rule", n)
		}
		// A resource outside the pattern (no prefix configured): a clear NOPERM, not "busy".
		c2 := newClient(t, Config{Servers: redisproc.Addrs(servers), Username: aclUser, Password: pass})
		_, err := c2.TryLock(context.Background(), "outside", time.Second)
		t.Logf("TryLock outside the key pattern: %v", err)
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("TryLock outside the key pattern = %v; want an error with NOPERM", err)
		}
	})
	t.Run("SCRIPT LOAD denied is tolerated (EVALSHA → NOSCRIPT → EVAL)", func(t *testing.T) {
		setAll(t, minimalACL("~*", "script|load"))
		ctx := context.Background()
		for _, s := range servers {
			if _, err := s.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
		c := newClient(t, Config{Servers: urls()})
		for _, st := range c.MasterStats() {
			if !st.Up {
				t.Fatalf("%s down when SCRIPT LOAD is denied: %s", st.Addr, st.LastError)
			}
		}
		exerciseLock(t, c, servers, "", "acl-noscriptload")
	})

	t.Run("INFO denied is tolerated (no duplicate-server detection)", func(t *testing.T) {
		setAll(t, minimalACL("~*", "info"))
		var logs syncBuffer
		c := newClient(t, Config{Servers: urls(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		for _, st := range c.MasterStats() {
			if !st.Up {
				t.Fatalf("%s down when INFO is denied: %s", st.Addr, st.LastError)
			}
		}
		exerciseLock(t, c, servers, "", "acl-noinfo")
		if !strings.Contains(logs.String(), "INFO denied") {
			t.Errorf("no warning that duplicate servers cannot be detected: %s", logs.String())
		}
	})

	t.Run("without pub/sub grants waiting falls back to timers", func(t *testing.T) {
		// A release whose PUBLISH is denied still releases (pcall); a
		// refused SUBSCRIBE leaves waiters on their PTTL-bounded timers.
		setAll(t, minimalACL("~*", "publish", "subscribe", "unsubscribe"))
		c := newClient(t, Config{Servers: urls()})
		exerciseLock(t, c, servers, "", "acl-nopubsub")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		l, err := c.Lock(ctx, "acl-nopubsub-wait", 600*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := c.Await(ctx, "acl-nopubsub-wait", 5*time.Second) // gets it when the key expires
		if err != nil {
			t.Fatalf("Await without pub/sub: %v", err)
		}
		if l.Valid() {
			t.Error("two holders")
		}
		_ = l2.Release(ctx)
	})

	t.Run("default user off: AUTH/HELLO need no grant", func(t *testing.T) {
		// HELLO and AUTH are "no-auth" commands: Redis runs them before any
		// user is authenticated, whatever the rules. With the default user
		// disabled, nothing else could run them for us.
		s := redisproc.StartT(t, 1, redisproc.Options{})[0]
		setACLUser(t, s, pass, minimalACL("~*"))
		if got, err := s.Do(context.Background(), "ACL", "SETUSER", "default", "off"); err != nil || got != "+OK" {
			t.Fatalf("ACL SETUSER default off: %q %v", got, err)
		}
		c := newClient(t, Config{Servers: []string{aclURL(pass, s)}})
		exerciseLock(t, c, nil, "", "acl-default-off") // keys cannot be read without a user
	})

	t.Run("a database other than 0 needs +select", func(t *testing.T) {
		addr := aclURL(pass, servers[0]) + "/1"
		setACLUser(t, servers[0], pass, append(minimalACL("~*"), "+select"))
		c := newClient(t, Config{Servers: []string{addr}})
		exerciseLock(t, c, nil, "", "acl-db1") // the key lives in db 1: not readable through redisproc
		setACLUser(t, servers[0], pass, minimalACL("~*"))
		c2 := newClient(t, Config{Servers: []string{addr}})
		if st := c2.MasterStats()[0]; st.Up || !strings.Contains(st.LastError, "NOPERM") {
			t.Errorf("db 1 without +select: up %v, LastError %q; want down with NOPERM", st.Up, st.LastError)
		}
	})

	// Every command of the rule is needed: without it, some operation fails
	// with a clear NOPERM error naming the master (never "busy"/"not held").
	ctx := context.Background()
	for _, cmd := range []string{"ping", "set", isLockedCmd, "evalsha", "eval", "get", "del", "pexpire", "hget", "hset", "time", "info"} {
		t.Run("without "+cmd, func(t *testing.T) {
			setAll(t, minimalACL("~*", cmd))
			for _, s := range servers {
				_, _ = s.Do(ctx, "SCRIPT", "FLUSH")
				_, _ = s.Do(ctx, "FLUSHALL") // a new fence counter starts from TIME
			}
			c := newClient(t, Config{Servers: urls(), Fencing: true, RestartQuarantine: time.Nanosecond})
			var errs []error
			l, err := c.TryLock(ctx, "acl-minus-"+cmd, 5*time.Second)
			errs = append(errs, err)
			if err == nil {
				_, err = c.IsLocked(ctx, "acl-minus-"+cmd)
				errs = append(errs, err)
				if cmd == "eval" { // EVAL is the fallback when the server lost the scripts
					for _, s := range servers {
						_, _ = s.Do(ctx, "SCRIPT", "FLUSH")
					}
				}
				errs = append(errs, l.Extend(ctx, 5*time.Second))
				errs = append(errs, l.Release(ctx))
			}
			failed := errors.Join(errs...)
			if failed == nil {
				t.Fatalf("every operation succeeded without +%s: the rule is not minimal", cmd)
			}
			t.Logf("without +%s: %v", cmd, failed)
			if errors.Is(failed, ErrNotHeld) {
				t.Errorf("a permission failure was reported as ErrNotHeld: %v", failed)
			}
			// Direct commands fail with NOPERM; commands inside a script with
			// "ERR The user executing the script can't run this command".
			if msg := failed.Error(); cmd != "ping" && !strings.Contains(msg, "NOPERM") && !strings.Contains(msg, "can't run this command") {
				t.Errorf("error does not report the permission failure: %v", failed)
			}
			if cmd == "ping" || cmd == "info" {
				if st := c.MasterStats()[0]; st.Up || !strings.Contains(st.LastError, "NOPERM") {
					t.Errorf("without +%s: MasterStats = up %v, %q; want down with NOPERM", cmd, st.Up, st.LastError)
				}
			}
			if cmd == "info" && !strings.Contains(c.MasterStats()[0].LastError, "+info") {
				t.Errorf("without +info: LastError %q does not say the rule needs +info", c.MasterStats()[0].LastError)
			}
			if denials(t) == 0 {
				t.Errorf("the ACL log shows no denial")
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a slog handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noSecret fails the test if text contains the password.
func noSecret(t *testing.T, where, text, password string) {
	t.Helper()
	if strings.Contains(text, password) {
		t.Errorf("the password appears in %s: %s", where, text)
	}
}

// catch runs fn and returns the message of a panic, if any.
func catch(fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	fn()
	return ""
}

func TestSecurityACLWrongPassword(t *testing.T) {
	const good = "right-Pass-1f0c"
	const wrong = "WRONG-pass-9b2e7d"
	servers := redisproc.StartT(t, 2, redisproc.Options{})
	s, rp := servers[0], servers[1]
	setACLUser(t, s, good, minimalACL("~*"))
	// rp: requirepass (a password on the default user) — set last: redisproc
	// cannot talk to it afterwards.
	if got, err := rp.Do(context.Background(), "CONFIG", "SET", "requirepass", good); err != nil || got != "+OK" {
		t.Fatalf("CONFIG SET requirepass: %q %v", got, err)
	}

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"password in the URL", Config{Servers: []string{aclURL(wrong, s)}}},
		{"Config.Username/Password", Config{Servers: []string{s.Addr()}, Username: aclUser, Password: wrong}},
		{"Config.Password alone against requirepass", Config{Servers: []string{rp.Addr()}, Password: wrong}},
		{"password only in the URL against requirepass", Config{Servers: []string{"redis://:" + wrong + "@" + rp.Addr()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			cfg := tc.cfg
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.ReconnectInterval = 10 * time.Millisecond
			cfg.RetryInterval = 10 * time.Millisecond

			var c *Client
			var err error
			if p := catch(func() { c, err = New(cfg) }); p != "" {
				noSecret(t, "a panic of New", p, wrong)
				t.Fatalf("New panicked: %s", p)
			}
			if err != nil {
				noSecret(t, "New's error", err.Error(), wrong)
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			// Let the background reconnect loop fail a few times (it logs and stores errors too).
			time.Sleep(60 * time.Millisecond)

			st := c.MasterStats()[0]
			t.Logf("MasterStats: Up=%v LastError=%q", st.Up, st.LastError)
			if st.Up {
				t.Fatal("master up with a wrong password")
			}
			if !strings.Contains(st.LastError, "WRONGPASS") {
				t.Errorf("LastError %q does not say WRONGPASS", st.LastError)
			}
			noSecret(t, "MasterStats().LastError", st.LastError, wrong)
			noSecret(t, "MasterStats().Addr", st.Addr, wrong)
			noSecret(t, "%+v of MasterStats", fmt.Sprintf("%+v", c.MasterStats()), wrong)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var ops []error
			if p := catch(func() {
				l, err := c.TryLock(ctx, "acl-wrong", time.Second)
				ops = append(ops, err)
				if l != nil {
					ops = append(ops, l.Release(ctx))
				}
				_, err = c.IsLocked(ctx, "acl-wrong")
				ops = append(ops, err)
				_, err = c.Lock(ctx, "acl-wrong-2", time.Second)
				ops = append(ops, err)
				err = c.Do(ctx, "acl-wrong-3", time.Second, func(context.Context) error { return nil })
				ops = append(ops, err)
				for _, pr := range c.Ping(ctx) {
					ops = append(ops, pr.Err)
					noSecret(t, "PingResult.Addr", pr.Addr, wrong)
				}
			}); p != "" {
				noSecret(t, "a recovered panic", p, wrong)
				t.Errorf("operations panicked: %s", p)
			}
			// Hostile call: a nil context. Whatever happens, no password in a panic.
			if p := catch(func() { _, _ = c.TryLock(nil, "acl-nil", time.Second) }); p != "" { //nolint:staticcheck // deliberate nil ctx
				noSecret(t, "the panic of a nil-context call", p, wrong)
				t.Logf("TryLock(nil ctx) panics (no secret in it): %.80s", p)
			}
			if ops[0] == nil || !errors.Is(ops[0], ErrNotObtained) {
				t.Errorf("TryLock with a wrong password = %v; want ErrNotObtained", ops[0])
			} else if master := strings.TrimPrefix(tc.cfg.Servers[0][strings.LastIndex(tc.cfg.Servers[0], "@")+1:], "redis://"); !strings.Contains(ops[0].Error(), master) {
				t.Errorf("TryLock error does not name the master %s: %v", master, ops[0])
			}
			t.Logf("TryLock: %v", ops[0])
			for _, e := range ops {
				if e != nil {
					noSecret(t, "an operation's error", e.Error(), wrong)
					noSecret(t, "%+v of an operation's error", fmt.Sprintf("%+v %#v", e, e), wrong)
				}
			}
			_ = c.Close()

			noSecret(t, "the slog output", logs.String(), wrong)
			if !strings.Contains(logs.String(), "master down") {
				t.Errorf("no 'master down' log line: %q", logs.String())
			}
			t.Logf("log: %.300s", logs.String())

			formatted := fmt.Sprintf("%v %+v %#v %s %q %x", cfg, cfg, cfg, cfg, cfg, cfg)
			formatted += fmt.Sprintf("%v %+v %#v %s", &cfg, &cfg, []Config{cfg}, map[string]Config{"c": cfg})
			formatted += fmt.Sprintf("%+v", struct{ C Config }{cfg}) + fmt.Sprint(cfg) + fmt.Sprintln(cfg)
			noSecret(t, "a formatted Config", formatted, wrong)
			if !strings.Contains(fmt.Sprintf("%v", cfg), aclUser) && cfg.Username != "" {
				t.Errorf("%%v of Config lost the username: %v", cfg)
			}
		})
	}
}

// TestSecurityConfigInLogs logs a Config with slog's text and JSON handlers:
// the password and the URL credentials must not appear. The text handler
// formats with %+v (Config.Format redacts); the JSON handler marshals the
// struct with encoding/json unless Config implements slog.LogValuer.
func TestSecurityConfigInLogs(t *testing.T) {
	const secret = "Log-Leak-Pass-77aa"
	cfg := Config{
		Servers:  []string{"redis://u:" + secret + "@127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
		Username: "u",
		Password: secret,
	}
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		t.Run(h.name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(h.new(&buf)).Info("config", "cfg", cfg, "ptr", &cfg)
			noSecret(t, "a "+h.name+" slog line of Config", buf.String(), secret)
		})
	}
}

// TestSecurityConfigErrorRedaction feeds New addresses that carry a password
// but are malformed: the *ConfigError must not echo the password.
func TestSecurityConfigErrorRedaction(t *testing.T) {
	const secret = "Cfg-Err-Pass-3c1d"
	long := strings.Repeat("p", 250) + secret
	for _, tc := range []struct {
		name, addr, secret string
	}{
		{"bad port", "redis://u:" + secret + "@127.0.0.1:99999", secret},
		{"bad db", "redis://u:" + secret + "@127.0.0.1:1/x", secret},
		{"query string", "redis://u:" + secret + "@127.0.0.1:1?x=1", secret},
		{"bad escape", "redis://u:" + secret + "%zz@127.0.0.1:1", secret},
		{"password with a query char", "redis://u:pa?" + secret + "@127.0.0.1:1", secret},
		{"long password cut by the 200-byte truncation", "redis://u:" + long + "@127.0.0.1:99999", long[:150]},
		{"missing slash typo", "redis:/u:" + secret + "@127.0.0.1:1", secret},
		{"no scheme", "u:" + secret + "@127.0.0.1:1", secret},
		{"unknown scheme", "redis+tls://u:" + secret + "@127.0.0.1:1", secret},
		{"user-info before ://", "u:" + secret + "@127.0.0.1://x", secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Config{Servers: []string{tc.addr}}.validate()
			if err == nil {
				t.Fatalf("%q accepted", tc.addr)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("not a *ConfigError: %T %v", err, err)
			}
			t.Logf("%v", err)
			noSecret(t, "the ConfigError", err.Error(), tc.secret)
			noSecret(t, "ConfigError.Value", ce.Value, tc.secret)
		})
	}
}
