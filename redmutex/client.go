package redmutex

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// clientFor returns the client of a Mutex or Locker: client itself (not
// owned), or a new one-master client for addr built on cfg (owned).
func clientFor(addr string, client *redlock.Client, cfg redlock.Config) (c *redlock.Client, own bool, err error) {
	switch {
	case addr == "" && client == nil:
		return nil, false, errors.New("redmutex: set Addr (a Redis server) or Client (a redlock client)")
	case addr != "" && client != nil:
		return nil, false, errors.New("redmutex: set either Addr or Client, not both")
	case client != nil:
		if !reflect.ValueOf(cfg).IsZero() {
			return nil, false, errors.New("redmutex: Config only configures the client made for Addr; configure Client when you create it")
		}
		return client, false, nil
	}
	if len(cfg.Servers) > 0 || len(cfg.Cluster) > 0 {
		return nil, false, errors.New("redmutex: Config.Servers and Config.Cluster must be empty: Addr is the server")
	}
	cfg.Servers = []string{addr}
	c, err = redlock.New(cfg)
	if err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// releaseTimeout bounds the release after fn returns (detached from the
// caller's context, so a cancelled caller still releases).
const releaseTimeout = redlock.DefaultReleaseTimeout

// hold runs fn while l is held and releases l whatever happens: on return,
// on error and on panic (which then propagates). fn's context ends, with
// cause redlock.ErrLockLost, at l's validity as it was obtained (its
// deadline), or earlier when l is known lost (l.Done: an Extend found it
// gone, or shortened validity ran out). hold returns fn's
// error, or the release's when fn succeeded.
func hold(ctx context.Context, l *redlock.Lock, fn func(ctx context.Context) error) (err error) {
	dctx, dcancel := context.WithDeadlineCause(ctx, l.Until(), redlock.ErrLockLost)
	defer dcancel()
	lctx, cancel := context.WithCancelCause(dctx)
	held := make(chan struct{})
	go func() {
		select {
		case <-l.Done():
			cancel(redlock.ErrLockLost)
		case <-held:
		}
	}()
	defer func() {
		close(held)
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		rerr := l.Release(rctx)
		rcancel()
		if err == nil && rerr != nil {
			err = releaseError(l.Resource(), rerr)
		}
	}()
	return fn(lctx)
}

// jitter draws a delay uniformly from [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d)
}
