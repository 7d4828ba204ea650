package redlock

import (
	"context"
	"time"
)

// The RWMutex scripts. KEYS[1] is the writer key (a string holding the
// writer's token, PX ttl, like a plain lock's key), KEYS[2] the readers (a
// sorted set: reader token → expiry in ms on this master's clock), KEYS[3]
// the waiting mark (a string holding a waiting writer's id, PX ttl). All
// three are read and written inside one script per master, so on each
// master the writer key and the readers set are always consistent.
var (
	// rlockScript (token, ttl): a new reader shares unless a writer holds
	// the lock or waits for it.
	rlockScript = newScript(luaKeep + `
if redis.call("exists", KEYS[1]) == 1 or redis.call("exists", KEYS[3]) == 1 then return 0 end
` + luaNow + `
redis.call("zremrangebyscore", KEYS[2], "-inf", now)
redis.call("zadd", KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[2], tonumber(ARGV[2]))
return 1`)

	// runlockScript (token, unused): removes the share and announces it
	// (a waiting writer retries); 1 if it was live.
	runlockScript = newScript(luaAnnounce + `
local s = redis.call("zscore", KEYS[2], ARGV[1])
if not s then return 0 end
redis.call("zrem", KEYS[2], ARGV[1])
announce(KEYS[1], ARGV[1])
` + luaNow + `
if tonumber(s) > now then return 1 end
return 0`)

	// rextendScript (token, ttl): pushes only this share's expiry to now +
	// ttl; an expired share is dropped, never revived.
	rextendScript = newScript(luaKeep + `
local s = redis.call("zscore", KEYS[2], ARGV[1])
if not s then return 0 end
` + luaNow + `
if tonumber(s) <= now then
  redis.call("zrem", KEYS[2], ARGV[1])
  return 0
end
redis.call("zadd", KEYS[2], "xx", now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[2], tonumber(ARGV[2]))
return 1`)

	// wlockScript (token, ttl, waiter, announce): the writer takes the lock
	// when no writer holds it and no reader share is live (expired shares
	// are dropped first). Then it removes its own waiting mark. Otherwise,
	// when announce is "1" and readers (not another writer) keep it out, it
	// leaves the mark (waiter, PX ttl) that keeps new readers out until it
	// gets the lock, gives up, or the mark expires. Writers kept out by a
	// writer leave no mark: when that writer releases, readers waiting then
	// get their turn, so a stream of writers does not starve readers either.
	wlockScript = newScript(luaNow + `
redis.call("zremrangebyscore", KEYS[2], "-inf", now)
local writer = redis.call("exists", KEYS[1])
if writer == 0 and redis.call("zcard", KEYS[2]) == 0 then
  redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
  if redis.call("get", KEYS[3]) == ARGV[3] then redis.call("del", KEYS[3]) end
  return 1
end
if ARGV[4] == "1" and writer == 0 then redis.call("set", KEYS[3], ARGV[3], "px", ARGV[2]) end
return 0`)

	// wunlockScript (token, waiter): compare-and-delete of the writer key;
	// the waiter's mark goes too (a master that refused the writer may
	// still carry it). Either deletion is announced — with the token, or
	// with the waiter's id when a writer that gives up lifts its mark
	// (token "") — so blocked readers and writers retry.
	wunlockScript = newScript(luaAnnounce + `
local r = 0
if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("del", KEYS[1])
  r = 1
end
local lifted = ARGV[2] ~= "" and redis.call("get", KEYS[3]) == ARGV[2]
if lifted then redis.call("del", KEYS[3]) end
if r == 1 then announce(KEYS[1], ARGV[1]) elseif lifted then announce(KEYS[1], ARGV[2]) end
return r`)

	// wextendScript (token, ttl): compare-and-pexpire of the writer key.
	wextendScript = newScript(`
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) end
return 0`)
)

// RWMutex is a distributed reader/writer lock on one resource: any number
// of readers share it (RLock), a writer holds it alone (Lock) — no reader
// and no other writer while it holds. Create it with Client.RWMutex; it is
// safe for concurrent use and holds no state of its own besides the
// resource's routing, so any number of RWMutex values (in any process) for
// one resource are the same lock.
//
// Why a majority is enough. A reader's share and a writer's lock are each
// held on a majority of the resource's group, and on every master one
// script checks and changes the writer key and the readers set together:
// a master never grants a writer while a live share is recorded there, nor
// a share while a writer is. Any two majorities of one group have a master
// in common, so a writer and a reader (or two writers) holding at the same
// time would both have been granted by that master — which its script
// refuses. Readers may share every master: that is the point.
//
// Expiry runs on the servers' clocks. Each reader's share is a member of a
// sorted set scored by its expiry, computed from the master's own TIME
// inside the script (now + ttl, as PX does for a key), never from a
// client's clock; expired shares are dropped by the next script that looks.
// A crashed reader's share therefore frees itself at its TTL, and Extend of
// a share moves only that share's expiry.
//
// Writers do not starve. A writer waiting in Lock (it retries) leaves on
// every master where readers kept it out a waiting mark (its id, PX ttl:
// the ttl it asked for); new readers are refused while the mark lives, so
// the readers that hold drain and the writer gets in, as with
// sync.RWMutex. A writer kept out by another writer leaves no mark, so
// when that writer releases, waiting readers get their turn: readers do
// not starve under a stream of writers either. The mark is
// removed when that writer gets the lock, releases it, or gives up; if the
// writer crashes while waiting, the mark expires on the server after one
// ttl — a crashed waiting writer costs readers no more than a crashed
// writer holding the lock would. Readers that already hold a share are not
// affected (they can Extend). TryLock makes one attempt and leaves no mark.
//
// Fences (Config.Fencing). Every share and every writer's lock has a fence
// (Lock.Fence), drawn from the resource's one counter as a plain lock's
// is: a writer's fence is above every reader's and writer's that completed
// before it started, and a reader's above every earlier writer's. Readers
// that hold together have fences in no particular order: a resource
// refuses a writer below the highest fence any holder used and a reader
// below the highest a writer used, never a reader below another reader
// (see Lock.Fence).
//
// The keys, on each master of the resource's group, are the resource (with
// Config.KeyPrefix) followed by ":rw:writer" (the writer's Token),
// ":rw:readers" (readers' Tokens, scored by expiry in unix ms) and
// ":rw:waiting". A plain Lock of the same resource is a different lock.
type RWMutex struct {
	s scripted
}

// RWMutex returns the reader/writer lock of resource. Bad input (an empty
// or too long resource) is reported by its methods.
func (c *Client) RWMutex(resource string) *RWMutex {
	return &RWMutex{s: newScripted(c, resource, ":rw:writer", ":rw:readers", ":rw:waiting")}
}

// Resource is the resource the RWMutex locks.
func (m *RWMutex) Resource() string { return m.s.resource }

// RLock takes a reader's share for ttl, retrying as Client.Lock does (Config
// RetryStrategy; ctx bounds the whole call): a retry happens when the
// writer that keeps it out releases or gives up (the masters announce it),
// or when the writer's key or mark expires on the masters, at the latest
// after the strategy's delay. It is refused while a writer holds the lock
// or waits for it. The share is held on a majority of the
// group; it expires on its own at ttl (server clock) unless extended, and
// the returned Lock's Release gives back exactly this share.
func (m *RWMutex) RLock(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := m.s.c.precheck(ctx, m.s.resource, ttl); err != nil {
		return nil, err
	}
	return m.s.acquire(ctx, kindRead, ttl, "", "r", 0)
}

// TryRLock makes one attempt to take a reader's share for ttl. It returns
// ErrNotObtained (joined with a *QuorumError) when a writer holds or waits,
// or no majority answered; the attempt's share is then removed everywhere.
func (m *RWMutex) TryRLock(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := m.s.c.precheck(ctx, m.s.resource, ttl); err != nil {
		return nil, err
	}
	return m.s.attempt(ctx, kindRead, ttl, "")
}

// Lock takes the lock exclusively (no reader, no other writer) for ttl,
// retrying as Client.Lock does: a retry happens at each release of a
// reader's share or of the writer's lock (announced by the masters), or
// when the last of them expires on the masters, at the latest after the
// strategy's delay. While it waits, it keeps new readers out (see
// RWMutex); when it gives up, it lifts that mark.
func (m *RWMutex) Lock(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := m.s.c.precheck(ctx, m.s.resource, ttl); err != nil {
		return nil, err
	}
	waiter := newToken()
	l, err := m.s.acquire(ctx, kindWrite, ttl, waiter, "w", 0, waiter, "1")
	if err != nil {
		// Lift the waiting mark on every master, detached from ctx. The
		// empty token matches no writer key. The lift is needed wherever
		// an attempt was sent (allMasters): a master that did not answer in
		// time may set the mark when it does — after a pause, with a fresh
		// ttl — so a master that misses the lift, or gets it late behind
		// the attempt's script, is sent it all the same (kept.go), instead
		// of refusing readers for a whole ttl.
		gone := &Lock{c: m.s.c, g: m.s.g, hash: m.s.hash, resource: m.s.resource, kind: kindWrite, keys: m.s.keys, extra: waiter,
			mayHold: allMasters}
		m.s.g.releaseDetached(gone.releaseRequest(m.s.c.s.ReleaseTimeout, keyLife(ttl, m.s.c.s.DriftFactor)))
	}
	return l, err
}

// TryLock makes one attempt to take the lock exclusively for ttl. It
// returns ErrNotObtained (joined with a *QuorumError) when a writer or a
// reader holds it, or no majority answered; it leaves no waiting mark.
func (m *RWMutex) TryLock(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := m.s.c.precheck(ctx, m.s.resource, ttl); err != nil {
		return nil, err
	}
	return m.s.attempt(ctx, kindWrite, ttl, "", "", "0")
}

// DoRead runs fn holding a reader's share, as Client.Do runs fn holding a
// lock: RLock (TryRLock with WithTryOnce), fn under a context cancelled
// with ErrLockLost if the share is lost (WithAutoExtend extends it), and a
// release whatever happens, also on panic. It returns fn's error, or the
// release's when fn succeeded; fn does not run when the share is not
// obtained.
func (m *RWMutex) DoRead(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
	return m.s.do(ctx, ttl, fn, opts, m.RLock, m.TryRLock)
}

// DoWrite runs fn holding the lock exclusively, as DoRead does with a
// reader's share (Lock, or TryLock with WithTryOnce).
func (m *RWMutex) DoWrite(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
	return m.s.do(ctx, ttl, fn, opts, m.Lock, m.TryLock)
}
