package redlock

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// The one retry loop of every blocking acquisition: Lock, Await,
// RWMutex.Lock and RLock, Semaphore.Acquire and LockAll (acquireLoop).
//
// An attempt that masters refused names the keys whose release could let
// the next one in. The loop then joins those keys' wait queues (await.go),
// subscribes their release channels (notify.go) and — subscribed — asks
// the masters how long those keys may still refuse (the key's PTTL, or for
// a reader, writer or permit the server-clock expiry of what blocks it): a
// release between the refused attempt and the subscription shows there,
// one after it is announced. (Later waits, subscribed before their attempt,
// ask only if no announcement came within boundGrace.) Each wait ends at
// whichever comes first: deletions announced since the attempt by as many
// of the group's masters as an acquisition needs (a release, or the
// cleanups of split attempts, whatever their tokens); that remaining time, so that a lost announcement costs at most one
// TTL; and the retry delay (Config.RetryStrategy: a jittered
// RetryInterval; every attempt after the first is one of its MaxRetry
// retries, whatever woke it). An attempt that succeeds at once never
// subscribes: waiting costs the uncontended path nothing.

// waitKey is a key whose release may let a refused acquisition through.
type waitKey struct {
	key  string // announced on releasedChannelPrefix + key
	g    *group
	need int     // the masters an acquisition needs: a release deletes on as many
	left request // asks each master how long it may still refuse (opPTTL, or opBusyLeft)
}

// acquisition is one blocking acquisition as acquireLoop runs it.
type acquisition struct {
	op, resource string // name an error that comes before any attempt
	// try makes one attempt. When masters refused it (busy), it returns
	// the keys whose release may let the next attempt in; nil otherwise.
	try func() (busy []waitKey, err error)
	// firstErr (with firstBusy) is the outcome of a first attempt the
	// caller made itself — so that the uncontended path allocates nothing
	// for the loop; nil: the loop makes the first attempt.
	firstErr  error
	firstBusy []waitKey
	// strategy gives the delay of each wait and the number of waits
	// (Config.RetryStrategy). nil: as long as ctx allows, first come first
	// served within the client (Await): the loop queues on keys before the
	// first attempt and attempts only at the head of the queue.
	strategy RetryStrategy
	keys     []waitKey // with a nil strategy: the keys to queue on
	// vet checks the error of the last attempt, and of an attempt that met
	// a key without expiry (Lock's lastAttempt); nil: as it is.
	vet func(error) error
}

// isBusy tells an acquisition's error that masters refused (they answered
// "no": the resource is held), from one that failed for no answers.
func isBusy(err error) bool {
	var qe *QuorumError
	return errors.As(err, &qe) && qe.No() > 0
}

// acquireLoop runs a until an attempt succeeds (nil), fails otherwise than
// with ErrNotObtained, the strategy gives up, ctx ends or the client
// closes. The error of an ended wait is the last attempt's with the cause
// (ctx.Err() or ErrClosed), in one line, matching ErrNotObtained and it.
func (c *Client) acquireLoop(ctx context.Context, a acquisition) error {
	ls := listeners{c: c, wake: make(chan struct{}, 1)}
	defer ls.leave()
	var timer *time.Timer // made at the first timed wait
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm := func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
			return
		}
		timer.Stop()
		timer.Reset(d)
	}
	first := a.firstErr != nil
	last := a.firstErr
	ended := func(cause error) error {
		if last != nil {
			return withCause(last, cause)
		}
		return &opError{op: a.op, resource: a.resource, sentinel: ErrNotObtained, cause: cause}
	}
	const untimed = -1
	wait, timed := false, time.Duration(untimed) // wait before the next attempt: always but before the first
	if a.strategy == nil {
		alone := ls.add(a.keys)
		if d := c.hub.yielding(a.keys[0].key); !alone || d > 0 {
			// Others of this client wait already: queue up behind them.
			// Or this client just released it while others waited: let
			// them go first.
			ls.subscribe(ctx)
			wait, timed = true, untimed
			if alone {
				timed = d
			}
			first = false // the caller's attempt is stale: attempt again after the wait
		}
	}
	retry := 0
	var bound chan busyAnswer // the masters' answer for the current wait, while it is asked
	var desync time.Duration  // added to it after a split vote
	stopAsking := func() {}
	defer func() { stopAsking() }()
	for {
		if wait {
			end := time.Now().Add(timed)
			var tick <-chan time.Time
			if timed >= 0 {
				arm(timed)
				tick = timer.C
			}
			wake := ls.wake
			for wait {
				select {
				case <-wake:
					if desync > 0 && (timed < 0 || desync < time.Until(end)) {
						// After a split vote: the competitors' cleanups wake
						// them all at once; they desynchronize first.
						arm(desync)
						tick, wake = timer.C, nil
						timed, end = desync, time.Now().Add(desync)
						desync = 0
						continue
					}
					wait = false
				case <-tick:
					wait = false
				case b := <-bound:
					bound = nil
					if b.persistent && a.vet != nil {
						if e := a.vet(last); e != last { //nolint:errorlint // identity: did vet replace it?
							return e // e.g. a key of another type: not a lock to wait for
						}
					}
					d := b.d + desync
					if at := time.Now().Add(d); timed < 0 || at.Before(end) {
						arm(d)
						tick = timer.C
						timed, end = d, at
					}
				case <-ctx.Done():
					return ended(ctx.Err())
				case <-c.closing:
					return ended(ErrClosed)
				}
			}
			if timer != nil {
				timer.Stop()
			}
			bound = nil
			stopAsking() // woken before the answer came: it is not needed
		}
		if a.strategy == nil && !ls.head() {
			wait, timed = true, untimed
			continue
		}
		select { // announcements that arrived before this attempt are answered by it
		case <-ls.wake:
		default:
		}
		c.hub.attempting(ls.ws)
		var busy []waitKey
		var err error
		if first {
			busy, err, first = a.firstBusy, a.firstErr, false
		} else {
			busy, err = a.try()
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotObtained) {
			return err
		}
		last = err
		if cerr := ctx.Err(); cerr != nil {
			// The attempt ended with ctx (it may not say so: a quorum
			// already out of reach returns before ctx is checked).
			if errors.Is(err, cerr) {
				return err
			}
			return ended(cerr)
		}
		if c.closed.Load() {
			return ended(ErrClosed)
		}
		retry++
		timed = untimed // Await: until woken, or until the masters' bound
		if len(busy) == 0 {
			timed = jitter(c.s.RetryInterval) // no master answered "no": nothing to be woken by
		}
		if a.strategy != nil {
			delay, ok := a.strategy.Backoff(retry)
			if !ok {
				return a.vetted(err)
			}
			timed = delay
		}
		wait = true
		if len(busy) == 0 {
			continue
		}
		// Subscribe (once per key); then the wait begins, and the masters
		// are asked meanwhile how long the keys may still block: a release
		// between the attempt and the subscription shows in their answer
		// (the wait then ends at once), one from now on is announced. Once
		// subscribed before the attempt, the answer only bounds a lost
		// announcement: it is asked after boundGrace, and not at all when
		// the release comes first (a handoff sends nothing more).
		ls.add(busy)
		after := boundGrace
		if ls.subscribe(ctx) {
			after = 0
		}
		desync = 0
		if qe := (*QuorumError)(nil); errors.As(err, &qe) && qe.Yes() > 0 {
			// A split vote: nobody may hold it now (the competitors'
			// cleanups are announced, maybe none by enough masters to wake
			// it: the masters are asked at once), and competitors woken by
			// the same announcements desynchronize before the next round.
			desync, after = rand.N(5*time.Millisecond), 0
		}
		if ls.head() {
			// Only the head of this client's queues asks: the others
			// are woken when they become the head (and ask then), so
			// 10,000 callers on one resource cost one question per
			// wait, not 10,000 (nor as many goroutines).
			bound, stopAsking = c.askBusy(ctx, busy, after)
		}
	}
}

// boundGrace is how long a waiter subscribed before its attempt waits for
// an announcement before it asks the masters how long the keys may still
// block (see acquireLoop).
const boundGrace = 10 * time.Millisecond

// busyAnswer is the masters' answer to busyFor.
type busyAnswer struct {
	d          time.Duration
	persistent bool
}

// askBusy asks busyFor in the background after a pause of after (Close
// waits for it); the answer comes on the channel returned, unless stop (or
// ctx, or Close) ends the question first.
func (c *Client) askBusy(ctx context.Context, keys []waitKey, after time.Duration) (answer chan busyAnswer, stop func()) {
	out := make(chan busyAnswer, 1)
	qctx, cancel := context.WithCancel(ctx)
	c.goBackground(func() {
		defer cancel()
		if after > 0 {
			t := getTimer(after)
			defer putTimer(t)
			select {
			case <-t.C:
			case <-qctx.Done():
				return
			case <-c.closing:
				return
			}
		}
		d, p := c.busyFor(qctx, keys)
		out <- busyAnswer{d, p}
	})
	return out, cancel
}

func (a *acquisition) vetted(err error) error {
	if a.vet == nil {
		return err
	}
	return a.vet(err)
}

// listeners are one acquisition's waiters: one per key it waits for, all
// woken on one channel.
type listeners struct {
	c     *Client
	wake  chan struct{}
	ws    []*waiter
	keys  map[string]struct{} // the keys joined
	fresh []*waitQueue        // queues joined and not subscribed yet
}

// add joins the queues of the keys not joined yet; alone reports that
// nobody of this client waited for any of them.
func (ls *listeners) add(keys []waitKey) (alone bool) {
	alone = true
	for _, k := range keys {
		if _, ok := ls.keys[k.key]; ok {
			continue
		}
		if ls.keys == nil {
			ls.keys = make(map[string]struct{}, len(keys))
		}
		w, first := ls.c.hub.enqueue(k.key, k.g, k.need, ls.wake)
		ls.ws = append(ls.ws, w)
		ls.keys[k.key] = struct{}{}
		ls.fresh = append(ls.fresh, w.q)
		alone = alone && first
	}
	return alone
}

// subscribe subscribes the queues joined since the last call, and reports
// whether there were any.
func (ls *listeners) subscribe(ctx context.Context) bool {
	if len(ls.fresh) == 0 {
		return false
	}
	ls.c.hub.subscribe(ctx, ls.fresh...)
	ls.fresh = ls.fresh[:0]
	return true
}

// head reports whether it heads every queue it is in.
func (ls *listeners) head() bool {
	for _, w := range ls.ws {
		if !ls.c.hub.isHead(w) {
			return false
		}
	}
	return true
}

func (ls *listeners) leave() {
	for _, w := range ls.ws {
		ls.c.hub.leave(w)
	}
}

// busyFor asks the masters how long keys may still block an acquisition:
// for each key, the time until as many masters as an acquisition needs
// would grant it (the need-th smallest of their answers), and the longest
// of those over keys. When too few masters answer, or a key without
// expiry counts (persistent), it is a jittered RetryInterval.
func (c *Client) busyFor(ctx context.Context, keys []waitKey) (d time.Duration, persistent bool) {
	if len(keys) == 1 {
		return c.busyForKey(ctx, keys[0])
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			kd, kp := c.busyForKey(ctx, k)
			mu.Lock()
			d, persistent = max(d, kd), persistent || kp
			mu.Unlock()
		})
	}
	wg.Wait()
	return d, persistent
}

func (c *Client) busyForKey(ctx context.Context, k waitKey) (d time.Duration, persistent bool) {
	q := k.left
	q.need = k.need
	r := k.g.fanout(ctx, q)
	var ms []int64
	for _, sl := range r.slots {
		rp := sl.reply
		if !rp.done || rp.err != nil {
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
	if len(ms) < k.need {
		return jitter(c.s.RetryInterval), persistent
	}
	slices.Sort(ms)
	if q := ms[k.need-1]; q < 1<<62 {
		return time.Duration(q)*time.Millisecond + time.Millisecond, persistent
	}
	return jitter(c.s.RetryInterval), true
}

// plainAcquisition is Lock's and Await's: attempts of resource for ttl,
// each stored in *out, woken by the release of its key; firstErr is the
// first attempt's error if the caller made it (nil: none made).
func (c *Client) plainAcquisition(ctx context.Context, resource string, ttl time.Duration, tr *trace, out **Lock, firstErr error) acquisition {
	g, h := c.route(resource)
	key := c.s.KeyPrefix + resource
	keys := []waitKey{{key: key, g: g, need: g.quorum, left: request{op: opPTTL, key: key, hash: h, timeout: c.s.NodeTimeout}}}
	busyOf := func(err error) []waitKey {
		if isBusy(err) {
			return keys
		}
		return nil
	}
	return acquisition{op: opAcquire.String(), resource: resource, keys: keys, firstErr: firstErr, firstBusy: busyOf(firstErr),
		try: func() ([]waitKey, error) {
			l, err := c.attempt(ctx, resource, ttl, tr)
			*out = l
			return busyOf(err), err
		},
		vet: func(err error) error { return c.lastAttempt(ctx, resource, err) },
	}
}

// Await acquires resource for ttl, waiting as long as ctx allows: it is woken
// by the release of the current holder (announced by the masters over
// pub/sub), not by polling. When ctx ends first, the error matches both
// ErrNotObtained and ctx.Err() (errors.Is; the one-line form of
// errors.Join(ErrNotObtained, ctx.Err())) and no key is left behind.
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
// for. Lock's retries are woken by the same announcements (one loop serves
// both).
func (c *Client) Await(ctx context.Context, resource string, ttl time.Duration) (*Lock, error) {
	if c.obs == nil {
		return c.awaitTraced(ctx, resource, ttl, nil)
	}
	return c.observeAcquire(ctx, resource, ttl, c.awaitTraced)
}

// awaitTraced is Await, recording its attempts in tr (nil without an
// Observer).
func (c *Client) awaitTraced(ctx context.Context, resource string, ttl time.Duration, tr *trace) (*Lock, error) {
	if err := c.precheck(ctx, resource, ttl); err != nil {
		return nil, err
	}
	if err := c.refuseMoving("await", resource); err != nil {
		return nil, err
	}
	var first error
	if c.hub.nqueue.Load() == 0 && c.hub.nyield.Load() == 0 {
		// Nobody of this client waits or yields: the first attempt needs
		// no queue (an uncontended Await costs what a Lock does).
		l, err := c.attempt(ctx, resource, ttl, tr)
		if err == nil {
			return l, nil
		}
		first = err
	}
	return c.await(ctx, resource, ttl, tr, first)
}

// await is Await after a first attempt that failed with first (nil: none
// made).
func (c *Client) await(ctx context.Context, resource string, ttl time.Duration, tr *trace, first error) (*Lock, error) {
	var l *Lock
	if err := c.acquireLoop(ctx, c.plainAcquisition(ctx, resource, ttl, tr, &l, first)); err != nil {
		return nil, err
	}
	return l, nil
}
