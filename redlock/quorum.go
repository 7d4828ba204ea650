package redlock

import (
	"context"
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
	replies []reply // one per master; answered[i] tells which are filled
	seen    []bool
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
func (g *group) fanout(ctx context.Context, op opKind, key, token string, ttlMs int64, hash uint64, decisive bool, timeout time.Duration) result {
	n := len(g.nodes)
	out := make(chan reply, n)
	calls := make([]call, n)
	deadline := time.Now().Add(timeout)
	for i, nd := range g.nodes {
		calls[i] = call{op: op, idx: i, key: key, token: token, ttlMs: ttlMs, deadline: deadline, out: out}
		nd.submit(&calls[i], hash)
	}
	r := result{replies: make([]reply, n), seen: make([]bool, n)}
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
				timer = time.NewTimer(time.Until(deadline))
				defer timer.Stop()
				timerC = timer.C
			}
			select {
			case rp = <-out:
			case <-timerC:
				r.fillPending(g, errTimeout)
				return r
			case <-ctx.Done():
				r.fillPending(g, ctx.Err())
				return r
			}
		}
		pending--
		r.replies[rp.idx] = rp
		r.seen[rp.idx] = true
		switch {
		case rp.err != nil:
		case rp.ok:
			r.yes++
		default:
			r.no++
		}
	}
	return r
}

// fillPending marks the masters that have not answered with err.
func (r *result) fillPending(g *group, err error) {
	for i := range r.replies {
		if !r.seen[i] {
			r.replies[i] = reply{idx: i, err: g.nodes[i].wrap(err)}
		}
	}
}

// cleanup releases key on every master of the group — including those that
// did not answer, whose SET may still have landed — without waiting: the
// writers send it detached from the caller, bounded by ReleaseTimeout. A
// master that is down keeps the release and sends it when it is back.
func (g *group) cleanup(key, token string, ttlMs int64, hash uint64, timeout time.Duration) {
	n := len(g.nodes)
	out := make(chan reply, n) // nobody reads it: every answer fits, then it is garbage
	calls := make([]call, n)
	deadline := time.Now().Add(timeout)
	for i, nd := range g.nodes {
		calls[i] = call{op: opRelease, idx: i, key: key, token: token, ttlMs: ttlMs, deadline: deadline, cleanup: true, out: out}
		nd.submit(&calls[i], hash)
	}
}

// quorumError describes r for the caller.
func (g *group) quorumError(op opKind, resource string, r result) *QuorumError {
	e := &QuorumError{Op: op.String(), Resource: resource, Quorum: g.quorum, Votes: make([]Vote, len(g.nodes))}
	for i, nd := range g.nodes {
		rp := r.replies[i]
		e.Votes[i] = Vote{Addr: nd.addr.redacted, Answered: r.seen[i] || rp.err != nil, OK: rp.ok && rp.err == nil, Err: rp.err}
	}
	return e
}
