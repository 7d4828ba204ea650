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
	subscribed bool // its channel is wanted on every master of g
	// seq counts the announcements heard; from[i] is the seq of the last
	// one from g.nodes[i]. The head is woken when need masters announced
	// a deletion since its last attempt began (waiter.mark) — whatever the
	// tokens: a release deletes its token on need masters, and so do the
	// cleanups of split attempts between them (two competitors' keys, each
	// on a minority, cleaned up by each: no token is announced by need
	// masters, yet the key is free).
	seq       uint64
	from      []uint64
	ignore    map[string]struct{} // tokens of this client's releases that must not wake its next waiter (see releasing)
	idleSince time.Time           // no waiters since then: the subscription lingers (see subscriptionLinger)
}

// subscriptionLinger is how long a key's subscription outlives its last
// waiter: a client that takes a resource in turns with others does not
// resubscribe (one round trip) before every wait.
const subscriptionLinger = time.Second

// waiter is one blocking acquisition (acquireLoop) waiting for a key.
type waiter struct {
	q    *waitQueue
	wake chan struct{} // 1-buffered, shared by the acquisition's waiters: a release was announced, or it became the head
	mark uint64        // q.seq when its last attempt began (or it joined): announcements after it count
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
	w = &waiter{q: q, wake: wake, mark: q.seq}
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
// A master whose subscription is not confirmed by then (slow, or its
// connection failed) wakes the key's head when it is: a release announced
// before that went unheard there.
func (h *hub) subscribe(ctx context.Context, qs ...*waitQueue) {
	var readies [][]<-chan struct{}
	var needs []int
	var subs []*subscriber
	var chans []string
	defer func() {
		for i, s := range subs {
			s.confirmedOrWake(chans[i])
		}
	}()
	h.mu.Lock()
	for _, q := range qs {
		if q.subscribed {
			continue
		}
		q.subscribed = true
		var rs []<-chan struct{}
		ch := releasedChannelPrefix + q.key
		for _, nd := range q.g.nodes {
			s := h.subscriberLocked(nd)
			subs, chans = append(subs, s), append(chans, ch)
			if r := s.want(ch); r != nil {
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

// notify counts master nd's announcement that it deleted token at key, and
// wakes the head of key's queue once as many of the group's masters as an
// acquisition needs (q.need: a majority, or a Semaphore's quorum) announced
// a deletion since the head's last attempt began — then enough of them
// freed what refused it, and an attempt can win: waking at the first
// announcement would race a release's own deletions on the other masters.
// The tokens need not be one: a release deletes on q.need masters, and
// split attempts' cleanups may free the key between them, each on a
// minority. token "" is a subscription renewed after a reconnect:
// announcements may have been missed, so the head is woken at once.
func (h *hub) notify(key, token string, nd *node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queues[key]
	if q == nil || len(q.waiters) == 0 {
		return
	}
	head := q.waiters[0]
	if token != "" {
		if _, ok := q.ignore[token]; ok {
			return
		}
		i := slices.Index(q.g.nodes, nd)
		if i < 0 {
			return
		}
		if q.from == nil {
			q.from = make([]uint64, len(q.g.nodes))
		}
		q.seq++
		q.from[i] = q.seq
		freed := 0
		for _, s := range q.from {
			if s > head.mark {
				freed++
			}
		}
		if freed < q.need {
			return
		}
	}
	signal(head.wake)
}

// attempting marks the start of an attempt of the acquisition waiting as
// ws: announcements before it are answered by the attempt.
func (h *hub) attempting(ws []*waiter) {
	if len(ws) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range ws {
		w.mark = w.q.seq
	}
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
		if q.ignore == nil || len(q.ignore) >= maxIgnored {
			q.ignore = make(map[string]struct{}, 4)
		}
		q.ignore[token] = struct{}{}
	}
}

// maxIgnored bounds the own releases a queue ignores: their announcements
// arrive within moments of the release.
const maxIgnored = 16

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
