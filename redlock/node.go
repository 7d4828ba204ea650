package redlock

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
)

// Lua scripts: only the holder of the token may delete or extend a key, and
// an extension never re-creates a key that has expired.
const (
	releaseScriptSrc = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`
	extendScriptSrc  = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`
)

var (
	releaseScript = redis.NewScript(releaseScriptSrc)
	extendScript  = redis.NewScript(extendScriptSrc)
)

type opKind uint8

const (
	opAcquire opKind = iota // SET key token NX PX ttl
	opRelease               // compare-and-delete
	opExtend                // compare-and-pexpire
	opExists                // EXISTS key
)

func (o opKind) String() string {
	return [...]string{"lock", "release", "extend", "islocked"}[o]
}

const (
	// writerQueueLen bounds the commands waiting for one connection's writer.
	writerQueueLen = 1024
	// maxBatch bounds one pipeline.
	maxBatch = 256
	// maxPendingCleanups bounds the releases kept for masters that were down
	// when an attempt failed; they are sent when the master comes back.
	maxPendingCleanups = 4096
)

var (
	errQueueFull = errors.New("command queue full")
	errTimeout   = errors.New("no answer within NodeTimeout")
	errExpired   = errors.New("timed out in the queue: not sent")
)

// call is one command for one master, part of one operation's fan-out.
type call struct {
	op       opKind
	idx      int // the master's index in its group
	key      string
	token    string
	ttlMs    int64
	args     *cmdArgs // the same for every master of the fan-out: boxed once
	deadline time.Time
	cleanup  bool         // a release this master may need (its SET may have landed): kept for later if not delivered
	out      chan<- reply // buffered for the whole fan-out: never blocks
}

// reply is one master's answer.
type reply struct {
	idx  int
	ok   bool
	done bool // answered (false: not yet, or not awaited)
	err  error
}

func (c *call) answer(ok bool, err error) { c.out <- reply{idx: c.idx, ok: ok, err: err, done: true} }

// cmdArgs are a fan-out's command arguments, converted to interface values
// once per operation rather than once per master.
type cmdArgs struct {
	key, token, ttl any
}

func newCmdArgs(key, token string, ttlMs int64) *cmdArgs {
	return &cmdArgs{key: key, token: token, ttl: ttlMs}
}

// node is one master: its connection pool, its writers, and its health.
//
// Each connection of the pool has a writer goroutine with its own queue.
// Callers enqueue commands; the writer takes everything that piled up and
// sends it as one pipeline, so throughput grows with concurrency while a
// single caller pays only a channel hand-off. Commands for one key always go
// to the same writer, so a failed attempt's cleanup is ordered after its SET.
type node struct {
	c       *Client
	addr    address
	pool    *connPool
	writers []chan *call

	down      atomic.Bool  // one reconnect loop runs per outage: started by the down CAS
	downSince atomic.Int64 // unix nanos
	lastErr   atomic.Pointer[string]

	commands  atomic.Int64
	pipelines atomic.Int64
	failures  atomic.Int64
	downs     atomic.Int64

	pendingMu sync.Mutex
	pending   []cleanup
	pruned    time.Time // last scan of a full pending list
}

type cleanup struct {
	key, token string
	expires    time.Time
}

func newNode(c *Client, a address) (*node, error) {
	pool, err := newConnPool(a, c.s)
	if err != nil {
		return nil, err
	}
	n := &node{c: c, addr: a, pool: pool, writers: make([]chan *call, c.s.PoolSize)}
	for i := range n.writers {
		q := make(chan *call, writerQueueLen)
		n.writers[i] = q
		c.wg.Add(1)
		go n.writeLoop(q)
	}
	return n, nil
}

// submit hands a call to the writer chosen by the key's hash. It never
// blocks. With direct set (a one-master group, whose caller has nothing else
// to wait for), a call that finds its writer idle and a connection free is
// sent by the caller itself: no goroutine hand-off. Otherwise it queues, and
// is batched with the other callers' commands.
func (n *node) submit(cl *call, hash uint64, direct bool) {
	if n.c.closed.Load() {
		cl.answer(false, ErrClosed)
		return
	}
	if n.down.Load() {
		n.keepCleanup(cl)
		cl.answer(false, n.downErr())
		return
	}
	q := n.writers[0]
	if len(n.writers) > 1 {
		q = n.writers[(hash>>32)%uint64(len(n.writers))]
	}
	if direct && len(q) == 0 {
		if res := n.pool.tryAcquire(); res != nil {
			one := [1]*call{cl}
			n.run(res, one[:], nil)
			return
		}
	}
	select {
	case q <- cl:
	default:
		// Not kept for later: kept releases are sent when a master comes
		// back, and this one is up (only overloaded); the key expires.
		cl.answer(false, errQueueFull)
	}
}

// downErr is the vote of a master marked down, with the error that put it
// down (WRONGPASS, a TLS failure, connection refused…).
func (n *node) downErr() error {
	if e := n.lastErr.Load(); e != nil {
		return &downError{last: *e}
	}
	return errNodeDown
}

type downError struct{ last string }

func (e *downError) Error() string { return errNodeDown.Error() + " (" + e.last + ")" }
func (e *downError) Unwrap() error { return errNodeDown }

func (n *node) writeLoop(q chan *call) {
	defer n.c.wg.Done()
	batch := make([]*call, 0, 16)
	var cmds []*redis.Cmd // reused across batches
	for {
		select {
		case cl := <-q:
			batch = append(batch[:0], cl)
		case <-n.c.closing:
			for {
				select {
				case cl := <-q:
					cl.answer(false, ErrClosed)
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case cl := <-q:
				batch = append(batch, cl)
			default:
				break drain
			}
		}
		cmds = n.exec(batch, cmds[:0])
		clear(batch) // drop references to answered calls
		clear(cmds)
	}
}

// exec sends a batch as one pipeline and answers every call in it. cmds is
// scratch space, returned for reuse.
func (n *node) exec(batch []*call, cmds []*redis.Cmd) []*redis.Cmd {
	if n.down.Load() {
		for _, cl := range batch {
			n.keepCleanup(cl)
			cl.answer(false, n.downErr())
		}
		return cmds
	}
	now := time.Now()
	live := batch[:0]
	for _, cl := range batch {
		if now.After(cl.deadline) {
			cl.answer(false, errExpired) // nobody waits for it: don't send it
			continue
		}
		live = append(live, cl)
	}
	if len(live) == 0 {
		return cmds
	}
	// Dialing (when no connection is idle) is bounded by DialTimeout in the
	// pool's dialer; commands by go-redis's Read/WriteTimeout = NodeTimeout.
	res, err := n.pool.acquire(context.Background())
	if err != nil {
		n.fail(err)
		for _, cl := range live {
			n.keepCleanup(cl)
			cl.answer(false, n.wrap(err))
		}
		return cmds
	}
	return n.run(res, live, cmds)
}

// run sends calls on the connection res (one pipeline), answers each call,
// and gives the connection back — or destroys it and marks the master down
// after a transport error.
func (n *node) run(res *puddle.Resource[*pconn], calls []*call, cmds []*redis.Cmd) []*redis.Cmd {
	pc := res.Value()
	ctx := context.Background()
	for _, cl := range calls {
		cmds = append(cmds, newCmd(ctx, cl, false))
	}
	pc.send(ctx, cmds)
	n.commands.Add(int64(len(calls)))
	n.pipelines.Add(1)

	// Scripts unknown to the server (flushed, or a server that restarted
	// between our health checks): send EVAL for those, on this connection.
	var retry []*redis.Cmd
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			cmds[i] = newCmd(ctx, calls[i], true)
			retry = append(retry, cmds[i])
		}
	}
	if len(retry) > 0 {
		pc.send(ctx, retry)
	}

	var transportErr error
	for i, cl := range calls {
		ok, err := decode(cl.op, cmds[i])
		if err != nil {
			n.failures.Add(1)
			if !isServerError(err) {
				if transportErr == nil {
					transportErr = err
				}
				n.keepCleanup(cl)
			}
			err = n.wrap(err)
		}
		cl.answer(ok, err)
	}
	if transportErr != nil {
		res.Destroy()
		n.fail(transportErr)
		return cmds
	}
	res.Release()
	return cmds
}

// Script hashes, boxed once.
var (
	releaseSHA any = releaseScript.Hash()
	extendSHA  any = extendScript.Hash()
)

func newCmd(ctx context.Context, cl *call, eval bool) *redis.Cmd {
	a := cl.args
	switch cl.op {
	case opAcquire:
		return redis.NewCmd(ctx, "set", a.key, a.token, "nx", "px", a.ttl)
	case opRelease:
		if eval {
			return redis.NewCmd(ctx, "eval", releaseScriptSrc, 1, a.key, a.token)
		}
		return redis.NewCmd(ctx, "evalsha", releaseSHA, 1, a.key, a.token)
	case opExtend:
		if eval {
			return redis.NewCmd(ctx, "eval", extendScriptSrc, 1, a.key, a.token, a.ttl)
		}
		return redis.NewCmd(ctx, "evalsha", extendSHA, 1, a.key, a.token, a.ttl)
	default:
		return redis.NewCmd(ctx, "type", a.key)
	}
}

// decode turns a reply into a vote: yes, no, or an error.
func decode(op opKind, cmd *redis.Cmd) (bool, error) {
	err := cmd.Err()
	if op == opAcquire {
		if err == redis.Nil {
			return false, nil // the key exists: busy
		}
		if err != nil {
			return false, err
		}
		s, _ := cmd.Val().(string)
		return s == "OK", nil
	}
	if err != nil {
		return false, err
	}
	if op == opExists {
		switch t, _ := cmd.Val().(string); t {
		case "none":
			return false, nil
		case "string":
			return true, nil
		default:
			return false, wrongTypeError(t)
		}
	}
	v, err := cmd.Int64()
	if err != nil {
		return false, err
	}
	return v == 1, nil
}

// wrongTypeError is a key of another type where a lock's string should be.
// It is a server answer (a redis.Error): the master is not marked down.
type wrongTypeError string

func (e wrongTypeError) Error() string {
	return "WRONGTYPE the key holds a " + string(e) + ", not a lock"
}

// RedisError marks wrongTypeError as a server error (redis.Error).
func (wrongTypeError) RedisError() {}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isServerError reports an error reply of the server (WRONGTYPE, NOPERM, …):
// the master is up and answered, so it is not marked down.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && err != redis.Nil
}

func (n *node) wrap(err error) error { return &NodeError{Addr: n.addr.redacted, Err: err} }

// fail marks the master down after a transport error: it votes "no" at once
// until the background reconnect loop has reached it again.
func (n *node) fail(err error) {
	msg := redactErr(err, n.addr)
	n.lastErr.Store(&msg)
	if n.c.closed.Load() || !n.down.CompareAndSwap(false, true) {
		return
	}
	n.downs.Add(1)
	n.downSince.Store(time.Now().UnixNano())
	n.pool.reset()
	n.c.s.Logger.Warn("redlock: master down", "master", n.addr.redacted, "err", msg)
	n.startReconnect()
}

func (n *node) startReconnect() { n.c.goBackground(n.reconnectLoop) }

// reconnectLoop retries a down master every ReconnectInterval until it
// answers and has its scripts, marks it up, then sends the releases it missed.
func (n *node) reconnectLoop() {
	t := time.NewTicker(n.c.s.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-n.c.closing:
			return
		case <-t.C:
		}
		if err := n.connect(); err != nil {
			msg := redactErr(err, n.addr)
			n.lastErr.Store(&msg)
			continue
		}
		n.down.Store(false)
		n.c.s.Logger.Info("redlock: master up", "master", n.addr.redacted,
			"down_for", time.Since(time.Unix(0, n.downSince.Load())).Round(time.Millisecond))
		n.flushPending()
		return
	}
}

// connect opens the pool's connections (dial, AUTH, PING) and loads the
// scripts.
func (n *node) connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.c.s.DialTimeout+n.c.s.NodeTimeout)
	defer cancel()
	res, err := n.pool.acquire(ctx)
	if err != nil {
		return err
	}
	pipe := res.Value().conn.Pipeline()
	pipe.ScriptLoad(ctx, releaseScriptSrc)
	pipe.ScriptLoad(ctx, extendScriptSrc)
	if _, err := pipe.Exec(ctx); err != nil && !isServerError(err) { // a denied SCRIPT LOAD is fine: EVALSHA falls back to EVAL
		res.Destroy()
		return err
	}
	res.Release()
	// Open the rest of the pool now, so the first commands after start-up or
	// a reconnect do not pay for dialing.
	for i := 1; i < n.c.s.PoolSize; i++ {
		if n.pool.pool.CreateResource(ctx) != nil {
			break
		}
	}
	return nil
}

// keepCleanup remembers a release that this master may need (its SET may
// have landed) but did not get, so that it is sent when the master is back.
func (n *node) keepCleanup(cl *call) {
	if !cl.cleanup {
		return
	}
	now := time.Now()
	n.pendingMu.Lock()
	defer n.pendingMu.Unlock()
	if len(n.pending) >= maxPendingCleanups && now.Sub(n.pruned) > time.Second {
		// Full: drop the expired ones, at most once a second (the scan is
		// not repeated for every release of a storm).
		n.pruned = now
		live := n.pending[:0]
		for _, p := range n.pending {
			if now.Before(p.expires) {
				live = append(live, p)
			}
		}
		clear(n.pending[len(live):])
		n.pending = live
	}
	if len(n.pending) >= maxPendingCleanups {
		return // the ones kept first stay; this key expires with its TTL
	}
	n.pending = append(n.pending, cleanup{key: cl.key, token: cl.token, expires: now.Add(time.Duration(cl.ttlMs) * time.Millisecond)})
}

// flushPending sends the kept releases whose keys may still exist, through
// the writers like any command (batched; a master that fails again keeps
// them again).
func (n *node) flushPending() {
	n.pendingMu.Lock()
	pending := n.pending
	n.pending = nil
	n.pendingMu.Unlock()
	now := time.Now()
	live := pending[:0]
	for _, p := range pending {
		if now.Before(p.expires) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	out := make(chan reply, len(live)) // nobody reads it: every answer fits
	calls := make([]call, len(live))
	deadline := now.Add(n.c.s.ReleaseTimeout)
	for i, p := range live {
		ms := ttlMillis(p.expires.Sub(now))
		calls[i] = call{op: opRelease, key: p.key, token: p.token, ttlMs: ms, args: newCmdArgs(p.key, p.token, ms),
			deadline: deadline, cleanup: true, out: out}
		n.submit(&calls[i], xxhash.Sum64String(p.key), false)
	}
}

// healthCheck pings idle connections; a failure marks the master down.
func (n *node) healthCheck() {
	if n.down.Load() {
		return
	}
	if err := n.pool.checkIdle(n.c.s.NodeTimeout, n.c.s.HealthCheckPeriod/2); err != nil {
		n.fail(err)
	}
}

// NodeStat is a snapshot of one master, for operators.
type NodeStat struct {
	Addr      string    // as written in Config, password redacted
	Group     int       // index of its quorum group
	Up        bool      // false while the master is marked down
	DownSince time.Time // when it was last marked down (zero if never)
	LastError string    // the last transport error, if any
	Commands  int64     // commands sent
	Pipelines int64     // pipelines sent (Commands/Pipelines is the batching factor)
	Failures  int64     // commands that got an error
	Downs     int64     // times the master was marked down
	Pool      PoolStat
}

func (n *node) stat(group int) NodeStat {
	st := NodeStat{
		Addr:      n.addr.redacted,
		Group:     group,
		Up:        !n.down.Load(),
		Commands:  n.commands.Load(),
		Pipelines: n.pipelines.Load(),
		Failures:  n.failures.Load(),
		Downs:     n.downs.Load(),
		Pool:      n.pool.stat(),
	}
	if ds := n.downSince.Load(); ds != 0 {
		st.DownSince = time.Unix(0, ds)
	}
	if e := n.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// redactErr renders err without the master's password (some dial errors
// echo the address they were given).
func redactErr(err error, a address) string {
	s := err.Error()
	if a.password != "" {
		s = strings.ReplaceAll(s, a.password, "xxxxx")
	}
	return s
}

func tlsConfigFor(a address, s *settings) *tls.Config {
	var cfg *tls.Config
	if s.TLSConfig != nil {
		cfg = s.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" && net.ParseIP(a.host) == nil {
		cfg.ServerName = a.host
	}
	return cfg
}
