package redlock

import (
	"math"
	"strings"
	"time"
)

// Releases kept for a master that missed them.
//
// A release is "needed" on a master whose SET (or PEXPIRE) may have landed
// there (call.keepFor > 0). A needed release is never dropped silently:
//
//   - it is sent even when it waited in the queue past its deadline (behind
//     its own SET on a slow master: the SET lands, so must the release);
//   - when its master is down, or the connection fails under it, the master
//     keeps it and sends it when it answers again (reconnectLoop);
//   - when the master is up but cannot take it now (queue full, LOADING,
//     BUSY), the master keeps it and retries it after ReconnectInterval;
//   - only a full list (maxKeptReleases) drops one, and that is logged.
//
// A kept release is not dropped by age: a paused master applies the SETs it
// held when it resumes, with a fresh TTL, so the key may live keyLife from
// when the master answers again — however long the pause was. At reconnect
// every kept release is sent; one that fails again is kept again.

// keptRelease is a release a master missed while its key may still exist
// there.
type keptRelease struct {
	op         opKind        // opRelease, or a reader's, writer's or permit's release
	key, token string        // key: the first key of the operation
	hash       uint64        // picks the writer: the one its SET went through
	args       *cmdArgs      // a scripted release's command, as first sent (immutable; nil: a plain release of key and token)
	life       time.Duration // how long the key may live once the master applies it (keyLife)
}

// lifeUnknown is the keepFor of a release whose key's TTL this client does
// not know (ReleaseToken: a lock taken elsewhere).
const lifeUnknown = time.Duration(math.MaxInt64)

// needed tells whether cl is a release its master may need.
func (cl *call) needed() bool { return cl.op.isRelease() && cl.keepFor > 0 }

// keepRelease remembers a release that this master may need (its SET may
// have landed) but did not get, so that it is sent when the master answers
// again.
func (n *node) keepRelease(cl *call) {
	if !cl.needed() {
		return
	}
	keys := []string{cl.key}
	if cl.op == opMultiRelease {
		keys = cl.args.keys // kept as one single-key release per key
	}
	n.keptMu.Lock()
	defer n.keptMu.Unlock()
	for _, k := range keys {
		if len(n.kept) >= maxKeptReleases {
			n.keptDropped.Add(1)
			if now := time.Now(); now.Sub(n.droppedLogged) > time.Second {
				n.droppedLogged = now
				n.c.s.Logger.Warn("redlock: kept releases full: a release this master may need is dropped (its key expires with its TTL)",
					"master", n.addr.redacted, "kept", len(n.kept), "dropped_total", n.keptDropped.Load())
			}
			return
		}
		kr := keptRelease{op: opRelease, key: k, token: cl.token, hash: cl.hash, life: cl.keepFor}
		if cl.op != opMultiRelease {
			kr.op = cl.op
			if cl.args != nil && cl.args.script != nil {
				kr.args = cl.args // as sent: a scripted release keeps its script (its own, immutable)
			} // a plain release's args may be its fan-out's, reused: rebuilt from key and token
		}
		n.kept = append(n.kept, kr)
	}
}

// keepAndRetry keeps a needed release that this master, up, could not take
// now, and schedules a flush of the kept releases after ReconnectInterval
// (at most one scheduled at a time). A master that goes down meanwhile
// sends them at reconnect instead.
func (n *node) keepAndRetry(cl *call) {
	if !cl.needed() {
		return
	}
	n.keepRelease(cl)
	if !n.retryPending.CompareAndSwap(false, true) {
		return
	}
	n.c.goBackground(func() {
		t := time.NewTimer(n.c.s.ReconnectInterval)
		defer t.Stop()
		select {
		case <-n.c.closing:
			return
		case <-t.C:
		}
		n.retryPending.Store(false)
		if !n.down.Load() {
			n.flushKept()
		}
	})
}

// flushKept sends every kept release through the writers like any command
// (batched, each on the writer its SET went through; a master that fails
// again keeps them again).
func (n *node) flushKept() {
	n.keptMu.Lock()
	kept := n.kept
	n.kept = nil
	n.keptMu.Unlock()
	if len(kept) == 0 {
		return
	}
	out := make(chan reply, len(kept)) // nobody reads it: every answer fits
	calls := make([]call, len(kept))
	deadline := time.Now().Add(n.c.s.ReleaseTimeout)
	for i, p := range kept {
		args := p.args
		if args == nil { // a plain release kept without its boxed command
			args = newCmdArgs(p.key, p.token)
		}
		calls[i] = call{op: p.op, key: p.key, token: p.token, hash: p.hash, args: args,
			deadline: deadline, keepFor: p.life, out: out}
		n.submit(&calls[i], p.hash, false)
	}
}

// retryLater tells whether a server error means "not applied, try again
// later": the master is up but loading its dataset, or busy running a script.
func retryLater(err error) bool {
	if !isServerError(err) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "BUSY ")
}
