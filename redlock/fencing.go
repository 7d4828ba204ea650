package redlock

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Fencing (Config.Fencing): every acquisition gets a fence, an int64 that is
// strictly greater than the fence of every acquisition of the same resource
// that completed before it started — from any client, in any process.
//
// The counters. Each master of a group keeps one hash, the key
// KeyPrefix + FenceCounterKey, of at most FenceSlots counters; a resource's
// counter is the field named by its slot (bits of the hash that routes it,
// so it is the same in every group). One key per master and at most 1024
// fields, whatever the number of resources, so counters never pile up
// (Redisson's per-lock fence keys reached 25 million in redisson#6510). A
// counter is shared by the resources of its slot: a resource's fences are
// increasing, not consecutive. The key has no TTL. Slots rather than one
// counter per group: concurrent acquisitions of different resources would
// reach the masters of one counter in different orders, leaving the masters'
// answers unequal and forcing the write-back below on nearly every lock
// under load; with slots, they rarely share a counter.
//
// The protocol:
//
//  1. The acquire script (fenceAcquireScriptSrc) sets the lock's key with
//     SET NX PX exactly as the plain acquire does and, only when it was set,
//     advances the master's counter by one and returns it.
//  2. Lock takes m, the maximum over the masters that said yes (a majority
//     Y). When every master of Y returned the same value, every master of Y
//     now holds a counter ≥ m and nothing more is sent. Otherwise m is
//     written back — the raise script sets the counter to max(counter, m) —
//     to every master of the group, and Lock returns once a majority W
//     acknowledged it: at most one extra round trip, only when the counters
//     have drifted apart (a master was down, or said busy while the others
//     said yes, or two locks of one slot were taken at the same time).
//
// Why it is monotonic: a counter never decreases (the acquire script adds
// one; the raise script never lowers it). When acquisition A completes with
// fence m, a majority (Y or W) holds a counter ≥ m. An acquisition B that
// starts after A completed needs a majority Y' of yes; Y' and that majority
// share at least one master x, whose counter was already ≥ m when B's script
// ran there, so x returned at least m+1 and B's fence (a maximum that
// includes x's value) is > m. No clock is involved.
//
// Holders in sequence. A stronger property holds in practice for two holds
// of a resource whose acquisitions overlapped in time (where the promise
// above says nothing): if B held the lock before A's SET reached a master x
// of both majorities, that SET found B's key gone, and B's write-back (when
// there was one) reached x before B's release did — both travel through the
// writer that the key's hash picks, one batch after the other — so A's value
// at x, and A's fence, is above B's. A resource that refuses lower fences
// thus does not refuse a later holder that respects its validity (the
// safety checker counts such refusals: 0).
//
// A master restarted without its data (no AOF, or AOF without fsync) loses
// its counter; a missing counter restarts from the master's clock in
// microseconds (Redis TIME). A counter is a clock reading plus the number of
// fences since, so every fence handed out before is at most the clock of the
// group's fastest master at that time, as long as the group hands out fewer
// than one fence per microsecond on average. The restarted master's first
// value is thus above every earlier fence unless its clock is behind the
// fastest master's by more than its downtime (plus RestartQuarantine, during
// which it takes no part in acquisitions). With persistence (appendfsync
// always), no clock matters.
//
// Ring changes (Config.Previous, migration mode): a resource whose group
// changes is acquired on both its previous and its new group; its fence is
// then the maximum over both groups' majorities, written back (raised) on
// both, so that the new group's counter ends above every fence the previous
// group handed out for it, and fences stay monotonic across the change.
// (RWMutex, Semaphore and LockAll refuse a moved resource in that mode.)
//
// Every lock kind. A resource's acquisitions of every kind — Lock, TryLock,
// Await and Do; an RWMutex's writer and readers; a Semaphore's permits; a
// LockAll that includes it — draw from the resource's one counter slot, by
// the same script wrapper (fencedScriptSrc) and the same settleFence. The
// argument above needs only that an acquisition's "yes" masters form a
// majority (a semaphore's quorum is larger still) and that the write-back
// reaches a majority, so the promise holds across kinds: a writer's fence
// is above the fence of every reader, writer, permit holder and plain lock
// of the resource that completed before the writer started, and so is a
// reader's or a permit holder's. A LockAll part (the resources that route to
// one group) advances its resources' counters in one script per master, to
// one value: the part's fence, shared by those resources.
//
// What a fence means for shared holders. Holders whose acquisitions
// overlapped — readers sharing the resource, holders of a semaphore's
// permits — get fences in no particular order (two may even be equal): the
// promise orders an acquisition only after those completed before it
// started. So a resource must not refuse a reader (or a permit holder) for
// a fence below another reader's. What it can do is keep two numbers, the
// highest fence any holder (reader or writer) used and the highest a
// writer used, and:
//
//   - refuse a writer below the highest fence of any holder: every reader
//     and writer that held before a valid writer got the lock has a lower
//     fence, so a writer below one of theirs is stale (paused past its
//     validity), and refusing it keeps it from writing under a live
//     reader;
//   - refuse a reader below the highest writer fence: readers and writers
//     exclude each other, so such a reader held its share before that
//     writer got the lock, and is stale.
//
// "Held before ⇒ lower fence" is the "holders in sequence" property above,
// which carries over to every kind: a share, a writer key or a permit is
// gone from a master only after its holder's write-back, sent through the
// same writer, reached it. (The safety checker in integration/ runs readers
// and writers against a register that checks fences this way.) Permits:
// with one permit, exactly as writers; with k ≥ 2, k holders hold at once
// and their fences do not exclude one another — a fence only says that its
// permit came after every acquisition of the resource that completed
// before it started (last writer wins per record, say), not that an older
// permit is gone.

// The fence scripts. Every fenced acquire — a plain lock's, a reader's, a
// writer's, a permit's, a LockAll part's — is the acquire script of its
// kind, unchanged, wrapped by fencedScriptSrc: one rule for reading,
// advancing and storing counters, whatever the lock kind. Without
// Config.Fencing the unwrapped scripts are sent, exactly as they are.
var (
	fenceAcquireScriptSrc = fencedScriptSrc(`return redis.call("set", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) and 1 or 0`, 2)

	// raiseScriptSrc raises the fence counters (fields ARGV[2], ARGV[3]…
	// of the hash KEYS[1]) to at least ARGV[1] (never lowers one) and
	// returns 1.
	raiseScriptSrc = `for i = 2, #ARGV do
  local c = redis.call("hget", KEYS[1], ARGV[i])
  if not c or tonumber(c) < tonumber(ARGV[1]) then redis.call("hset", KEYS[1], ARGV[i], ARGV[1]) end
end
return 1`

	fenceAcquireScript = redis.NewScript(fenceAcquireScriptSrc)
	raiseScript        = redis.NewScript(raiseScriptSrc)

	// The scripted (several-key) fenced operations (scriptOf).
	rlockFenceScript      = newScript(fencedScriptSrc(rlockScript.src, 2))
	wlockFenceScript      = newScript(fencedScriptSrc(wlockScript.src, 4))
	semAcquireFenceScript = newScript(fencedScriptSrc(semAcquireScript.src, 3))
	multiFenceScript      = newScript(fencedScriptSrc(multiAcquireScriptSrc, 2))
	raiseSlotsScript      = newScript(raiseScriptSrc)

	// fenceScriptSources are loaded on every (re)connection too with
	// Config.Fencing (the others fall back to EVAL once per master).
	fenceScriptSources = []string{fenceAcquireScriptSrc, raiseScriptSrc, multiFenceScript.src}
)

// The fenced operations (Config.Fencing): the scripted acquires and
// LockAll's in their fenced form, and the write-back of several counter
// slots. They are numbered apart from the scripted operations (scripted.go);
// an acquire's fenced form is named as the acquire.
const opFenced opKind = 128

const (
	opRLockFence        = opFenced + iota // rlockScript, fenced
	opWLockFence                          // wlockScript, fenced
	opSemAcquireFence                     // semAcquireScript, fenced
	opMultiAcquireFence                   // multiAcquireScriptSrc, fenced
	opRaiseSlots                          // raiseScriptSrc over several slots (a LockAll part)
)

var (
	fencedOpNames = [...]string{"rlock", "wlock", "acquire permit", "lockall", "fence"}
	fencedScripts = [...]*script{rlockFenceScript, wlockFenceScript, semAcquireFenceScript, multiFenceScript, raiseSlotsScript}
)

// fencedScriptSrc wraps acquire, an acquire script that answers 1 when it
// took the lock (anything else — 0, an error — when not), with nargv ARGV,
// into its fenced form. The fenced form gets one more KEY, the counters'
// hash (last), and one more ARGV per counter slot to advance (after
// acquire's own): it reads the slots' counters first (so a counter key of
// the wrong type fails the script before anything is written), runs
// acquire with its own KEYS and ARGV, and when acquire answered 1 advances
// the counters and answers their new value (> 0) instead. Advancing several
// slots (a LockAll part) sets each to the same value m, the maximum of
// their advanced values, so every one of its resources' counters reaches
// the part's fence. A missing counter (a new master, or one restarted
// without its data) starts from the master's clock in microseconds (see
// the comment above for why that keeps fences monotonic across restarts).
func fencedScriptSrc(acquire string, nargv int) string {
	n := strconv.Itoa(nargv)
	return `local fk = KEYS[#KEYS]
local slots = {unpack(ARGV, ` + n + ` + 1)}
local cs = {}
for i = 1, #slots do cs[i] = redis.call("hget", fk, slots[i]) end
local function acquire(KEYS, ARGV)
` + acquire + `
end
local r = acquire({unpack(KEYS, 1, #KEYS - 1)}, {unpack(ARGV, 1, ` + n + `)})
if r ~= 1 then return r end
local m = 0
for i = 1, #slots do
  local c = cs[i]
  if c then c = tonumber(c) + 1 else local t = redis.call("time") c = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
  m = math.max(m, c)
end
local v = string.format("%.0f", m)
for i = 1, #slots do redis.call("hset", fk, slots[i], v) end
return m`
}

// FenceCounterKey is the key (after Config.KeyPrefix) of the hash of fence
// counters on every master, used with Config.Fencing: at most FenceSlots
// fields, named "0" to "1023". No resource may be named so.
const FenceCounterKey = "quorumlock:fence"

// FenceSlots bounds the fence counters of a master: resources share them by
// hash.
const FenceSlots = 1024

// fenceSlot is the counter slot of a resource whose routing hash is h (bits
// 16–25: independent of the ring's partition, bits 0–15, and of the
// writer choice, bits 32 and up).
func fenceSlot(h uint64) int { return int(h>>16) & (FenceSlots - 1) }

// fenceSlotNames are the slots' field names, boxed once.
var fenceSlotNames = func() (out [FenceSlots]any) {
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

// settleFence computes the fence of an acquisition op that reached a quorum
// (r), writing it back to a majority of g when the masters disagree — for
// every lock kind (Lock, RWMutex, Semaphore, a LockAll part). The counters
// are those of slots, or the resource's own slot (fenceSlot(h)) when slots
// is nil; h also picks each master's writer, as for the lock's key. In
// migration mode (pg, the moved resource's previous group, not nil; pr its
// answers) the fence is the maximum over both groups' answers, and it is
// written back (raised) on a majority of both unless every answer agrees.
// It returns the fence, or an error when a group's majority did not
// acknowledge the write-back (the attempt must then be abandoned).
func (c *Client) settleFence(ctx context.Context, op opKind, g, pg *group, h uint64, slots []int, resource string, r, pr result) (int64, error) {
	var m int64
	same := true
	seen := false
	note := func(r *result) {
		for _, sl := range r.slots {
			rp := sl.reply
			if !rp.ok || rp.err != nil {
				continue
			}
			if seen && rp.val != m {
				same = false
			}
			seen = true
			m = max(m, rp.val)
		}
	}
	note(&r)
	if pg != nil {
		note(&pr)
	}
	if same {
		return m, nil
	}
	q := request{op: opRaise, key: c.fenceKey, fenceKey: c.fenceKey, fenceSlot: fenceSlot(h), fence: m, hash: h, timeout: c.s.NodeTimeout}
	if len(slots) > 0 {
		argv := make([]any, 1, 1+len(slots))
		argv[0] = m
		for _, s := range slots {
			argv = append(argv, fenceSlotNames[s])
		}
		q.op, q.args = opRaiseSlots, newScriptArgs(opRaiseSlots, []string{c.fenceKey}, "", argv...)
	}
	w, pw := fanoutBoth(ctx, g, q, pg, q)
	if w.yes >= g.quorum && (pg == nil || pw.yes >= pg.quorum) {
		return m, nil
	}
	// One line, like every acquisition error: the write-back's votes (of
	// the group that fell short), and it matches ErrNotObtained and the
	// caller's context error.
	var qe *QuorumError
	if w.yes >= g.quorum { // pg fell short
		qe = joinQuorumErrors(pg.quorumError(opRaise, resource, pw), g.quorumError(opRaise, resource, w), "new")
	} else {
		qe = g.quorumError(opRaise, resource, w)
		if pg != nil {
			qe = joinQuorumErrors(qe, pg.quorumError(opRaise, resource, pw), "previous")
		}
	}
	qe.Op = op.String()
	qe.sentinel = ErrNotObtained
	qe.why = fmt.Sprintf("its fence %d was not written back to a majority", m)
	qe.cause = ctx.Err()
	return 0, qe
}

// Fence returns the lock's fencing token: 0 unless Config.Fencing is set;
// otherwise a number strictly greater than the fence of every acquisition
// of the same resource that completed before this one started — of any
// kind (Lock, TryLock, Await, Do, an RWMutex's writer or reader, a
// Semaphore's permit, a LockAll that includes the resource), from any
// client or process (see Config.Fencing for the conditions). Extend keeps
// it.
//
// Pass it with every write to the protected resource, and have the resource
// refuse a write whose fence is lower than the highest it has seen: that is
// what stops a holder that was paused past its validity. Readers of an
// RWMutex and holders of a Semaphore's permits hold together, and their
// fences are in no particular order among themselves: refuse a writer
// below the highest fence any reader or writer used, a reader below the
// highest a writer used, never a reader for being below another reader
// (fencing.go says why, and what permits' fences mean).
func (l *Lock) Fence() int64 { return l.fence }
