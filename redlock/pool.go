package redlock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
)

// Connection buffers sized for lock commands: a command is ≈ 100 bytes
// (SET key token NX PX ttl, or EVALSHA sha 1 key token), its reply 5 bytes
// or fewer ("+OK", ":1"). A pipeline larger than the write buffer (≈ 20
// commands) is written in several chunks, and a larger reply (INFO) is read
// through the read buffer in several steps; an idle connection costs 4 KiB
// of buffers instead of go-redis's default 64 KiB.
const (
	connReadBufferSize  = 2 << 10
	connWriteBufferSize = 2 << 10
)

// connPool is one master's connection pool: jackc/puddle/v2 over dedicated
// go-redis connections. go-redis's own retries are off (a retried SET NX
// lies), and every connection answered PING before it is handed out.
//
// Dialing is done here, not by go-redis: its pool counts dial failures and,
// past PoolSize of them, refuses to dial and starts a goroutine of its own
// that redials every second — which would both delay our reconnects and
// outlive Close. So the constructor dials (TCP, then TLS) itself and gives
// the socket to a go-redis client of its own whose dialer returns exactly
// that socket, once; go-redis then runs AUTH/SELECT and the protocol on it.
// Each pooled connection thus knows its socket (for the liveness peek), and
// go-redis never dials — nor fails to.
type connPool struct {
	newOpts func(dial func(context.Context, string, string) (net.Conn, error)) *redis.Options
	dial    func(ctx context.Context) (net.Conn, error)
	pool    *puddle.Pool[*pconn]
	// onConnect runs on every new connection after its PING (the node's
	// serverCheck: which server is this?); an error refuses the connection.
	onConnect func(ctx context.Context, pc *pconn) error
}

var errNotPreDialed = errors.New("redlock: go-redis tried to dial a second time")

func newConnPool(a address, s *settings) (*connPool, error) {
	var tlsCfg *tls.Config
	if a.tls || s.TLSConfig != nil {
		tlsCfg = tlsConfigFor(a, s)
	}
	netDialer := &net.Dialer{Timeout: s.DialTimeout, KeepAlive: 30 * time.Second}
	cp := &connPool{
		newOpts: func(dial func(context.Context, string, string) (net.Conn, error)) *redis.Options {
			return &redis.Options{
				Addr:                  a.hostPort(),
				Dialer:                dial,
				Username:              a.username,
				Password:              a.password,
				DB:                    a.db,
				Protocol:              2,
				DisableIdentity:       true,
				MaxRetries:            -1,
				DialTimeout:           s.DialTimeout,
				DialerRetries:         1,
				ReadTimeout:           s.NodeTimeout,
				WriteTimeout:          s.NodeTimeout,
				ContextTimeoutEnabled: false, // Read/WriteTimeout bound every command: no context per batch
				PoolSize:              1,
				PoolTimeout:           s.DialTimeout,
				ReadBufferSize:        connReadBufferSize,
				WriteBufferSize:       connWriteBufferSize,
				PipelinePoolSize:      -1, // no pool of its own for pipelines: ours run on this connection
			}
		},
		dial: func(ctx context.Context) (net.Conn, error) {
			if tlsCfg != nil {
				return (&tls.Dialer{NetDialer: netDialer, Config: tlsCfg}).DialContext(ctx, "tcp", a.hostPort())
			}
			return netDialer.DialContext(ctx, "tcp", a.hostPort())
		},
	}
	pool, err := puddle.NewPool(&puddle.Config[*pconn]{
		Constructor: cp.construct,
		Destructor:  func(pc *pconn) { pc.close() },
		MaxSize:     int32(s.PoolSize + 1),
	})
	if err != nil {
		return nil, fmt.Errorf("connection pool: %w", err)
	}
	cp.pool = pool
	return cp, nil
}

// construct dials one connection, authenticates it, checks it with PING and
// runs onConnect.
func (p *connPool) construct(ctx context.Context) (*pconn, error) {
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	raw, _ := nc.(syscall.Conn)
	if tc, ok := nc.(*tls.Conn); ok {
		raw, _ = tc.NetConn().(syscall.Conn)
	}
	var taken atomic.Bool
	rc := redis.NewClient(p.newOpts(func(context.Context, string, string) (net.Conn, error) {
		if taken.Swap(true) {
			return nil, errNotPreDialed
		}
		return nc, nil
	}))
	pc := &pconn{rc: rc, conn: rc.Conn(), raw: raw}
	pc.pipe = pc.conn.Pipeline()
	// The first command makes go-redis "dial" (take nc), authenticate,
	// select the database; then it PINGs — with INFO server in the same
	// round trip (for onConnect): a new connection costs no extra wait.
	pipe := pc.conn.Pipeline()
	ping := pipe.Ping(ctx)
	pc.info = pipe.Info(ctx, "server")
	_, execErr := pipe.Exec(ctx)
	err = ping.Err()
	if err == nil && pc.info.Err() == nil {
		err = execErr // the connection's set-up (AUTH, SELECT) failed: no command ran
	}
	if err != nil {
		pc.close()
		if !taken.Swap(true) { // go-redis never took it
			_ = nc.Close()
		}
		return nil, err
	}
	if p.onConnect != nil {
		if err := p.onConnect(ctx, pc); err != nil {
			pc.close()
			return nil, err
		}
	}
	pc.info = nil // read: not kept for the connection's life
	return pc, nil
}

// pconn is one pooled connection, its reusable pipeline and commands.
type pconn struct {
	cache cmdCache      // used by whoever holds the connection (node.run)
	rc    *redis.Client // this connection's own client (go-redis pool of one)
	conn  *redis.Conn   // the sticky connection commands are sent on
	pipe  redis.Pipeliner
	raw   syscall.Conn // the TCP socket under conn, for the liveness peek
	// info is the server's answer to INFO server, sent with the
	// connection's first PING (an error when INFO is denied); nil once
	// onConnect has read it.
	info *redis.StringCmd
}

func (pc *pconn) close() {
	_ = pc.conn.Close()
	_ = pc.rc.Close()
}

// staleAfter is how long a connection may sit idle before it is checked
// (one non-blocking peek) when it is taken from the pool.
const staleAfter = time.Millisecond

// usable reports whether an idle connection can be handed out: a server
// that restarted or closed it while idle is noticed here, before a command is
// written to it — so no command is ever retried, and the master is not
// marked down for a connection it closed on purpose.
func usable(res *puddle.Resource[*pconn]) bool {
	return res.IdleDuration() < staleAfter || res.Value().raw == nil || connAlive(res.Value().raw)
}

// send writes cmds and reads their replies: a lone command directly, several
// as one pipeline. Errors are left on each command.
func (pc *pconn) send(ctx context.Context, cmds []*redis.Cmd) {
	if len(cmds) == 1 {
		_ = pc.conn.Process(ctx, cmds[0])
		return
	}
	b := pc.cache.cmders[:0]
	for _, c := range cmds {
		b = append(b, c)
	}
	_ = pc.pipe.BatchProcess(ctx, b...)
	clear(b)
	pc.cache.cmders = keepScratch(b)
	_, _ = pc.pipe.Exec(ctx)
}

// acquire returns a live connection, dialing one if none is idle. Idle
// connections the server closed are destroyed on the way.
func (p *connPool) acquire(ctx context.Context) (*puddle.Resource[*pconn], error) {
	for {
		res, err := p.pool.Acquire(ctx)
		if err != nil || usable(res) {
			return res, err
		}
		res.Destroy()
	}
}

// tryAcquire returns an idle live connection, or nil at once.
func (p *connPool) tryAcquire() *puddle.Resource[*pconn] {
	for {
		res, err := p.pool.TryAcquire(context.Background())
		if err != nil {
			return nil
		}
		if usable(res) {
			return res
		}
		res.Destroy()
	}
}

// reset closes every idle connection (those in use are closed when returned).
func (p *connPool) reset() { p.pool.Reset() }

// checkIdle pings the connections that have been idle for at least minIdle
// (the pgxpool pattern: take every idle connection, destroy the bad ones,
// give back the good ones as unused). It returns the first error.
func (p *connPool) checkIdle(timeout, minIdle time.Duration) error {
	var firstErr error
	for _, res := range p.pool.AcquireAllIdle() {
		if res.IdleDuration() < minIdle || firstErr != nil {
			res.ReleaseUnused()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := res.Value().conn.Ping(ctx).Err()
		cancel()
		if err != nil {
			res.Destroy()
			firstErr = err
			continue
		}
		res.ReleaseUnused()
	}
	return firstErr
}

// ping measures one PING round trip on a pooled connection (dialing one if
// none is idle).
func (p *connPool) ping(ctx context.Context) (time.Duration, error) {
	res, err := p.acquire(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = res.Value().conn.Ping(ctx).Err()
	rtt := time.Since(start)
	if err != nil {
		res.Destroy()
		return rtt, err
	}
	res.Release()
	return rtt, nil
}

func (p *connPool) close() { p.pool.Close() }

// PoolStat is a snapshot of one master's connection pool.
type PoolStat struct {
	Total        int32         // connections open or being opened
	Idle         int32         // connections not in use
	InUse        int32         // connections sending a pipeline or a health check
	Constructing int32         // connections being dialed
	Max          int32         // the pool's size (PoolSize + 1 for the reconnect probe)
	AcquireCount int64         // connections handed out since start
	AcquireWait  time.Duration // total time spent waiting for a connection
}

func (p *connPool) stat() PoolStat {
	st := p.pool.Stat()
	return PoolStat{
		Total:        st.TotalResources(),
		Idle:         st.IdleResources(),
		InUse:        st.AcquiredResources(),
		Constructing: st.ConstructingResources(),
		Max:          st.MaxResources(),
		AcquireCount: st.AcquireCount(),
		AcquireWait:  st.AcquireDuration(),
	}
}
