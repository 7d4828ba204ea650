// Package floor is the baseline the benchmarks compare quorumlock with: the
// fastest correct Redlock one writes by hand with go-redis. Lock sends
// SET key token NX PX ttl to every master in parallel (one goroutine per
// master) and returns as soon as a majority said yes, or as soon as a
// majority can no longer be reached; Unlock sends the compare-and-delete
// script the same way. There is no batching, no retry, no health tracking:
// it is the latency floor of a fan-out built on go-redis, not a library.
package floor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

// Floor is a hand-written Redlock over go-redis clients, one per master.
type Floor struct {
	clients []*redis.Client
	quorum  int
	timeout time.Duration
}

// New returns a Floor over addrs ("host:port"), poolSize connections per
// master (0: go-redis's default, 10 × GOMAXPROCS), and a per-master
// timeout of 100 ms (go-redis's read and write timeouts: no context or
// timer per command). It does not dial.
func New(addrs []string, poolSize int) *Floor {
	f := &Floor{quorum: len(addrs)/2 + 1, timeout: 100 * time.Millisecond}
	for _, a := range addrs {
		f.clients = append(f.clients, redis.NewClient(&redis.Options{
			Addr:            a,
			Protocol:        2,
			DisableIdentity: true,
			MaxRetries:      -1, // a retried SET NX lies
			PoolSize:        poolSize,
			ReadTimeout:     f.timeout,
			WriteTimeout:    f.timeout,
		}))
	}
	return f
}

// Close closes every client.
func (f *Floor) Close() {
	for _, c := range f.clients {
		_ = c.Close()
	}
}

// Warm loads the release script and fills one connection per master.
func (f *Floor) Warm(ctx context.Context) error {
	for _, c := range f.clients {
		if err := releaseScript.Load(ctx, c).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Token returns 128 random bits, URL-safe base64.
func Token() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ErrNotObtained is returned by Lock when no majority said yes.
var ErrNotObtained = errors.New("floor: not obtained")

// Lock is a held lock.
type Lock struct {
	Key, Token string
	// sent[i] is held while master i's SET is in flight: a release to that
	// master waits for it, or it could overtake the SET on another
	// connection and leave the key behind until its TTL. (quorumlock gets
	// this ordering from sending every command for a key on one connection.)
	sent []sync.Mutex
}

// Lock makes one attempt to acquire key for ttl. On failure it releases
// the key everywhere in the background.
func (f *Floor) Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	l := &Lock{Key: key, Token: Token(), sent: make([]sync.Mutex, len(f.clients))}
	start := time.Now()
	yes := f.fanout(ctx, l, false, func(ctx context.Context, c *redis.Client) bool {
		ok, err := c.SetNX(ctx, key, l.Token, ttl).Result()
		return err == nil && ok
	})
	drift := time.Duration(float64(ttl)*0.01) + 2*time.Millisecond
	if yes && ttl-time.Since(start)-drift > 0 {
		return l, nil
	}
	for i, c := range f.clients {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			l.sent[i].Lock()
			defer l.sent[i].Unlock()
			releaseScript.Run(ctx, c, []string{key}, l.Token)
		}()
	}
	return nil, ErrNotObtained
}

// Unlock deletes the key where it still holds the token; it reports
// whether a majority deleted it.
func (f *Floor) Unlock(ctx context.Context, l *Lock) bool {
	return f.fanout(ctx, l, true, func(ctx context.Context, c *redis.Client) bool {
		n, err := releaseScript.Run(ctx, c, []string{l.Key}, l.Token).Int64()
		return err == nil && n == 1
	})
}

// fanout runs op on every master in parallel and returns as soon as a
// majority said yes (true) or can no longer say yes (false). With one
// master it calls it directly. A release (after) waits for the SET it
// follows on the same master.
func (f *Floor) fanout(ctx context.Context, l *Lock, after bool, op func(context.Context, *redis.Client) bool) bool {
	if len(f.clients) == 1 {
		return op(ctx, f.clients[0])
	}
	ch := make(chan bool, len(f.clients))
	for i, c := range f.clients {
		if !after {
			l.sent[i].Lock() // released when the SET has its answer
		}
		go func() {
			if after {
				l.sent[i].Lock()
			}
			defer l.sent[i].Unlock()
			ch <- op(ctx, c)
		}()
	}
	yes, no := 0, 0
	for range f.clients {
		if <-ch {
			yes++
		} else {
			no++
		}
		if yes >= f.quorum {
			return true
		}
		if no > len(f.clients)-f.quorum {
			return false
		}
	}
	return false
}
