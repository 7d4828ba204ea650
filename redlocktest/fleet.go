package redlocktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/redlock"
)

// Fleet is G quorum groups of M independent Redis masters each. Both
// *ContainerFleet (Docker) and *ProcessFleet (redis-server processes)
// implement it, so a test can be written once and run against either.
type Fleet interface {
	// Config returns a ready client configuration: Servers when the fleet
	// has one group, Cluster when it has several. Only the addresses are
	// set; every other field keeps redlock's default. Addresses stay the same
	// across every fault of this package (for containers: with a local Docker
	// daemon), so a Config taken once stays valid.
	Config() redlock.Config
	// Groups is the number of quorum groups.
	Groups() int
	// MastersPerGroup is the number of masters in each group.
	MastersPerGroup() int
	// Master returns master i of group g (both counted from 0). It panics
	// when either index is out of range, like a slice index.
	Master(g, i int) Master
	// ByAddr returns the master whose Addr is addr, or nil. With
	// redlock's Client.Route it finds the masters that own a resource.
	ByAddr(addr string) Master
	// Addrs returns every master's "host:port", group by group.
	Addrs() [][]string
	// Close stops and removes everything the fleet created. It is safe to
	// call more than once; later calls return the first call's result.
	Close() error
}

// Master is one Redis master of a Fleet and the faults a test can inject
// into it. Every method is safe for concurrent use, with the lock client
// under test and with each other: the fault methods of one master are
// serialized (a second call waits for the first to finish), so concurrent
// calls behave as if made one after the other in some order.
//
// Fault semantics (both implementations; see the package documentation for
// what was observed):
//
//   - Stop is a crash (SIGKILL): in-memory data is lost. Start brings the
//     master back empty, on the same address.
//   - Pause freezes the process: connections are accepted by the kernel (or
//     Docker's proxy) but nothing answers, so commands time out. Unpause
//     resumes it with its data; keys whose TTL passed meanwhile expire.
//   - Disconnect cuts the master off the network while it keeps running with
//     its data: new connections are refused and established ones are closed.
//     Reconnect restores the same address.
//   - Restart(ctx, true) restarts the master as if it ran with
//     "--appendonly yes --appendfsync always": every write acknowledged
//     before the call survives. Restart(ctx, false) restarts it the way a
//     master without persistence restarts: empty.
type Master interface {
	// Name identifies the master in its fleet: "g<group>m<index>", e.g. "g0m2".
	Name() string
	// Addr is the "host:port" clients use. It does not change for the life
	// of the fleet.
	Addr() string
	// Stop kills the master (a crash, no shutdown). Stopping a stopped master
	// is a no-op.
	Stop(ctx context.Context) error
	// Start starts a stopped master again, empty, on the same address, and
	// waits until it answers PING. Starting a running master is a no-op.
	Start(ctx context.Context) error
	// Pause freezes the master: it keeps its connections and its data but
	// answers nothing until Unpause.
	Pause(ctx context.Context) error
	// Unpause resumes a paused master.
	Unpause(ctx context.Context) error
	// Disconnect partitions the master from every client. It keeps running
	// and keeps its data. The master must be running and not paused.
	Disconnect(ctx context.Context) error
	// Reconnect ends a Disconnect and waits until the master answers PING
	// on its usual address.
	Reconnect(ctx context.Context) error
	// Restart stops the master and starts it again. With persist it keeps
	// every acknowledged write (this needs the master running and reachable);
	// without, it comes back empty.
	Restart(ctx context.Context, persist bool) error
	// Do sends one raw command on a fresh connection (so it always observes
	// the master's current state) and returns go-redis's result, e.g.
	// Do(ctx, "GET", "k") → ("v", nil), or (nil, redis.Nil) for no key.
	// Without a deadline in ctx, the reply is awaited for 2 s.
	Do(ctx context.Context, args ...any) (any, error)
}

// Option configures Start, StartProcesses and their T variants.
type Option func(*options)

type options struct {
	image        string
	startTimeout time.Duration
	tb           testing.TB
	ownerLabel   string // LabelOwner of a container fleet; "" means this process
}

// owner is the fleet's LabelOwner value.
func (o options) owner() string {
	if o.ownerLabel != "" {
		return o.ownerLabel
	}
	return ownerID
}

// WithImage selects the Redis image of a container fleet, overriding the
// QUORUMLOCK_REDIS_IMAGE environment variable. The image must accept
// redis-server flags as its command and have a writable /data, as the
// official images and quorumlock/redis:local do. Ignored by process fleets.
func WithImage(ref string) Option { return func(o *options) { o.image = ref } }

// WithStartTimeout bounds how long each master may take to answer PING after
// it was started (at fleet start and after Start/Restart/Reconnect).
// Default: 60 s for containers (a loaded Docker host is slow), 5 s for
// processes.
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

func buildOptions(opts []Option, defaultTimeout time.Duration) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.startTimeout <= 0 {
		o.startTimeout = defaultTimeout
	}
	return o
}

func checkShape(groups, masters int) error {
	if groups < 1 || masters < 1 {
		return fmt.Errorf("redlocktest: a fleet needs at least 1 group of 1 master, got %d × %d", groups, masters)
	}
	return nil
}

// configOf builds a redlock.Config for the given addresses.
func configOf(addrs [][]string) redlock.Config {
	if len(addrs) == 1 {
		return redlock.Config{Servers: addrs[0]}
	}
	return redlock.Config{Cluster: addrs}
}

func masterName(g, i int) string { return fmt.Sprintf("g%dm%d", g, i) }

// inCI reports whether the CI environment variable asks for strictness: a
// missing Docker daemon then fails a test instead of skipping it.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// dial connects to a master and wraps the connection in a go-redis client
// for one-off assertions and control commands: no retries (a retried command
// would hide a fault), RESP2 and no CLIENT SETINFO (one round trip less),
// deadlines from ctx. Dialing first, outside go-redis, keeps go-redis from
// logging every refused dial to stderr while a master is down.
func dial(ctx context.Context, addr string) (*redis.Client, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var used atomic.Bool
	return redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			if used.CompareAndSwap(false, true) {
				return conn, nil
			}
			return nil, errors.New("the connection is gone (no redial)")
		},
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              1,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	}), nil
}

// do sends one command on a fresh connection to addr.
func do(ctx context.Context, addr string, args ...any) (any, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(ctx, args...).Result()
}

// waitPing polls addr with PING until it answers PONG or timeout/ctx ends.
func waitPing(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_, err := do(pctx, addr, "PING")
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer PING within %v: %w", addr, timeout, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// persistNow makes every write acknowledged so far durable and blocks later
// writes: CLIENT PAUSE WRITE (writes now wait, unacknowledged, until the
// process dies), then a synchronous SAVE to the data directory, which a
// restarting redis-server loads. Together with the kill that follows, this is
// what "--appendonly yes --appendfsync always" guarantees across a crash.
// On error the pause is lifted.
func persistNow(ctx context.Context, addr string) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Do(ctx, "CLIENT", "PAUSE", "30000", "WRITE").Err(); err != nil {
		return fmt.Errorf("CLIENT PAUSE WRITE: %w", err)
	}
	if err := c.Do(ctx, "SAVE").Err(); err != nil {
		_ = c.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE").Err()
		return fmt.Errorf("SAVE: %w", err)
	}
	return nil
}

// emptyRDB is a valid RDB file holding no key (version 9, so Redis 6 and
// later load it; a zero checksum means "not computed"). It replaces the
// snapshot of a persisted restart so that a later crash loses data again.
var emptyRDB = []byte("REDIS0009\xff\x00\x00\x00\x00\x00\x00\x00\x00")
