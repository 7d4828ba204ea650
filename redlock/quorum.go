package redlock

import (
	"context"
	"errors"
	"sync"
	"time"
)

// group is one quorum group: N independent masters, quorum N/2+1.
type group struct {
	index  int
	id     string   // sorted normalized addresses: the ring member
	addrs  []string // as written in Config (Route returns these)
	nodes  []*node
	quorum int
}

// result is the outcome of one fan-out.
type result struct {
	yes, no int
	slots   []slot // one per master, in group order; reply.done marks the answered ones
}

// slot is one master's part of a fan-out: the command and its answer, in one
// allocation for the whole fan-out.
type slot struct {
	call  call
	reply reply
}

// fanout sends one command to every master of the group in parallel — each
// master's writer sends it, batched with whatever else is queued for that
// master — and waits only as long as the outcome is open:
//
//   - decisive=false (acquire): until a quorum said yes (early quorum) or a
//     quorum can no longer be reached (early failure);
//   - decisive=true (release, extend, exists): until a quorum said yes, a
//     quorum said no, or neither can happen any more.
//
// Each master has NodeTimeout to answer; the caller's ctx bounds the wait.
// Late replies land in the buffered channel and are dropped with it: no
// goroutine waits for the slowest master.
//
// keep marks (bit i for master i) the masters a release is kept for when it
// does not reach them; see mayHold.
func (g *group) fanout(ctx context.Context, op opKind, key, token string, ttlMs int64, hash uint64, decisive bool, timeout time.Duration, keep uint64) result {
	n := len(g.nodes)
	out := make(chan reply, n)
	r := result{slots: make([]slot, n)}
	args := newCmdArgs(key, token, ttlMs)
	deadline := time.Now().Add(timeout)
	direct := n == 1 // one master: nothing to wait for in parallel, send it ourselves when we can
	for i, nd := range g.nodes {
		// A release with a known key lifetime (ttlMs) is kept by a master
		// that may hold the key but misses it, and sent when it is back.
		r.slots[i].call = call{op: op, idx: i, key: key, token: token, ttlMs: ttlMs, args: args, deadline: deadline,
			cleanup: op == opRelease && ttlMs > 0 && hasBit(keep, i), out: out}
		nd.submit(&r.slots[i].call, hash, direct)
	}
	pending := n
	var timer *time.Timer
	var timerC <-chan time.Time
	for pending > 0 {
		if r.yes >= g.quorum {
			break
		}
		if r.yes+pending < g.quorum && (!decisive || r.no+pending < g.quorum) {
			break
		}
		if decisive && r.no >= g.quorum {
			break
		}
		var rp reply
		select {
		case rp = <-out:
		default:
			if timer == nil {
				timer = getTimer(time.Until(deadline))
				timerC = timer.C
			}
			select {
			case rp = <-out:
			case <-timerC:
				putTimer(timer)
				r.fillPending(g, errTimeout)
				return r
			case <-ctx.Done():
				putTimer(timer)
				r.fillPending(g, ctx.Err())
				return r
			}
		}
		pending--
		r.slots[rp.idx].reply = rp
		switch {
		case rp.err != nil:
		case rp.ok:
			r.yes++
		default:
			r.no++
		}
	}
	if timer != nil {
		putTimer(timer)
	}
	// The outcome is decided; record the answers that are already here
	// (a down master answers at once) so that votes and mayHold are exact
	// for them. Those still on their way are not waited for.
	for pending > 0 {
		select {
		case rp := <-out:
			pending--
			r.slots[rp.idx].reply = rp
		default:
			return r
		}
	}
	return r
}

// fillPending marks the masters that have not answered with err.
func (r *result) fillPending(g *group, err error) {
	for i := range r.slots {
		if !r.slots[i].reply.done {
			r.slots[i].reply = reply{idx: i, done: true, err: g.nodes[i].wrap(err)}
		}
	}
}

// cleanup releases key on every master of the group — including those that
// did not answer, whose SET may still have landed — without waiting: the
// writers send it detached from the caller, bounded by ReleaseTimeout. A
// master that is down keeps the release and sends it when it is back.
func (g *group) cleanup(key, token string, ttlMs int64, hash uint64, timeout time.Duration, keep uint64) {
	n := len(g.nodes)
	out := make(chan reply, n) // nobody reads it: every answer fits, then it is garbage
	calls := make([]call, n)
	args := newCmdArgs(key, token, ttlMs)
	deadline := time.Now().Add(timeout)
	for i, nd := range g.nodes {
		calls[i] = call{op: opRelease, idx: i, key: key, token: token, ttlMs: ttlMs, args: args, deadline: deadline, cleanup: hasBit(keep, i), out: out}
		nd.submit(&calls[i], hash, false)
	}
}

// mayHold marks the masters where an acquire's SET may have landed: those
// that said yes, and those whose answer is unknown (not awaited, timed out,
// connection lost after sending). Masters that said no, were down, or never
// got the command cannot hold the token: a release they miss needs no
// keeping. Masters past the 64th are always marked.
func (r *result) mayHold() uint64 {
	var m uint64
	for i, sl := range r.slots {
		if i >= 64 {
			break
		}
		rp := sl.reply
		if rp.ok || !rp.done || (rp.err != nil && mayHaveLanded(rp.err)) {
			m |= 1 << i
		}
	}
	return m
}

// mayHaveLanded tells whether a command that failed with err may still have
// been applied by the master.
func mayHaveLanded(err error) bool {
	for _, notSent := range []error{errNodeDown, errQueueFull, errExpired, ErrClosed} {
		if errors.Is(err, notSent) {
			return false
		}
	}
	return !isServerError(err)
}

func hasBit(mask uint64, i int) bool { return i >= 64 || mask&(1<<i) != 0 }

// quorumError describes r for the caller.
func (g *group) quorumError(op opKind, resource string, r result) *QuorumError {
	e := &QuorumError{Op: op.String(), Resource: resource, Quorum: g.quorum, Votes: make([]Vote, len(g.nodes))}
	for i, nd := range g.nodes {
		rp := r.slots[i].reply
		e.Votes[i] = Vote{Addr: nd.addr.redacted, Answered: rp.done, OK: rp.ok && rp.err == nil, Err: rp.err}
	}
	return e
}

// Timers for fan-out waits are reused: since Go 1.23 a stopped timer's
// channel holds no stale tick, so Reset after Stop is safe.
var timerPool sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timerPool.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timerPool.Put(t)
}
