package redlock

import (
	"context"
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
	need       int // announcements of one release that wake the head: the masters an acquisition needs
	waiters    []*waiter
	subscribed bool           // its channel is wanted on every master of g
	heard      map[string]int // recent releases: the masters that announced each (one release is announced by every master that deleted the key)
	idleSince  time.Time      // no waiters since then: the subscription lingers (see subscriptionLinger)
}

// subscriptionLinger is how long a key's subscription outlives its last
// waiter: a client that takes a resource in turns with others does not
// resubscribe (one round trip) before every wait.
const subscriptionLinger = time.Second

// waiter is one blocking acquisition (acquireLoop) waiting for a key.
type waiter struct {
	q    *waitQueue
	wake chan struct{} // 1-buffered, shared by the acquisition's waiters: a release was announced, or it became the head
}

// enqueue appends a waiter for key, woken on wake when need masters of g
// announced one release. alone reports that nobody of this client was
// waiting for key before.
func (h *hub) enqueue(key string, g *group, need int, wake chan struct{}) (w *waiter, alone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[key]
	if q == nil {
		if h.queues == nil {
			h.queues = make(map[string]*waitQueue)
		}
		q = &waitQueue{key: key, g: g, need: need}
		h.queues[key] = q
		h.nqueue.Store(int32(len(h.queues)))
	}
	q.idleSince = time.Time{}
	q.need = max(q.need, need)
	w = &waiter{q: q, wake: wake}
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

func (h *hub) isHead(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(w.q.waiters) > 0 && w.q.waiters[0] == w
}

// subscribe makes sure the channels of qs are subscribed on every master
// of their groups, and returns once each q has q.need masters confirmed
// (so that a release from now on reaches it: a release deletes on as many
// masters as an acquisition needs), or NodeTimeout passed, or ctx ended.
func (h *hub) subscribe(ctx context.Context, qs ...*waitQueue) {
	var readies [][]<-chan struct{}
	var needs []int
	h.mu.Lock()
	for _, q := range qs {
		if q.subscribed {
			continue
		}
		q.subscribed = true
		var rs []<-chan struct{}
		for _, nd := range q.g.nodes {
			if r := h.subscriberLocked(nd).want(releasedChannelPrefix + q.key); r != nil {
				rs = append(rs, r)
			}
		}
		if len(rs) >= q.need {
			readies = append(readies, rs)
			needs = append(needs, q.need)
		}
	}
	h.mu.Unlock()
	if len(readies) == 0 {
		return
	}
	t := getTimer(h.c.s.NodeTimeout)
	defer putTimer(t)
	for i, rs := range readies {
		confirmed := 0
		for _, r := range rs {
			if confirmed >= needs[i] {
				break
			}
			select {
			case <-r:
				confirmed++
			case <-t.C:
				return
			case <-ctx.Done():
				return
			case <-h.c.closing:
				return
			}
		}
	}
}

// notify wakes the head of key's queue when as many of its group's masters
// as an acquisition needs (q.need: a majority, or a Semaphore's quorum)
// announced the release of one token — then enough of them no longer
// hold it, and an attempt can win: waking at the first announcement
// would race the release's own deletions on the other masters. (A release
// deletes on that many to succeed; the cleanup of a failed attempt, which
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
		if q.hear(token) != q.need {
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
