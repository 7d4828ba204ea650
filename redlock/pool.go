package redlock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
)

// Connection buffers sized for lock commands (a few dozen bytes each): a
// pipeline larger than this is written in several chunks, and an idle master
// costs a few KiB instead of go-redis's default 64 KiB per connection.
const connBufferSize = 8 << 10

// connPool is one master's connection pool: jackc/puddle/v2 over dedicated
// go-redis connections. go-redis's own retries are off (a retried SET NX
// lies), and every connection answered PING before it is handed out.
type connPool struct {
	rc   *redis.Client // dials and authenticates; never used for commands directly
	pool *puddle.Pool[*redis.Conn]
}

func newConnPool(a address, s *settings) (*connPool, error) {
	opts := &redis.Options{
		Addr:                  a.hostPort(),
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
		ContextTimeoutEnabled: true,
		PoolSize:              s.PoolSize + 2, // + the reconnect probe and Client.Ping
		PoolTimeout:           s.DialTimeout,
		ReadBufferSize:        connBufferSize,
		WriteBufferSize:       connBufferSize,
	}
	if a.tls || s.TLSConfig != nil {
		opts.TLSConfig = tlsConfigFor(a, s)
	}
	rc := redis.NewClient(opts)
	cp := &connPool{rc: rc}
	pool, err := puddle.NewPool(&puddle.Config[*redis.Conn]{
		Constructor: func(ctx context.Context) (*redis.Conn, error) {
			cn := rc.EphemeralConn()
			if err := cn.Ping(ctx).Err(); err != nil {
				_ = cn.Close()
				return nil, err
			}
			return cn, nil
		},
		Destructor: func(cn *redis.Conn) { _ = cn.Close() },
		MaxSize:    int32(s.PoolSize + 1),
	})
	if err != nil {
		_ = rc.Close()
		return nil, fmt.Errorf("connection pool: %w", err)
	}
	cp.pool = pool
	return cp, nil
}

// acquire returns a connection, dialing one if none is idle.
func (p *connPool) acquire(ctx context.Context) (*puddle.Resource[*redis.Conn], error) {
	return p.pool.Acquire(ctx)
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
		err := res.Value().Ping(ctx).Err()
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

func (p *connPool) close() {
	p.pool.Close()
	_ = p.rc.Close()
}

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
