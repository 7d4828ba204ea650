package redlock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// group is one quorum group: N independent masters, quorum N/2+1.
type group struct {
	index  int
	id     string   // sorted normalized addresses: the ring member
	addrs  []string // as written in Config (Route returns these)
	nodes  []*node
	quorum int
	fans   sync.Pool // of *fan, sized for this group
}

// result is the outcome of one fan-out.
type result struct {
	yes, no int
	slots   []slot // one per master, in group order; reply.done marks the answered ones
}

// slot is one master's answer in a result.
type slot struct {
	reply reply
}

// fan is what one fan-out shares with the masters' writers: the calls, the
// channel they answer on, and the command's arguments. Fans are pooled per
// group, and a fan goes back to the pool only when nobody can touch it any
// more: every call was answered (a master that answers after the caller
// moved on — early quorum, NodeTimeout, a cancelled ctx — still holds its
// call's reference until it does) and the caller is done. Its unread
// answers are then drained, so a late answer can never be read by another
// fan-out; gen tells the uses apart all the same (a reply of another use is
// counted in strayReplies and ignored).
type fan struct {
	refs  atomic.Int32 // calls not answered yet, + 1 for the caller
	gen   uint32
	g     *group
	out   chan reply
	calls []call
	args  cmdArgs
}

// strayReplies counts replies that reached a fan-out they did not belong
// to (never expected: tests assert it stays 0); fansMade counts the fans
// allocated (tests check that they are reused).
var strayReplies, fansMade atomic.Int64

// getFan returns a fan for the group, referenced by its n calls and by the
// caller.
func (g *group) getFan() *fan {
	f, _ := g.fans.Get().(*fan)
	if f == nil {
		n := len(g.nodes)
		f = &fan{g: g, out: make(chan reply, n), calls: make([]call, n)}
		fansMade.Add(1)
	}
	f.gen++
	f.refs.Store(int32(len(f.calls)) + 1)
	return f
}

// unref gives back one reference; the last one returns f to its pool.
func (f *fan) unref() {
	switch left := f.refs.Add(-1); {
	case left == 0:
		for len(f.out) > 0 {
			<-f.out
		}
		clear(f.calls)
		f.args = cmdArgs{}
		f.g.fans.Put(f)
	case left < 0:
		panic("redlock: a fan-out's call was answered twice")
	}
}

// start fills f's calls with q (args: q's own, or f's) and submits them.
func (f *fan) start(g *group, q request, deadline time.Time, direct bool) {
	args := q.args
	if args == nil {
		f.args = q.plainArgs()
		args = &f.args
	}
	for i, nd := range g.nodes {
		cl := &f.calls[i]
		*cl = q.call(i, args, deadline, f.out)
		cl.fan, cl.gen = f, f.gen
		nd.submit(cl, q.hash, direct)
	}
}

// request is one operation on a group: the same command for every master.
type request struct {
	op    opKind
	key   string // the Redis key (KeyPrefix + resource)
	token string
	ttlMs int64  // acquire and extend: the TTL sent to the masters, in ms
	hash  uint64 // the key's hash: picks each master's writer
	// Fencing: the group's fence counter hash, the resource's slot in it
	// (opAcquireFence, opRaise), and the value opRaise raises it to.
	fenceKey  string
	fenceSlot int
	fence     int64
	// timeout bounds each master's answer (NodeTimeout; ReleaseTimeout for
	// a detached release).
	timeout time.Duration
	// Releases only: for masters of keepMask (bit i for master i; see
	// mayHold) the release is needed, and never dropped silently (kept.go);
	// keepFor is the key's longest life once a master applies its last
	// command (keyLife). keepFor 0: not needed anywhere.
	keepMask uint64
	keepFor  time.Duration
	// keys are the keys of a several-key operation (opMulti*), in the
	// global order; key is then the first of them.
	keys []string
	// need is the number of "yes" that decides the operation (0: the
	// group's majority). A Semaphore's permits need more (semQuorum); a
	// decisive operation is then refused once len(nodes)−need+1 said no.
	need int
	// args, when set, is the command (a scripted operation's, see
	// newScriptArgs); otherwise it is built from key, token and ttlMs.
	args *cmdArgs
}

// decisive tells whether a quorum of "no" ends the operation: it does for
// release, extend and exists; an acquire only ends early when a quorum of
// "yes" can no longer be reached.
func (q *request) decisive() bool { return !q.op.isAcquire() }

// needs returns the "yes" votes that decide q on g, and the "no" votes that
// make them unreachable (for a majority of an odd group, the same number).
func (q *request) needs(g *group) (yes, no int) {
	yes = q.need
	if yes == 0 {
		yes = g.quorum
	}
	return yes, len(g.nodes) - yes + 1
}

// call is q's command for master i, answering on out.
func (q *request) call(i int, args *cmdArgs, deadline time.Time, out chan<- reply) call {
	cl := call{op: q.op, idx: i, key: q.key, token: q.token, args: args, deadline: deadline, hash: q.hash, out: out}
	if q.op.isRelease() && q.keepFor > 0 && hasBit(q.keepMask, i) {
		cl.keepFor = q.keepFor
	}
	return cl
}

// fanout sends q to every master of the group in parallel — each master's
// writer sends it, batched with whatever else is queued for that master —
// and waits only as long as the outcome is open:
//
//   - acquire: until a quorum said yes (early quorum) or a quorum can no
//     longer be reached (early failure);
//   - release, extend, exists (decisive): until a quorum said yes, a quorum
//     said no, or neither can happen any more.
//
// Each master has q.timeout to answer; the caller's ctx bounds the wait.
// Late replies land in the buffered channel and are dropped with it: no
// goroutine waits for the slowest master.
func (g *group) fanout(ctx context.Context, q request) result {
	n := len(g.nodes)
	f := g.getFan()
	defer f.unref()
	r := result{slots: make([]slot, n)}
	deadline := time.Now().Add(q.timeout)
	decisive := q.decisive()
	// One master: nothing to wait for in parallel, so the caller sends the
	// command itself when it can — unless ctx can end: a direct send blocks
	// until the master answers or NodeTimeout, and the caller must be able
	// to give up when ctx ends, so the command goes through the writer and
	// the caller waits for ctx below.
	direct := n == 1 && ctx.Done() == nil
	need, noNeed := q.needs(g)
	f.start(g, q, deadline, direct)
	out := f.out
	pending := n
	var timer *time.Timer
	var timerC <-chan time.Time
	for pending > 0 {
		if r.yes >= need {
			break
		}
		if r.yes+pending < need && (!decisive || r.no+pending < noNeed) {
			break
		}
		if decisive && r.no >= noNeed {
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
		if rp.gen != f.gen {
			strayReplies.Add(1)
			continue
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
			if rp.gen != f.gen {
				strayReplies.Add(1)
				continue
			}
			pending--
			r.slots[rp.idx].reply = rp
		default:
			return r
		}
	}
	return r
}

// cmdArgs is q's command, the same for every master.
func (q *request) cmdArgs() *cmdArgs {
	if q.args != nil {
		return q.args
	}
	a := q.plainArgs()
	return &a
}

// plainArgs is the command of a request without args of its own.
func (q *request) plainArgs() cmdArgs {
	a := cmdArgs{key: q.key, token: q.token, ttl: q.ttlMs, keys: q.keys}
	if q.fenceKey != "" {
		a.fence = &fenceArgs{key: q.fenceKey, slot: fenceSlotNames[q.fenceSlot], value: q.fence}
	}
	return a
}

// fillPending marks the masters that have not answered with err.
func (r *result) fillPending(g *group, err error) {
	for i := range r.slots {
		if !r.slots[i].reply.done {
			r.slots[i].reply = reply{idx: i, done: true, err: g.nodes[i].wrap(err)}
		}
	}
}

// releaseDetached sends the release q to every master of the group —
// including those that did not answer an attempt, whose SET may still have
// landed — without waiting: the writers send it detached from the caller.
// q.timeout bounds only the masters that cannot hold the key; where it is
// needed (q.keepMask) it is sent however long it waited in the queue, and a
// master that misses it keeps it (kept.go).
func (g *group) releaseDetached(q request) {
	f := g.getFan() // nobody reads its answers: the last one returns it to the pool
	f.start(g, q, time.Now().Add(q.timeout), false)
	f.unref()
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
		if sl.reply.mayBeApplied() {
			m |= 1 << i
		}
	}
	return m
}

// mayHaveApplied tells whether the command may have been applied by at
// least one master: one said yes, or its answer is unknown (see mayHold).
func (r *result) mayHaveApplied() bool {
	for _, sl := range r.slots {
		if sl.reply.mayBeApplied() {
			return true
		}
	}
	return false
}

// mayBeApplied tells whether the master may have applied the command: it
// said yes, or its answer is unknown (not awaited, timed out, the caller's
// ctx ended, connection lost after sending). The one "may have landed" test
// for SETs (mayHold) and PEXPIREs (Extend).
func (rp reply) mayBeApplied() bool {
	return rp.ok || !rp.done || (rp.err != nil && mayHaveLanded(rp.err))
}

// mayHaveLanded tells whether a command that failed with err may still have
// been applied by the master.
func mayHaveLanded(err error) bool {
	for _, notSent := range []error{errNodeDown, errQueueFull, errExpired, ErrClosed} {
		if errors.Is(err, notSent) {
			return false
		}
	}
	var qe *QuarantineError
	if errors.As(err, &qe) {
		return false // refused before sending
	}
	return !isServerError(err)
}

func hasBit(mask uint64, i int) bool { return i >= 64 || mask&(1<<i) != 0 }

// quorumError describes r for the caller.
func (g *group) quorumError(op opKind, resource string, r result) *QuorumError {
	return g.quorumErrorNeed(op, resource, r, g.quorum)
}

// quorumErrorNeed is quorumError for an operation that needed need votes.
func (g *group) quorumErrorNeed(op opKind, resource string, r result, need int) *QuorumError {
	e := &QuorumError{Op: op.String(), Resource: resource, Quorum: need, Votes: make([]Vote, len(g.nodes))}
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
