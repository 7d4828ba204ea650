package redlock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// extender renews the locks of Do/DoWith(WithAutoExtend) for a whole
// Client: one goroutine, one ticker, and at each tick the renewals due on a
// master go out together on one of its connections, as one pipeline per
// maxRenewBatch renewals — 10,000 auto-extended locks cost a few pipelines
// per master per tick, not 10,000 goroutines and round trips. It starts with
// the first auto-extended lock and stops with Close.
type extender struct {
	c *Client

	mu      sync.Mutex
	locks   map[*Lock]*renewal
	period  time.Duration // the ticker's: a quarter of the shortest renewal interval
	running bool
	kick    chan struct{} // 1-buffered: a lock was added (the period may shrink)
	sent    atomic.Int64  // renewals sent (tests)
	ticks   atomic.Int64  // ticks that sent renewals (tests)
}

// renewal is one auto-extended lock.
type renewal struct {
	ttl    time.Duration // each renewal sets the key's TTL to this
	every  time.Duration // ttl/3
	due    time.Time
	stopAt time.Time // WithMaxHold: no renewal after it (zero: none)
}

// minExtenderPeriod and maxExtenderPeriod bound the ticker's period.
const (
	minExtenderPeriod = 5 * time.Millisecond
	maxExtenderPeriod = time.Second
)

// add registers l for renewal by ttl every ttl/3, until maxHold (0: no
// limit) has passed.
func (e *extender) add(l *Lock, ttl, maxHold time.Duration) {
	now := time.Now()
	r := &renewal{ttl: ttl, every: ttl / 3, due: now.Add(ttl / 3)}
	if maxHold > 0 {
		r.stopAt = now.Add(maxHold)
	}
	l.mu.Lock()
	l.auto = true
	l.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.locks == nil {
		e.locks = make(map[*Lock]*renewal)
		e.kick = make(chan struct{}, 1)
	}
	e.locks[l] = r
	p := min(max(r.every/4, minExtenderPeriod), maxExtenderPeriod)
	if e.period == 0 || p < e.period {
		e.period = p
	}
	if !e.running {
		e.running = true
		e.c.goBackground(e.loop)
	}
	signal(e.kick)
}

// remove stops renewing l (Release). A renewal already in flight is not
// waited for here (Release waits for it).
func (e *extender) remove(l *Lock) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.locks, l)
}

func (e *extender) loop() {
	e.mu.Lock()
	period := e.period
	e.mu.Unlock()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-e.c.closing:
			return
		case <-e.kick:
			e.mu.Lock()
			if e.period != period {
				period = e.period
				t.Reset(period)
			}
			e.mu.Unlock()
			continue
		case <-t.C:
		}
		e.tick(period)
	}
}

// item is one lock renewed in a tick.
type item struct {
	l     *Lock
	r     *renewal
	slots []slot // one per master of its group; reply.done marks the answered
}

// tick renews every lock due before the next tick.
func (e *extender) tick(period time.Duration) {
	now := time.Now()
	horizon := now.Add(period)
	var items, moved []*item
	e.mu.Lock()
	for l, r := range e.locks {
		if r.due.After(horizon) {
			continue
		}
		if !r.stopAt.IsZero() && now.After(r.stopAt) {
			delete(e.locks, l) // WithMaxHold: the section ends at Until
			continue
		}
		if l.prev != nil {
			// Migration mode, a moved resource: held on two groups, it is
			// renewed by Extend (both groups, concurrently with the batch).
			switch until := l.Until(); {
			case until.IsZero():
				delete(e.locks, l)
			case now.Before(until):
				moved = append(moved, &item{l: l, r: r})
			}
			continue
		}
		if !l.tryBeginExtend() {
			if l.isReleased() {
				delete(e.locks, l)
			}
			continue // a hand Extend is in flight: it renews the lock
		}
		items = append(items, &item{l: l, r: r})
	}
	e.mu.Unlock()
	var mwg sync.WaitGroup
	for _, it := range moved {
		mwg.Add(1)
		go func() {
			defer mwg.Done()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*e.c.s.NodeTimeout)
			err := it.l.Extend(ctx, it.r.ttl)
			cancel()
			e.renewed(it, start, err)
		}()
	}
	defer mwg.Wait()
	if len(items) == 0 {
		return
	}
	e.ticks.Add(1)
	// Per master: the indexes of the items whose group it belongs to.
	type job struct {
		nd    *node
		idx   int // the master's index in its group
		items []*item
	}
	jobs := map[*node]*job{}
	var order []*job
	for _, it := range items {
		it.l.noteTTL(it.r.ttl)
		it.slots = make([]slot, len(it.l.g.nodes))
		for i, nd := range it.l.g.nodes {
			j := jobs[nd]
			if j == nil {
				j = &job{nd: nd, idx: i}
				jobs[nd] = j
				order = append(order, j)
			}
			j.items = append(j.items, it)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, j := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.renewOn(j.nd, j.idx, j.items, start)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, it := range items {
		r := result{slots: it.slots}
		for _, sl := range it.slots {
			switch {
			case !sl.reply.done || sl.reply.err != nil:
			case sl.reply.ok:
				r.yes++
			default:
				r.no++
			}
		}
		err := it.l.extended(r, result{}, start, it.r.ttl, nil)
		it.l.endExtend()
		if e.c.obs != nil { // one EventExtend per renewal, as for Extend
			tr := &trace{attempts: 1, dur: took}
			tr.record(it.l.g, &r)
			it.l.observeExtend(context.Background(), tr, err)
		}
		e.renewed(it, start, err)
	}
}

// renewed books the outcome err of it's renewal that started at start.
func (e *extender) renewed(it *item, start time.Time, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur, ok := e.locks[it.l]; ok && cur == it.r {
		if err == nil {
			it.r.due = start.Add(it.r.every)
		} // else: due stays, retried at the next tick while validity lasts
		if it.l.Until().IsZero() {
			delete(e.locks, it.l) // lost or released
		}
	}
}

// renewOn sends the extensions of items to one master as one pipeline on
// one connection and records each answer in the item's slot idx.
func (e *extender) renewOn(nd *node, idx int, items []*item, start time.Time) {
	deadline := start.Add(e.c.s.NodeTimeout)
	fail := func(err error) {
		for _, it := range items {
			it.slots[idx].reply = reply{idx: idx, done: true, err: nd.wrap(err)}
		}
	}
	if nd.c.closed.Load() {
		fail(ErrClosed)
		return
	}
	if nd.down.Load() {
		fail(nd.downErr())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.c.s.NodeTimeout+e.c.s.DialTimeout)
	res, err := nd.pool.acquire(ctx)
	cancel()
	if err != nil {
		nd.fail(err)
		fail(err)
		return
	}
	out := make(chan reply, len(items))
	// One pipeline per maxRenewBatch renewals, one after the other on
	// this connection: each must answer within NodeTimeout, so a pipeline
	// is kept to what a master runs well within it. A lock released since
	// the tick began is left out (checked as each pipeline is built).
	for from := 0; from < len(items); from += maxRenewBatch {
		chunk := items[from:min(from+maxRenewBatch, len(items))]
		calls := make([]*call, 0, len(chunk))
		for k, it := range chunk {
			if it.l.isReleased() {
				out <- reply{idx: from + k, done: true, err: nd.wrap(errReleased)}
				continue
			}
			q := it.l.extendRequest(it.r.ttl) // a reader's, writer's or permit's script for those
			calls = append(calls, &call{op: q.op, idx: from + k, key: it.l.key, token: it.l.token,
				args: q.cmdArgs(), deadline: deadline, out: out})
		}
		if len(calls) == 0 {
			continue
		}
		if res == nil {
			actx, acancel := context.WithTimeout(context.Background(), e.c.s.NodeTimeout+e.c.s.DialTimeout)
			res, err = nd.pool.acquire(actx)
			acancel()
			if err == nil && nd.down.Load() {
				res.Release()
				res, err = nil, nd.downErr()
			}
			if err != nil {
				for _, cl := range calls {
					cl.fail(nd.wrap(err))
				}
				continue
			}
		}
		e.sent.Add(int64(len(calls)))
		nd.run(res, calls) // answers every call, in order; gives res back
		res = nil
	}
	if res != nil {
		res.Release() // every lock was released meanwhile: nothing sent
	}
	for range items {
		rp := <-out
		k := rp.idx
		rp.idx = idx
		items[k].slots[idx].reply = rp
	}
}

var errReleased = errors.New("released: not renewed")

// maxRenewBatch bounds one renewal pipeline (see renewOn).
const maxRenewBatch = 1024

// tryBeginExtend marks an extension in flight unless one is already, or the
// lock is released or lost.
func (l *Lock) tryBeginExtend() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.extending || l.released || l.until.IsZero() || !time.Now().Before(l.until) {
		return false
	}
	l.extending = true
	return true
}

func (l *Lock) isReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released || l.until.IsZero()
}

// WithMaxHold bounds automatic extension (it implies WithAutoExtend): the
// lock is extended every ttl/3 for at most d after it was obtained; after
// that, fn's context ends at Until with cause ErrLockLost. Use it for
// sections that must never hold a resource indefinitely, whatever fn does.
// d must be positive (DoWith returns an *InputError otherwise).
func WithMaxHold(d time.Duration) DoOption {
	return func(o *doOptions) {
		o.autoExtend = true
		o.maxHold = d
		o.maxHoldSet = true
	}
}
