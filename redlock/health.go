package redlock

import (
	"context"
	"time"
)

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
		n.flushKept()
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

// healthCheck pings idle connections; a failure marks the master down.
func (n *node) healthCheck() {
	if n.down.Load() {
		return
	}
	if err := n.pool.checkIdle(n.c.s.NodeTimeout, n.c.s.HealthCheckPeriod/2); err != nil {
		n.fail(err)
	}
}
