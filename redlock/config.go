package redlock

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"
)

// Config configures a Client. The zero value of every optional field selects
// its documented default; negative values are rejected by New.
//
// The Elixir redlock options map one to one: pool_size → PoolSize,
// drift_factor → DriftFactor, max_retry → MaxRetry, retry_interval →
// RetryInterval, reconnection_interval → ReconnectInterval, servers → Servers,
// cluster → Cluster.
type Config struct {
	// Servers is one quorum group of independent masters: "host:port",
	// "redis://[user:pass@]host:port[/db]" or "rediss://…" (TLS). Use an odd
	// count (1, 3, 5, 7). Exactly one of Servers and Cluster is set.
	Servers []string

	// Cluster is several quorum groups; every resource is routed by
	// consistent hashing to exactly one group. Each group has an odd number
	// of masters and no master appears twice in the whole fleet: IP
	// literals are compared in canonical form (::ffff:127.0.0.1 is
	// 127.0.0.1), databases of one server are one master, and two masters
	// that turn out to be one server at connect (the same run_id in INFO
	// server: a DNS alias, a proxy) are refused — by New, or, found later,
	// by keeping the second one down. One server casts one vote.
	Cluster [][]string

	// Previous turns on migration mode for a ring change: it is the fleet
	// before the change (the old Cluster, or the old Servers as one group),
	// written like Cluster. A resource whose group differs between Previous
	// and the new fleet is locked on both groups (a majority of each),
	// extended and released on both; its validity is the earlier of the
	// two. Resources that do not move cost nothing extra. Route returns the
	// new group. Roll out a ring change in two steps (see the README):
	// every client with the new fleet and Previous = the old one, then, once
	// every client runs that and the longest TTL has passed, the new fleet
	// alone. A master in both fleets is one master — one connection, one
	// vote — recognised by its canonical address (IP literals compared in
	// canonical form; DNS names by their text, so write them alike), and
	// must use the same database in both (New refuses otherwise); a group
	// with the same masters is unchanged. A master kept in both of a moved
	// resource's groups gets each command once, its answer counting in
	// both. For a moved resource, Await, LockAll, DoAll and the locks
	// of RWMutex and Semaphore are refused (ErrRingChange); Lock, TryLock,
	// Do and DoWith lock it on both groups. Default: nil (no migration).
	Previous [][]string

	// PoolSize is the number of connections per master. Each connection has
	// a writer that sends the commands piled up for its master as one
	// pipeline. A connected idle master costs ≈ 13 KiB of heap and one
	// goroutine per connection (buffers sized for lock commands; writer
	// queues that grow only with what waits). Default: 2.
	PoolSize int

	// DriftFactor is the share of the TTL reserved for clock drift between
	// masters: validity = ttl − elapsed − (ttl × DriftFactor + 2 ms).
	// Default: 0.01. Must be below 1.
	DriftFactor float64

	// MaxRetry is the number of extra attempts Lock makes after the first
	// (TryLock makes exactly one). Default: 3 — the zero value selects it, so
	// write NoRetries for none (Lock then makes one attempt, as TryLock).
	// Ignored when RetryStrategy is set.
	MaxRetry int

	// RetryInterval is the base delay between attempts of Lock; each delay is
	// drawn uniformly from [RetryInterval/2, 3×RetryInterval/2) so competing
	// clients desynchronize. Default: 200 ms. Ignored when RetryStrategy is set.
	RetryInterval time.Duration

	// RetryStrategy, when set, decides the delays between attempts of Lock
	// instead of MaxRetry and RetryInterval. See LinearBackoff and
	// ExponentialBackoff. Default: nil.
	RetryStrategy RetryStrategy

	// ReconnectInterval is how often a master that is down is retried in the
	// background. While down, a master votes "no" at once. Default: 500 ms.
	ReconnectInterval time.Duration

	// NodeTimeout bounds each command to one master (dial excluded): a master
	// that has not answered by then counts as a "no" vote. Keep it far below
	// the TTL: the Redlock paper suggests 5–50 ms for a 10 s TTL.
	// Default: 100 ms.
	NodeTimeout time.Duration

	// DialTimeout bounds establishing one connection, including TLS and
	// AUTH. Default: 1 s.
	DialTimeout time.Duration

	// HealthCheckPeriod is how often idle connections are checked with PING
	// in the background (connections that fail are closed and their master is
	// marked down). Default: 15 s.
	HealthCheckPeriod time.Duration

	// ReleaseTimeout bounds the background cleanup of a failed attempt (the
	// release sent to every master of the group) and the release at the end
	// of Do. A release is never dropped where the lock's SET may have landed:
	// there it is sent however long it waits behind that SET (even when
	// NodeTimeout is longer), and kept for a master that misses it until the
	// master answers again. Default: 1 s.
	ReleaseTimeout time.Duration

	// KeyPrefix is prepended to every resource to form its Redis key.
	// Default: "" (the key is the resource itself).
	KeyPrefix string

	// MaxResourceLen is the longest resource, in bytes, that is accepted.
	// Default: 4096.
	MaxResourceLen int

	// Username and Password authenticate to every master (Redis 6 ACL user;
	// Password alone for requirepass). Credentials in a redis:// URL take
	// precedence for that master. The password never appears in an error,
	// a log line or a %v of the Config.
	Username string
	Password string

	// TLSConfig enables TLS to every master; rediss:// addresses enable TLS
	// for that master with this config (or a default one). Default: nil.
	TLSConfig *tls.Config

	// Logger receives state changes of masters (down, up, quarantined) at
	// Warn and Info level; a master down for a permanent reason (see
	// IsPermanent) at Error level. Default: slog.Default().
	Logger *slog.Logger

	// StrictStart makes New fail fast instead of starting with masters
	// down: New returns an error when the first connection to any master
	// fails with a permanent error (wrong password, unknown ACL user, a DB
	// index out of range, a TLS certificate refused: see IsPermanent), or
	// when a group has fewer masters reachable than its quorum. The error
	// names every master that failed; IsPermanent reports whether a
	// configuration fix is needed. Default: false — New succeeds with
	// masters down and reconnects them in the background, so that a service
	// can start while part of the fleet is away.
	StrictStart bool

	// Fencing makes Lock.Fence a fencing token: every acquisition's fence is
	// strictly greater than the fence of every acquisition of the same
	// resource that completed before it started, from any client or process
	// (see Lock.Fence and the README). Each master keeps one hash of at most
	// FenceSlots counters, the key KeyPrefix + FenceCounterKey. It costs at
	// most one extra round trip per acquisition (only when the masters'
	// counters disagree) and nothing when off. Every lock kind carries
	// fences from the resource's one counter: Lock, TryLock, Await and Do,
	// RWMutex writers and readers, Semaphore permits (Lock.Fence), and
	// LockAll (MultiLock.Fence). The ACL rule needs +hget, +hset and +time.
	// Default: false (Fence is 0).
	Fencing bool

	// RestartQuarantine makes a master that has been up for less than this
	// vote no on every new lock (Release, Extend and IsLocked still use it):
	// set it to at least the longest TTL in use, and a master restarted
	// without its data cannot give a lock that is still valid elsewhere to a
	// second holder. It is checked on every new connection to a master
	// (INFO server: run_id and uptime), so restarts before this client
	// started count too. The ACL rule needs +info. Unit: time; the server's
	// uptime has a resolution of 1 s, so the window may end up to 2 s late,
	// never early. Default: 0 (off).
	RestartQuarantine time.Duration
	// Observer receives lock-level events (acquire with wait time and
	// attempts, extend, release, lost, master down/up/quarantined) with
	// durations, votes and outcome. Its Observe must not block. Default: nil
	// (no events: nothing is built or timed for them on the lock path).
	Observer Observer
}

// NoRetries is the MaxRetry that means "no retries": Lock makes a single
// attempt. (MaxRetry 0 selects the default, 3.) It is the only negative
// value New accepts for a field; every other negative value is an error.
const NoRetries = math.MinInt

// Defaults of Config, exported so tools can show them.
const (
	DefaultPoolSize          = 2
	DefaultDriftFactor       = 0.01
	DefaultMaxRetry          = 3
	DefaultRetryInterval     = 200 * time.Millisecond
	DefaultReconnectInterval = 500 * time.Millisecond
	DefaultNodeTimeout       = 100 * time.Millisecond
	DefaultDialTimeout       = time.Second
	DefaultHealthCheckPeriod = 15 * time.Second
	DefaultReleaseTimeout    = time.Second
	DefaultMaxResourceLen    = 4096

	// maxTTL is the longest TTL accepted.
	maxTTL = 1 << 40 * time.Millisecond / 1024
)

// String prints the config without secrets: passwords in URLs and the
// Password field are shown as xxxxx. Zero fields print as zero (their
// defaults apply): Client.Settings returns the Config with every default
// filled in, which prints exactly what a client runs with.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("redlock.Config{")
	if len(c.Servers) > 0 {
		fmt.Fprintf(&b, "Servers:%v ", redactAll(c.Servers))
	}
	if len(c.Cluster) > 0 {
		groups := make([][]string, len(c.Cluster))
		for i, g := range c.Cluster {
			groups[i] = redactAll(g)
		}
		fmt.Fprintf(&b, "Cluster:%v ", groups)
	}
	if len(c.Previous) > 0 {
		groups := make([][]string, len(c.Previous))
		for i, g := range c.Previous {
			groups[i] = redactAll(g)
		}
		fmt.Fprintf(&b, "Previous:%v ", groups)
	}
	maxRetry := fmt.Sprint(c.MaxRetry)
	if c.MaxRetry == NoRetries {
		maxRetry = "NoRetries"
	}
	fmt.Fprintf(&b, "PoolSize:%d DriftFactor:%g MaxRetry:%s RetryInterval:%v ReconnectInterval:%v NodeTimeout:%v DialTimeout:%v HealthCheckPeriod:%v ReleaseTimeout:%v KeyPrefix:%q MaxResourceLen:%d",
		c.PoolSize, c.DriftFactor, maxRetry, c.RetryInterval, c.ReconnectInterval, c.NodeTimeout, c.DialTimeout, c.HealthCheckPeriod, c.ReleaseTimeout, c.KeyPrefix, c.MaxResourceLen)
	if c.RetryStrategy != nil {
		b.WriteString(" RetryStrategy:custom")
	}
	if c.Observer != nil {
		b.WriteString(" Observer:set")
	}
	if c.Username != "" {
		fmt.Fprintf(&b, " Username:%q", c.Username)
	}
	if c.Password != "" {
		b.WriteString(" Password:xxxxx")
	}
	if c.TLSConfig != nil {
		b.WriteString(" TLS:on")
	}
	if c.StrictStart {
		b.WriteString(" StrictStart:true")
	}
	if c.Fencing {
		b.WriteString(" Fencing:true")
	}
	if c.RestartQuarantine != 0 {
		fmt.Fprintf(&b, " RestartQuarantine:%v", c.RestartQuarantine)
	}
	b.WriteString("}")
	return b.String()
}

// LogValue keeps slog handlers from printing the password (the JSON
// handler would otherwise marshal the struct field by field).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// GoString keeps %#v from printing the password.
func (c Config) GoString() string { return c.String() }

// Format keeps every verb (%v, %+v, %#v, %s) from printing the password.
func (c Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

func redactAll(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = redactAddress(a)
	}
	return out
}

// ConfigError is returned by New for a bad Config. It names the field and
// the offending value (passwords redacted).
type ConfigError struct {
	Field  string // e.g. "Cluster[1][2]" or "DriftFactor"
	Value  string // the offending value, redacted
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Value == "" {
		return "redlock: invalid Config." + e.Field + ": " + e.Reason
	}
	return fmt.Sprintf("redlock: invalid Config.%s %s: %s", e.Field, e.Value, e.Reason)
}

// settings is a validated Config with defaults applied.
type settings struct {
	Config
	groups          [][]address
	prevGroups      [][]address // Previous; nil without migration
	defaultStrategy bool        // RetryStrategy was built from MaxRetry and RetryInterval
}

// Settings returns the Config the client runs with: every zero field
// replaced by its default (PoolSize 2, DriftFactor 0.01, MaxRetry 3, …,
// Logger slog.Default()), so that printing it shows what the client does.
// Passwords are redacted — the Password field and the passwords of
// redis:// URLs read xxxxx — so the result describes the client and is not
// meant to be passed back to New. RetryStrategy stays nil when the client
// uses the one built from MaxRetry and RetryInterval.
func (c *Client) Settings() Config {
	cfg := c.s.Config
	if c.s.defaultStrategy {
		cfg.RetryStrategy = nil
	}
	if len(cfg.Servers) > 0 {
		cfg.Servers = redactAll(cfg.Servers)
	}
	if len(cfg.Cluster) > 0 {
		groups := make([][]string, len(cfg.Cluster))
		for i, g := range cfg.Cluster {
			groups[i] = redactAll(g)
		}
		cfg.Cluster = groups
	}
	if len(cfg.Previous) > 0 {
		groups := make([][]string, len(cfg.Previous))
		for i, g := range cfg.Previous {
			groups[i] = redactAll(g)
		}
		cfg.Previous = groups
	}
	if cfg.Password != "" {
		cfg.Password = "xxxxx"
	}
	return cfg
}

func (c Config) validate() (*settings, error) {
	s := &settings{Config: c}
	neg := func(field string, v int64) error {
		if v < 0 {
			return &ConfigError{Field: field, Value: fmt.Sprint(v), Reason: "must not be negative"}
		}
		return nil
	}
	if c.MaxRetry < 0 && c.MaxRetry != NoRetries {
		return nil, &ConfigError{Field: "MaxRetry", Value: fmt.Sprint(c.MaxRetry), Reason: "must not be negative (write NoRetries for no retries; 0 selects the default, 3)"}
	}
	for _, chk := range []struct {
		f string
		v int64
	}{
		{"PoolSize", int64(c.PoolSize)},
		{"RetryInterval", int64(c.RetryInterval)},
		{"ReconnectInterval", int64(c.ReconnectInterval)},
		{"NodeTimeout", int64(c.NodeTimeout)},
		{"DialTimeout", int64(c.DialTimeout)},
		{"HealthCheckPeriod", int64(c.HealthCheckPeriod)},
		{"ReleaseTimeout", int64(c.ReleaseTimeout)},
		{"RestartQuarantine", int64(c.RestartQuarantine)},
		{"MaxResourceLen", int64(c.MaxResourceLen)},
	} {
		if err := neg(chk.f, chk.v); err != nil {
			return nil, err
		}
	}
	if math.IsNaN(c.DriftFactor) || c.DriftFactor < 0 || c.DriftFactor >= 1 {
		return nil, &ConfigError{Field: "DriftFactor", Value: fmt.Sprint(c.DriftFactor), Reason: "must be in [0, 1)"}
	}
	if m := minTTL(c.DriftFactor); m <= 0 || m > maxTTL {
		return nil, &ConfigError{Field: "DriftFactor", Value: fmt.Sprint(c.DriftFactor),
			Reason: "must be in [0, 1) and leave a usable TTL: ttl × DriftFactor + 2ms would consume every TTL up to " + maxTTL.String()}
	}
	if c.PoolSize > 1024 {
		return nil, &ConfigError{Field: "PoolSize", Value: fmt.Sprint(c.PoolSize), Reason: "more than 1024 connections per master"}
	}
	setDefault(&s.PoolSize, DefaultPoolSize)
	if s.DriftFactor == 0 {
		s.DriftFactor = DefaultDriftFactor
	}
	setDefault(&s.MaxRetry, DefaultMaxRetry)
	retries := s.MaxRetry
	if retries == NoRetries {
		retries = 0
	}
	setDefault(&s.RetryInterval, DefaultRetryInterval)
	setDefault(&s.ReconnectInterval, DefaultReconnectInterval)
	setDefault(&s.NodeTimeout, DefaultNodeTimeout)
	setDefault(&s.DialTimeout, DefaultDialTimeout)
	setDefault(&s.HealthCheckPeriod, DefaultHealthCheckPeriod)
	setDefault(&s.ReleaseTimeout, DefaultReleaseTimeout)
	setDefault(&s.MaxResourceLen, DefaultMaxResourceLen)
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.RetryStrategy == nil {
		s.defaultStrategy = true
		s.RetryStrategy = LinearBackoff(retries, s.RetryInterval)
	}

	var raw [][]string
	var field func(g, i int) string
	switch {
	case len(c.Servers) == 0 && len(c.Cluster) == 0:
		return nil, &ConfigError{Field: "Servers", Reason: "no masters: set Servers (one group) or Cluster (several groups)"}
	case len(c.Servers) > 0 && len(c.Cluster) > 0:
		return nil, &ConfigError{Field: "Cluster", Reason: "set either Servers or Cluster, not both"}
	case len(c.Servers) > 0:
		raw = [][]string{c.Servers}
		field = func(_, i int) string {
			if i < 0 {
				return "Servers"
			}
			return fmt.Sprintf("Servers[%d]", i)
		}
	default:
		raw = c.Cluster
		field = func(g, i int) string {
			if i < 0 {
				return fmt.Sprintf("Cluster[%d]", g)
			}
			return fmt.Sprintf("Cluster[%d][%d]", g, i)
		}
	}
	groups, err := parseGroups(raw, field, c)
	if err != nil {
		return nil, err
	}
	s.groups = groups
	if len(c.Previous) > 0 {
		prev, err := parseGroups(c.Previous, func(g, i int) string {
			if i < 0 {
				return fmt.Sprintf("Previous[%d]", g)
			}
			return fmt.Sprintf("Previous[%d][%d]", g, i)
		}, c)
		if err != nil {
			return nil, err
		}
		if err := sameKeyspace(groups, prev); err != nil {
			return nil, err
		}
		s.prevGroups = prev
	}
	return s, nil
}

// sameKeyspace refuses a master written in both rings (Previous and the new
// fleet) with two databases. It is one master, one node (Client.newGroup),
// and its votes in the previous group must be taken in the keyspace the
// clients still on the old ring use: with two databases, a migrating client
// and an old client would both be granted the resource by that one server.
func sameKeyspace(groups, prev [][]address) error {
	cur := make(map[string]address)
	for _, g := range groups {
		for _, a := range g {
			cur[a.identity()] = a
		}
	}
	for _, g := range prev {
		for _, a := range g {
			if b, ok := cur[a.identity()]; ok && a.db != b.db {
				return &ConfigError{Field: a.field, Value: fmt.Sprintf("%q", a.redacted),
					Reason: fmt.Sprintf("same master as %s %q with another database (%d, there %d): a master kept in a ring change must use one database in both rings", b.field, b.redacted, a.db, b.db)}
			}
		}
	}
	return nil
}

// parseGroups validates the groups of a ring: each non-empty, of an odd
// number of masters, every address valid, no master twice.
func parseGroups(raw [][]string, field func(g, i int) string, c Config) ([][]address, error) {
	var out [][]address
	seen := make(map[string]address) // identity → the first master with it
	for g, grp := range raw {
		if len(grp) == 0 {
			return nil, &ConfigError{Field: field(g, -1), Reason: "empty group"}
		}
		if len(grp)%2 == 0 {
			return nil, &ConfigError{Field: field(g, -1), Value: fmt.Sprintf("(%d masters)", len(grp)),
				Reason: fmt.Sprintf("a group needs an odd number of masters: %d masters tolerate no more failures than %d (quorum %d)", len(grp), len(grp)-1, len(grp)/2+1)}
		}
		addrs := make([]address, len(grp))
		for i, r := range grp {
			a, err := parseAddress(r)
			if err != nil {
				return nil, &ConfigError{Field: field(g, i), Value: fmt.Sprintf("%q", truncate(redactAddress(r), 200)), Reason: err.Error()}
			}
			if a.username == "" && a.password == "" {
				a.username, a.password = c.Username, c.Password
			}
			a.field = field(g, i)
			if prev, dup := seen[a.identity()]; dup {
				return nil, &ConfigError{Field: a.field, Value: fmt.Sprintf("%q", a.redacted),
					Reason: fmt.Sprintf("duplicate master: same as %s %q (one server must not cast two votes)", prev.field, prev.redacted)}
			}
			seen[a.identity()] = a
			addrs[i] = a
		}
		out = append(out, addrs)
	}
	return out, nil
}

// groupIdentity is the sorted, comma-joined identities of a group's masters.
func groupIdentity(addrs []address) string {
	ids := make([]string, len(addrs))
	for i, a := range addrs {
		ids[i] = a.identity()
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func setDefault[T int | time.Duration](p *T, d T) {
	if *p == 0 {
		*p = d
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
