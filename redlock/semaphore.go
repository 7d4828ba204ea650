package redlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Semaphore scripts. KEYS[1] is the holders (a sorted set: holder token
// → expiry in ms on this master's clock), KEYS[2] the permits k the
// semaphore was created with (a string living as long as the holders).
var (
	// semAcquireScript (token, ttl, k): drops expired holders, refuses a
	// k that differs from the live holders' (an error reply, PERMITS …),
	// and adds the holder when fewer than k hold.
	semAcquireScript = newScript(luaKeep + luaNow + `
local ttl = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
local n = redis.call("zcard", KEYS[1])
if n == 0 then
  redis.call("del", KEYS[2])
else
  local have = redis.call("get", KEYS[2])
  if have and tonumber(have) ~= k then
    return redis.error_reply("PERMITS the semaphore's live holders use " .. have .. " permits on this master, not " .. ARGV[3])
  end
end
if n >= k then return 0 end
redis.call("zadd", KEYS[1], now + ttl, ARGV[1])
redis.call("set", KEYS[2], ARGV[3], "keepttl")
keep(KEYS[1], ttl)
keep(KEYS[2], ttl)
return 1`)

	// semReleaseScript (token, unused): removes the holder and announces it
	// (a waiter retries); 1 if it was live.
	semReleaseScript = newScript(luaAnnounce + `
local s = redis.call("zscore", KEYS[1], ARGV[1])
if not s then return 0 end
redis.call("zrem", KEYS[1], ARGV[1])
announce(KEYS[1], ARGV[1])
if redis.call("zcard", KEYS[1]) == 0 then redis.call("del", KEYS[2]) end
` + luaNow + `
if tonumber(s) > now then return 1 end
return 0`)

	// semExtendScript (token, ttl): pushes only this holder's expiry; an
	// expired holder is dropped, never revived.
	semExtendScript = newScript(luaKeep + `
local s = redis.call("zscore", KEYS[1], ARGV[1])
if not s then return 0 end
` + luaNow + `
if tonumber(s) <= now then
  redis.call("zrem", KEYS[1], ARGV[1])
  return 0
end
redis.call("zadd", KEYS[1], "xx", now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[1], tonumber(ARGV[2]))
keep(KEYS[2], tonumber(ARGV[2]))
return 1`)
)

// ErrPermitsMismatch means a Semaphore's permits differ from those of the
// holders that hold it now (another client created it with another
// number): every client of one semaphore must use the same permits. It is
// wrapped with the master that said so, and is not ErrNotObtained (Acquire
// does not retry it).
var ErrPermitsMismatch = errors.New("redlock: semaphore permits differ from its live holders'")

// Semaphore is a distributed counting semaphore: at most Permits holders
// at once, each within its validity. Create it with Client.Semaphore; it
// is safe for concurrent use, and every Semaphore of one resource (in any
// process) is the same semaphore, provided they agree on permits.
//
// Why a majority is not enough, and what is. Each master counts the live
// holders it granted and refuses a (k+1)th. With k ≥ 2 permits that does
// not bound the holders across masters: with 3 masters and 2 permits,
// holders A, B and C may be granted by masters {1,2}, {2,3} and {1,3} —
// every master has granted only 2, yet each holder has a majority, and 3
// hold a 2-permit semaphore. A holder therefore needs q of the group's N
// masters where q > k·N/(k+1):
//
//   - if k+1 holders each held q masters, they would count (k+1)·q grants,
//     but N masters grant at most k each, k·N in all; (k+1)·q > k·N makes
//     that impossible, so at most k hold;
//   - and no smaller q works: when (k+1)·q ≤ k·N, k+1 sets of q masters
//     dealt round-robin load no master with more than k.
//
// So q = ⌊k·N/(k+1)⌋ + 1 = N − ⌊(N−1)/(k+1)⌋ (SemaphoreQuorum). For k = 1
// it is the majority; it grows with k and reaches N when k ≥ N−1. Since
// k·N/(k+1) < N, q ≤ N: every (k, N) can be acquired while all N masters
// answer, and a semaphore tolerates N − q failed masters (0 when q = N:
// then one master down makes it unavailable, never unsafe). The README has
// the table.
//
// Holders expire individually on the servers' clocks, as RWMutex readers
// do (a sorted set scored by expiry from the master's TIME). Release and
// Extend count the same q as Acquire: a release confirmed by only a
// majority could leave the permit counted on masters the next holder needs,
// and an extension on fewer than q masters does not keep the permit.
//
// Fences (Config.Fencing). Every permit has a fence (Lock.Fence) from the
// resource's one counter, above the fence of every acquisition of the
// resource (permit or other lock) that completed before it started. With
// one permit a resource uses it as a writer's; with k ≥ 2, k holders hold
// at once with fences in no particular order, so a fence orders a permit
// after the earlier ones but does not say they are gone (see Lock.Fence).
//
// The keys, on each master of the resource's group, are the resource (with
// Config.KeyPrefix) followed by ":sem:holders" (holders' Tokens, scored by
// expiry in unix ms) and ":sem:permits" (k). A master refuses a permits
// different from its live holders'; an attempt that sees such a refusal
// fails with ErrPermitsMismatch, even when other masters granted it.
type Semaphore struct {
	s       scripted
	permits int
}

// SemaphoreQuorum returns the masters a holder of one of permits permits
// needs in a group of masters masters: the least q with q > permits ×
// masters / (permits+1) (see Semaphore). It is an error for permits < 1 or
// masters < 1.
func SemaphoreQuorum(permits, masters int) (int, error) {
	if permits < 1 {
		return 0, &InputError{Arg: "permits", Reason: fmt.Sprintf("%d is less than 1", permits)}
	}
	if masters < 1 {
		return 0, &InputError{Arg: "masters", Reason: fmt.Sprintf("%d is less than 1", masters)}
	}
	// ⌊k·N/(k+1)⌋ + 1 written as N − ⌊(N−1)/(k+1)⌋: no overflow for any k.
	return masters - (masters-1)/(permits+1), nil
}

// Semaphore returns the semaphore of resource with permits permits. Every
// client must use the same permits for a resource (masters holding live
// permits refuse another number). It refuses an empty or too long resource
// and permits < 1. The quorum a holder needs is fixed here, from the size
// of the resource's group (Quorum).
func (c *Client) Semaphore(resource string, permits int) (*Semaphore, error) {
	if err := c.checkResource(resource); err != nil {
		return nil, err
	}
	s := newScripted(c, resource, ":sem:holders", ":sem:permits")
	q, err := SemaphoreQuorum(permits, len(s.g.nodes))
	if err != nil {
		return nil, err
	}
	s.need = q
	return &Semaphore{s: s, permits: permits}, nil
}

// Resource is the semaphore's resource.
func (s *Semaphore) Resource() string { return s.s.resource }

// Permits is the number of holders the semaphore admits at once.
func (s *Semaphore) Permits() int { return s.permits }

// Quorum is the number of the group's masters a holder needs (and that
// Release and Extend need): SemaphoreQuorum(Permits, masters).
func (s *Semaphore) Quorum() int { return s.s.need }

// Acquire takes one permit for ttl, retrying as Client.Lock does (Config
// RetryStrategy; ctx bounds the whole call): a retry happens when a holder
// releases its permit (announced by Quorum masters), or when enough
// holders' permits expire on the masters, at the latest after the
// strategy's delay. The permit is held on Quorum
// masters and expires on its own at ttl (server clock) unless extended.
// When every permit is taken or too few masters answer, the error is
// ErrNotObtained joined with a *QuorumError; a permits mismatch is
// ErrPermitsMismatch and is not retried.
func (s *Semaphore) Acquire(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := s.s.c.precheck(ctx, s.s.resource, ttl); err != nil {
		return nil, err
	}
	return s.s.acquire(ctx, kindPermit, ttl, "", "s", s.permits, s.permits)
}

// TryAcquire makes one attempt to take a permit for ttl (see Acquire); the
// attempt's grants are removed everywhere when it fails.
func (s *Semaphore) TryAcquire(ctx context.Context, ttl time.Duration) (*Lock, error) {
	if err := s.s.c.precheck(ctx, s.s.resource, ttl); err != nil {
		return nil, err
	}
	return s.s.attempt(ctx, kindPermit, ttl, "", s.permits)
}

// Do runs fn holding a permit, as Client.Do runs fn holding a lock: Acquire
// (TryAcquire with WithTryOnce), fn under a context cancelled with
// ErrLockLost if the permit is lost (WithAutoExtend extends it), and a
// release whatever happens, also on panic. It returns fn's error, or the
// release's when fn succeeded; fn does not run without a permit.
func (s *Semaphore) Do(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) error {
	return s.s.do(ctx, ttl, fn, opts, s.Acquire, s.TryAcquire)
}

// permitsError returns ErrPermitsMismatch, wrapped with the first master
// that refused the semaphore's permits, or nil.
func permitsError(resource string, r result) error {
	for _, sl := range r.slots {
		var re redis.Error
		if err := sl.reply.err; errors.As(err, &re) && strings.HasPrefix(re.Error(), "PERMITS ") {
			return fmt.Errorf("%w: semaphore %q: %w", ErrPermitsMismatch, resource, err)
		}
	}
	return nil
}
