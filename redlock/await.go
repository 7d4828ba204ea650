package redlock

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// hub holds a client's waiters: one first-come-first-served queue per key,
// and the subscription connections (notify.go) that wake them.
type hub struct {
	c *Client

	mu     sync.Mutex
	queues map[string]*waitQueue // by key
	subs   map[*node]*subscriber
	sweep  bool                 // the sweeper of lingering subscriptions runs
	yields map[string]time.Time // keys released while another client waited (see yielding)
	nyield atomic.Int32         // len(yields): the uncontended path reads only this
	nqueue atomic.Int32         // len(queues): Release reads only this when nobody waits
}

// waitQueue is the waiters of one client for one key, first come first
// served: only the head competes when a release is announced.
type waitQueue struct {
	key        string
	g          *group
	waiters    []*waiter
	subscribed bool           // its channel is wanted on every master of g
	heard      map[string]int // recent releases: the masters that announced each (one release is announced by every master that deleted the key)
	idleSince  time.Time      // no waiters since then: the subscription lingers (see subscriptionLinger)
}

// subscriptionLinger is how long a key's subscription outlives its last
// waiter: a client that takes a resource in turns with others does not
// resubscribe (one round trip) before every wait.
const subscriptionLinger = time.Second

// waiter is one Await or Lock call waiting for a key.
type waiter struct {
	q    *waitQueue
	wake chan struct{} // 1-buffered: a release was announced, or it became the head
}

// enqueue appends a waiter for key. alone reports that nobody of this
// client was waiting for key before.
func (h *hub) enqueue(key string, g *group) (w *waiter, alone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[key]
	if q == nil {
		if h.queues == nil {
			h.queues = make(map[string]*waitQueue)
		}
		q = &waitQueue{key: key, g: g}
		h.queues[key] = q
		h.nqueue.Store(int32(len(h.queues)))
	}
	q.idleSince = time.Time{}
	w = &waiter{q: q, wake: make(chan struct{}, 1)}
	q.waiters = append(q.waiters, w)
	return w, len(q.waiters) == 1
}

// leave removes w from its queue; the next waiter, if w was the head, is
// woken to compete. The last waiter of a key unsubscribes its channel.
func (h *hub) leave(w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := w.q
	i := slices.Index(q.waiters, w)
	if i < 0 {
		return
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if len(q.waiters) > 0 {
		if i == 0 {
			signal(q.waiters[0].wake)
		}
		return
	}
	if !q.subscribed {
		delete(h.queues, q.key)
		h.nqueue.Store(int32(len(h.queues)))
		return
	}
	q.idleSince = time.Now()
	if !h.sweep {
		h.sweep = true
		h.c.goBackground(h.sweeper)
	}
}

// dropLocked removes an idle queue and unsubscribes its channel. h.mu held.
func (h *hub) dropLocked(q *waitQueue) {
	delete(h.queues, q.key)
	h.nqueue.Store(int32(len(h.queues)))
	if q.subscribed {
		for _, nd := range q.g.nodes {
			if s := h.subs[nd]; s != nil {
				s.unwant(releasedChannelPrefix + q.key)
			}
		}
	}
}

// sweeper drops the subscriptions idle for subscriptionLinger, until Close.
func (h *hub) sweeper() {
	t := time.NewTicker(subscriptionLinger / 2)
	defer t.Stop()
	for {
		select {
		case <-h.c.closing:
			return
		case <-t.C:
		}
		h.mu.Lock()
		now := time.Now()
		for _, q := range h.queues {
			if len(q.waiters) == 0 && now.Sub(q.idleSince) >= subscriptionLinger {
				h.dropLocked(q)
			}
		}
		h.mu.Unlock()
	}
}

func (h *hub) subscribed(q *waitQueue) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return q.subscribed
}

func (h *hub) isHead(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(w.q.waiters) > 0 && w.q.waiters[0] == w
}

// subscribe makes sure q's channel is subscribed on every master of its
// group. With wait, it returns once a quorum of masters confirmed (so that
// a release from now on reaches the queue: any release deletes on a quorum,
// and two quorums intersect), or NodeTimeout passed, or ctx ended.
func (h *hub) subscribe(ctx context.Context, q *waitQueue, wait bool) {
	h.mu.Lock()
	if q.subscribed {
		h.mu.Unlock()
		return
	}
	q.subscribed = true
	var readies []<-chan struct{}
	for _, nd := range q.g.nodes {
		if r := h.subscriberLocked(nd).want(releasedChannelPrefix + q.key); r != nil {
			readies = append(readies, r)
		}
	}
	h.mu.Unlock()
	if !wait || len(readies) < q.g.quorum {
		return
	}
	t := getTimer(h.c.s.NodeTimeout)
	defer putTimer(t)
	confirmed := 0
	for _, r := range readies {
		select {
		case <-r:
			if confirmed++; confirmed >= q.g.quorum {
				return
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-h.c.closing:
			return
		}
	}
}

// notify wakes the head of key's queue when a quorum of its group's masters
// announced the release of one token — then a majority of them no longer
// has the key, and an attempt can win: waking at the first announcement
// would race the release's own DELs on the other masters. (A release
// deletes on a quorum to succeed; the cleanup of a failed attempt, which
// deletes only where it had landed, wakes nobody.) token "" is a
// subscription renewed after a reconnect: announcements may have been
// missed, so the head is woken at once.
func (h *hub) notify(key, token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[key]
	if q == nil || len(q.waiters) == 0 {
		return
	}
	if token != "" {
		if q.hear(token) != q.g.quorum {
			return
		}
	}
	signal(q.waiters[0].wake)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// releasing is told of this client's own release of token, before it is
// sent: when no waiter of this client is queued for the key, its
// announcements must not wake the client's next waiter (one that comes
// after the release, and is meant to let the other clients' waiters go
// first).
func (h *hub) releasing(key, token string) {
	if h.nqueue.Load() == 0 {
		return // nobody of this client waits or listens: nothing to ignore
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Only while no waiter of this client is queued: waiters already
	// queued (same-client handoff) must hear it.
	if q := h.queues[key]; q != nil && len(q.waiters) == 0 {
		q.hear(token)
		q.heard[token] = -len(q.g.nodes) // never reaches the quorum
	}
}

// maxHeard bounds the releases a queue counts announcements for: copies of
// one release arrive within moments of each other, interleaved with at most
// a few others (cleanups of failed attempts).
const maxHeard = 16

// hear counts one announcement of token and returns the count. h.mu held.
func (q *waitQueue) hear(token string) int {
	if q.heard == nil || len(q.heard) >= maxHeard {
		if _, ok := q.heard[token]; !ok {
			q.heard = make(map[string]int, 4)
		}
	}
	q.heard[token]++
	return q.heard[token]
}

// close ends every subscription connection (Client.Close, after closing).
func (h *hub) close() {
	h.mu.Lock()
	subs := make([]*subscriber, 0, len(h.subs))
	for _, s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.close()
	}
}

// yieldWindow is how long a client whose release reached another client's
// waiters lets them compete before it tries the key again itself.
func (c *Client) yieldWindow() time.Duration { return max(c.s.NodeTimeout/4, 2*time.Millisecond) }

// released records a release of key whose announcement reached subscribers
// of other clients (others waiting): for yieldWindow, a new Await of this
// client for key subscribes and waits for its turn instead of competing at
// once — otherwise a client that releases and locks again in a loop would
// always beat the others, who only hear of the release one hop later.
func (h *hub) released(key string, r result) {
	var reached int64
	for _, sl := range r.slots {
		if sl.reply.ok {
			reached = max(reached, sl.reply.val)
		}
	}
	if reached == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.queues[key]; q != nil && q.subscribed {
		reached-- // our own subscription
	}
	if reached <= 0 {
		return
	}
	if h.yields == nil {
		h.yields = make(map[string]time.Time)
	}
	now := time.Now()
	for k, until := range h.yields { // tiny: only keys released in the last few ms
		if now.After(until) {
			delete(h.yields, k)
		}
	}
	h.yields[key] = now.Add(h.c.yieldWindow())
	h.nyield.Store(int32(len(h.yields)))
}

// yielding returns how long this client still lets others take key.
func (h *hub) yielding(key string) time.Duration {
	if h.nyield.Load() == 0 {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.yields[key]
	if !ok {
		return 0
	}
	if d := time.Until(until); d > 0 {
		return d
	}
	delete(h.yields, key)
	h.nyield.Store(int32(len(h.yields)))
	return 0
}

// Await acquires resource for ttl, waiting as long as ctx allows: it is woken
// by the release of the current holder (announced by the masters over
// pub/sub), not by polling. When ctx ends first, the error is
// errors.Join(ErrNotObtained, ctx.Err()) and no key is left behind.
//
// Waiters of one Client for one resource are served first come, first
// served: only the longest-waiting one competes when a release is
// announced. Across clients each release is a fresh race between the heads
// of their queues, and a client that just released the resource while
// others waited lets them go first, so no client starves another.
//
// Every wait is bounded by the key's remaining PTTL on the masters (a
// holder that crashed, or an announcement lost with a subscription
// connection, costs at most that); waits fall back to these timers while a
// master's subscription connection is being re-established. A key of
// another type at the resource's key is reported as an error, not waited
// for. Lock's retries are woken by the same announcements.
func (c *Client) Await(ctx context.Context, resource string, ttl time.Duration) (*Lock, error) {
	if err := c.precheck(ctx, resource, ttl); err != nil {
		return nil, err
	}
	if err := c.refuseMoving("await", resource); err != nil {
		return nil, err
	}
	g, h := c.route(resource)
	key := c.s.KeyPrefix + resource
	w, alone := c.hub.enqueue(key, g)
	defer c.hub.leave(w)
	var wait <-chan time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	switch d := c.hub.yielding(key); {
	case !alone:
		// Others of this client wait already: queue up behind them.
		c.hub.subscribe(ctx, w.q, true)
	case d > 0:
		c.hub.subscribe(ctx, w.q, true)
		timer.Reset(d)
		wait = timer.C
	}
	for {
		if wait != nil || !c.hub.isHead(w) {
			select {
			case <-w.wake:
			case <-wait:
			case <-ctx.Done():
				return nil, errors.Join(ErrNotObtained, ctx.Err())
			case <-c.closing:
				return nil, errors.Join(ErrNotObtained, ErrClosed)
			}
			timer.Stop()
			wait = nil
			continue
		}
		select { // announcements that arrived before this attempt are answered by it
		case <-w.wake:
		default:
		}
		// Subscribed already: ask how long the key lives together with the
		// attempt (the writers send both in one pipeline), so a busy
		// attempt costs one round trip before the wait, not two.
		var busy chan busyAnswer
		if c.hub.subscribed(w.q) {
			busy = make(chan busyAnswer, 1)
			go func() {
				d, p := c.busyFor(ctx, g, key, h)
				busy <- busyAnswer{d, p}
			}()
		}
		l, err := c.attempt(ctx, resource, ttl, nil)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrNotObtained) || ctx.Err() != nil {
			return nil, err
		}
		if c.closed.Load() {
			return nil, errors.Join(ErrNotObtained, ErrClosed)
		}
		if busy == nil {
			// Subscribe, then try again at once: a release between the
			// failed attempt and the subscription is not missed.
			c.hub.subscribe(ctx, w.q, true)
			continue
		}
		b := <-busy
		d, persistent := b.d, b.persistent
		var qe *QuorumError
		if errors.As(err, &qe) && qe.Yes() > 0 {
			// A split vote: competitors woken by the same announcement
			// desynchronize before the next round.
			sleepCtx(ctx, c.closing, rand.N(5*time.Millisecond))
			d, persistent = c.busyFor(ctx, g, key, h)
		}
		if persistent {
			if e := c.lastAttempt(ctx, resource, err); e != err { //nolint:errorlint // identity: did lastAttempt replace err?
				return nil, e // a key of another type: not a lock to wait for
			}
		}
		timer.Reset(d)
		wait = timer.C
	}
}

type busyAnswer struct {
	d          time.Duration
	persistent bool
}

// busyFor asks the group how long key may still block an acquisition: the
// time until a quorum of masters have no key (the quorum-th smallest PTTL
// among the masters that answered). When fewer than a quorum answer, or a
// key without expiry counts, it is a jittered RetryInterval (persistent
// reports the latter).
func (c *Client) busyFor(ctx context.Context, g *group, key string, hash uint64) (d time.Duration, persistent bool) {
	r := g.fanout(ctx, request{op: opPTTL, key: key, hash: hash, timeout: c.s.NodeTimeout})
	var ms []int64
	for _, sl := range r.slots {
		rp := sl.reply
		if !rp.ok || rp.err != nil {
			continue
		}
		switch {
		case rp.val == -1:
			persistent = true
			ms = append(ms, 1<<62)
		case rp.val < 0:
			ms = append(ms, 0)
		default:
			ms = append(ms, rp.val)
		}
	}
	if len(ms) < g.quorum {
		return jitter(c.s.RetryInterval), persistent
	}
	slices.Sort(ms)
	q := ms[g.quorum-1]
	if q >= 1<<62 {
		return jitter(c.s.RetryInterval), true
	}
	return time.Duration(q)*time.Millisecond + time.Millisecond, persistent
}

func sleepCtx(ctx context.Context, closing <-chan struct{}, d time.Duration) {
	if d <= 0 {
		return
	}
	t := getTimer(d)
	defer putTimer(t)
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-closing:
	}
}
