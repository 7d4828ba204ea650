package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxLockAll is the most resources one LockAll accepts.
const MaxLockAll = 1024

// MultiLock is a lock on several resources at once (LockAll), possibly
// spread over several quorum groups. Its methods are safe for concurrent
// use.
type MultiLock struct {
	c         *Client
	resources []string // sorted, distinct
	token     string   // one token: the value of every key
	parts     []*multiPart

	// extending holds one token while an Extend is in flight: Extends run
	// one at a time (Until follows the last one applied), and one waiting
	// for another gives up when its ctx ends.
	extending chan struct{}

	mu       sync.Mutex
	until    time.Time     // the earliest part's; zero once released or known lost
	keyTTL   time.Duration // the longest TTL ever sent for the keys (see Lock.keyTTL)
	released bool
	done     chan struct{} // closed when known lost (see Done)
	doneOnce sync.Once
	// doneTimer (created by the first Done or DoAll) fires at Until to
	// close done when the validity ran out; onLost is DoAll's: it cancels
	// fn's context with the cause, when the lock is lost or released.
	doneTimer *time.Timer
	onLost    func(cause error)
	// gone is the error of the Extend that found a part gone (nil
	// otherwise): DoAll's context ends with it, as Do's does (lostCause),
	// not with a bare ErrLockLost that no longer says which part.
	gone error
}

// setUntilLocked changes Until and follows it: Done and DoAll's context.
// m.mu held.
func (m *MultiLock) setUntilLocked(u time.Time) {
	m.until = u
	m.armDone()
}

// armDone closes done when the MultiLock is known lost (Until zero or
// passed, not by Release), or sets its timer to look again at Until; it
// ends DoAll's context (onLost) on loss or release. It runs at every change
// of Until and when the timer fires. m.mu held.
func (m *MultiLock) armDone() {
	if m.doneTimer == nil && m.onLost == nil {
		return // nobody follows Until: Done was never asked for
	}
	left := time.Until(m.until)
	switch {
	case m.released:
		if m.onLost != nil {
			m.onLost(releasedInFn(setName(m.resources)))
		}
	case m.until.IsZero() || left <= 0:
		m.lost()
		if m.onLost != nil {
			cause := ErrLockLost
			if m.gone != nil {
				cause = &lostError{err: m.gone} // matches ErrLockLost and ErrNotHeld
			}
			m.onLost(cause)
		}
	default:
		if m.doneTimer == nil {
			m.doneTimer = time.AfterFunc(left, m.doneCheck)
		} else {
			m.doneTimer.Reset(left)
		}
		return
	}
	m.onLost = nil
	if m.doneTimer != nil {
		m.doneTimer.Stop()
	}
}

func (m *MultiLock) doneCheck() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armDone()
}

// notifyLost makes fn run (with m.mu held; once) when the MultiLock is
// known lost or released, with the cause for DoAll's context; nil stops it.
func (m *MultiLock) notifyLost(fn func(cause error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onLost = fn
	if fn != nil {
		m.armDone()
	}
}

// multiPart is the resources of a MultiLock routed to one group: one
// several-key command per master acquires, extends or releases them all.
type multiPart struct {
	g         *group
	hash      uint64
	keys      []string
	resources []string
	mayHold   uint64
	// Config.Fencing only: what the part's fenced acquire needs (nil
	// otherwise), and, in a held MultiLock's parts, the part's fence.
	fencing *partFence
	fence   int64
}

// partFence is what a part's fenced acquire needs besides its keys: its
// KEYS (the part's keys and the fence counters' hash) and its resources'
// counter slots (distinct). It never changes once partition made it.
type partFence struct {
	keys  []string
	slots []int
}

func (p *multiPart) name() string { return setName(p.resources) }

// LockAll acquires every resource for ttl, all or nothing: either it returns
// a MultiLock holding all of them, or nothing stays locked on any master.
//
// The resources may be listed in any order and spread over any groups: they
// are taken as one set (sorted; a resource listed twice is an input error).
// Each group's share is acquired by one script per master that sets all its
// keys or none, all groups in parallel, in one round trip; a LockAll that
// misses any part releases every part before it retries. It never holds
// some resources while waiting for others, so two LockAll calls cannot
// deadlock whatever the order of their lists.
//
// Mutual exclusion does not depend on the per-master all-or-none: every key
// is its own Redlock (held only where a majority of its group has it), and a
// failed attempt releases all. The all-or-none script is for liveness: a
// master never keeps a partial set that would block other callers of the
// free keys until the cleanup arrives, two LockAll calls for overlapping sets
// cannot each take half a master, and a master's vote is one yes or no for
// its whole share. It retries as Lock does (Config.RetryStrategy; one
// loop serves both, wait.go): after a refused attempt, which holds
// nothing, the next one happens when a resource of a refused part is
// released (announced by its masters) or expires there, at the latest
// after the retry delay. ctx bounds everything: when it ends, the error
// matches ErrNotObtained and ctx.Err(), in one line.
//
// With Config.Fencing, every resource gets a fence (MultiLock.Fence) with
// the guarantee of Lock.Fence. A master in restart quarantine
// (Config.RestartQuarantine) votes no on LockAll as on Lock.
func (c *Client) LockAll(ctx context.Context, resources []string, ttl time.Duration) (*MultiLock, error) {
	return c.lockAll(ctx, resources, ttl, false)
}

func (c *Client) lockAll(ctx context.Context, resources []string, ttl time.Duration, try bool) (*MultiLock, error) {
	set, bad := c.checkResources(resources, ttl)
	if bad != nil {
		return nil, bad
	}
	if err := c.refuseMoving("lockall", set...); err != nil {
		return nil, err
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	name := setName(set)
	if err := ctx.Err(); err != nil {
		return nil, &opError{op: opMultiAcquire.String(), resource: name, sentinel: ErrNotObtained, cause: err}
	}
	parts := c.partition(set)
	m, busy, err := c.attemptAll(ctx, set, parts, ttl)
	if err == nil || try {
		return m, err
	}
	return c.waitAll(ctx, set, parts, ttl, busy, err)
}

// waitAll is lockAll after a first attempt that failed with err (busy on
// the keys busy): the one retry loop of blocking acquisitions (wait.go).
func (c *Client) waitAll(ctx context.Context, set []string, parts []*multiPart, ttl time.Duration, busy []waitKey, err error) (*MultiLock, error) {
	var m *MultiLock
	err = c.acquireLoop(ctx, acquisition{op: opMultiAcquire.String(), resource: setName(set), strategy: c.s.RetryStrategy,
		firstErr: err, firstBusy: busy,
		try: func() (busy []waitKey, err error) {
			m, busy, err = c.attemptAll(ctx, set, parts, ttl)
			return busy, err
		}})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// setName names a set of resources in an error: the first, and how many
// more.
func setName(set []string) string {
	if len(set) == 1 {
		return set[0]
	}
	return fmt.Sprintf("%s (+%d more)", set[0], len(set)-1)
}

// checkResources validates LockAll's arguments and returns the resources
// sorted.
func (c *Client) checkResources(resources []string, ttl time.Duration) ([]string, error) {
	if len(resources) == 0 {
		return nil, &InputError{Arg: "resources", Reason: "empty"}
	}
	if len(resources) > MaxLockAll {
		return nil, &InputError{Arg: "resources", Reason: fmt.Sprintf("%d resources, more than MaxLockAll (%d)", len(resources), MaxLockAll)}
	}
	set := slices.Clone(resources)
	slices.Sort(set)
	for i, r := range set {
		if err := c.checkArgs(r, ttl); err != nil {
			return nil, err
		}
		if i > 0 && set[i-1] == r {
			return nil, &InputError{Arg: "resources", Reason: fmt.Sprintf("%q is listed twice", truncate(r, 200))}
		}
	}
	return set, nil
}

// partition groups the sorted resources by the group they are routed to.
func (c *Client) partition(set []string) []*multiPart {
	byGroup := make(map[int]*multiPart)
	var parts []*multiPart
	for _, r := range set {
		g, h := c.route(r)
		p := byGroup[g.index]
		if p == nil {
			p = &multiPart{g: g, hash: h}
			byGroup[g.index] = p
			parts = append(parts, p)
		}
		p.resources = append(p.resources, r)
		p.keys = append(p.keys, c.s.KeyPrefix+r)
	}
	if c.s.Fencing {
		for _, p := range parts {
			f := &partFence{keys: append(p.keys[:len(p.keys):len(p.keys)], c.fenceKey)}
			for _, r := range p.resources {
				_, h := c.route(r)
				f.slots = append(f.slots, fenceSlot(h))
			}
			slices.Sort(f.slots)
			f.slots = slices.Compact(f.slots)
			p.fencing = f
		}
	}
	return parts
}

// eachPart runs fn for every part, in parallel across groups.
func eachPart(parts []*multiPart, fn func(i int, p *multiPart)) {
	var wg sync.WaitGroup
	for i := 1; i < len(parts); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, parts[i])
		}()
	}
	fn(0, parts[0])
	wg.Wait()
}

// attemptAll is one all-or-nothing acquisition with a fresh token. When it
// fails, busy are the keys of the parts that masters refused: a release of
// one of them may let the next attempt in (the loop waits for them).
func (c *Client) attemptAll(ctx context.Context, set []string, tmpl []*multiPart, ttl time.Duration) (m *MultiLock, busy []waitKey, err error) {
	token := newToken()
	ms := ttlMillis(ttl)
	parts := make([]*multiPart, len(tmpl))
	results := make([]result, len(tmpl))
	start := time.Now()
	eachPart(tmpl, func(i int, p *multiPart) {
		q := request{op: opMultiAcquire, key: p.keys[0], keys: p.keys, token: token, ttlMs: ms,
			hash: p.hash, timeout: c.s.NodeTimeout}
		if p.fencing != nil {
			q.op, q.args = opMultiAcquireFence, newScriptArgs(opMultiAcquireFence, p.fencing.keys, token, p.fencing.argv(token, ms)...)
		}
		results[i] = p.g.fanout(ctx, q)
		cp := *p
		cp.mayHold = results[i].mayHold()
		parts[i] = &cp
	})
	until := validUntil(start, ttl, c.s.DriftFactor)
	var errs []error
	for i, p := range parts {
		if results[i].yes < p.g.quorum {
			qe := p.g.quorumError(opMultiAcquire, p.name(), results[i])
			qe.sentinel = ErrNotObtained
			errs = append(errs, qe)
			if qe.No() > 0 {
				for _, k := range p.keys {
					busy = append(busy, waitKey{key: k, g: p.g, need: p.g.quorum,
						left: request{op: opPTTL, key: k, hash: p.hash, timeout: c.s.NodeTimeout}})
				}
			}
		}
	}
	if len(errs) == 0 && time.Now().Before(until) && c.s.Fencing {
		// Each part's fence, settled as a Lock's is (in parallel).
		fenceErrs := make([]error, len(parts))
		eachPart(parts, func(i int, p *multiPart) {
			p.fence, fenceErrs[i] = c.settleFence(ctx, opMultiAcquire, p.g, nil, p.hash, p.fencing.slots, p.name(), results[i], result{})
		})
		errs = slices.DeleteFunc(fenceErrs, func(err error) bool { return err == nil })
	}
	if len(errs) == 0 && time.Now().Before(until) {
		return &MultiLock{c: c, resources: set, token: token, parts: parts, keyTTL: ttl, done: make(chan struct{}),
			extending: make(chan struct{}, 1), until: until}, nil, nil
	}
	// Not all: release every part on every master where it may have landed.
	for _, p := range parts {
		p.g.releaseDetached(request{op: opMultiRelease, key: p.keys[0], keys: p.keys, token: token, hash: p.hash,
			timeout: c.s.ReleaseTimeout, keepMask: p.mayHold, keepFor: keyLife(ttl, c.s.DriftFactor)})
	}
	// One line: "redlock: lockall "a (+2 more)": not obtained: busy (…)"
	// for one group, each group's part named after "not obtained: " for
	// several.
	msg := fmt.Sprintf("redlock: %s %q: not obtained: ", opMultiAcquire, setName(set))
	switch {
	case len(errs) == 0:
		msg += fmt.Sprintf("every part reached a quorum but the validity ran out (the attempt took %v)", time.Since(start))
	case len(parts) == 1:
		msg += errs[0].(*QuorumError).outcome() //nolint:errorlint,forcetypeassert // built just above
	default:
		for i, err := range errs {
			if i > 0 {
				msg += "; "
			}
			qe := err.(*QuorumError) //nolint:errorlint,forcetypeassert // built just above
			msg += fmt.Sprintf("%q: %s", qe.Resource, qe.outcome())
		}
	}
	if err := ctx.Err(); err != nil {
		msg += "; " + causeText(err)
		errs = append(errs, err)
	}
	return nil, busy, &lineError{msg: msg, errs: append([]error{ErrNotObtained}, errs...)}
}

// argv is the part's fenced acquire ARGV: token, ttl in ms, and its
// counter slots.
func (f *partFence) argv(token string, ms int64) []any {
	argv := make([]any, 0, 2+len(f.slots))
	argv = append(argv, token, ms)
	for _, s := range f.slots {
		argv = append(argv, fenceSlotNames[s])
	}
	return argv
}

// Fence returns the fencing token of resource, one of the MultiLock's
// resources: 0 unless Config.Fencing is set (or resource is not one of
// them); otherwise a number strictly greater than the fence of every
// acquisition of resource that completed before this LockAll started —
// by Lock, TryLock, Await, Do, an RWMutex or Semaphore of resource, or
// another LockAll — from any client or process, as Lock.Fence is. The
// resources routed to one group share one fence (one script per master
// advances all their counters to the same value); those of different
// groups have fences of their own. Extend keeps them.
func (m *MultiLock) Fence(resource string) int64 {
	for _, p := range m.parts {
		if _, ok := slices.BinarySearch(p.resources, resource); ok {
			return p.fence
		}
	}
	return 0
}

// Resources returns the locked resources, sorted.
func (m *MultiLock) Resources() []string { return slices.Clone(m.resources) }

// Token is the random token: the value of every key of the MultiLock.
func (m *MultiLock) Token() string { return m.token }

// Until is the end of the validity of the earliest of its parts. It is zero
// after Release or once the lock is known lost.
func (m *MultiLock) Until() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.until
}

// Valid reports whether the validity has not run out.
func (m *MultiLock) Valid() bool {
	u := m.Until()
	return !u.IsZero() && time.Now().Before(u)
}

// Done is closed when the MultiLock is known lost: an Extend found a part
// gone, or the validity ran out (Until passed). It is not closed by
// Release. The timer that closes it at Until is created on the first call.
func (m *MultiLock) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.doneTimer == nil && !m.released {
		m.doneTimer = time.AfterFunc(time.Hour, m.doneCheck)
		m.armDone()
	}
	return m.done
}

func (m *MultiLock) lost() { m.doneOnce.Do(func() { close(m.done) }) }

// Extend resets the TTL of every resource to ttl, in one script per master
// of each group (a master extends all of a group's keys or none). Validity
// is recomputed from the start of this call, and Until is the earliest
// part's. When a majority of some group says a key is no longer ours, it
// returns ErrNotHeld and the lock is lost. When the outcome is unknown
// somewhere, Until is never later than what this Extend may have applied.
func (m *MultiLock) Extend(ctx context.Context, ttl time.Duration) error {
	c := m.c
	for _, r := range m.resources {
		if err := c.checkArgs(r, ttl); err != nil {
			return err
		}
	}
	if c.closed.Load() {
		return ErrClosed
	}
	select {
	case m.extending <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("redlock: %s %q: not sent (another Extend was in flight): %w", opMultiExtend, setName(m.resources), ctx.Err())
	}
	defer func() { <-m.extending }()
	if !m.Valid() {
		return fmt.Errorf("%w: %d resources: validity ran out at %v", ErrNotHeld, len(m.resources), m.Until().Format(time.RFC3339Nano))
	}
	if err := ctx.Err(); err != nil {
		return err // nothing sent
	}
	m.mu.Lock()
	m.keyTTL = max(m.keyTTL, ttl)
	m.mu.Unlock()
	start := time.Now()
	results := make([]result, len(m.parts))
	eachPart(m.parts, func(i int, p *multiPart) {
		results[i] = p.g.fanout(ctx, request{op: opMultiExtend, key: p.keys[0], keys: p.keys, token: m.token,
			ttlMs: ttlMillis(ttl), hash: p.hash, timeout: c.s.NodeTimeout})
	})
	newUntil := validUntil(start, ttl, c.s.DriftFactor)
	var notHeld, failed []error
	applied := false // some master may have applied this TTL
	for i, p := range m.parts {
		r := results[i]
		applied = applied || r.mayHaveApplied()
		switch {
		case r.yes >= p.g.quorum:
		case r.no >= p.g.quorum:
			notHeld = append(notHeld, p.g.quorumError(opMultiExtend, p.name(), r))
		default:
			failed = append(failed, p.g.quorumError(opMultiExtend, p.name(), r))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.released:
		return fmt.Errorf("%w: released while extending", ErrNotHeld)
	case len(notHeld) > 0:
		err := &lineError{msg: fmt.Sprintf("redlock: %s %q: not held: %s", opMultiExtend, setName(m.resources), inLine(notHeld)),
			errs: append([]error{ErrNotHeld}, notHeld...)}
		m.gone = err // before setUntilLocked: DoAll's context ends with it
		m.setUntilLocked(time.Time{})
		m.lost()
		return err
	case len(failed) == 0 && time.Now().Before(newUntil):
		m.setUntilLocked(newUntil)
		return nil
	}
	// Some masters may have applied this TTL (shorter, perhaps): never
	// trust more than it.
	if applied && !m.until.IsZero() && newUntil.Before(m.until) {
		m.setUntilLocked(newUntil)
	}
	if len(failed) == 0 {
		return fmt.Errorf("redlock: extend %d resources: every part was extended but the extension's validity ran out (it took %v)", len(m.resources), time.Since(start))
	}
	if err := ctx.Err(); err != nil {
		failed = append(failed, err)
	}
	return &lineError{msg: fmt.Sprintf("redlock: %s %q: %s", opMultiExtend, setName(m.resources), inLine(failed)), errs: failed}
}

// Release deletes every key where it still holds the token, one script per
// master of each group, all groups in parallel. It returns nil once a
// majority of every group deleted its keys, ErrNotHeld when a majority of
// some group says a key is no longer ours, and otherwise the errors naming
// the failed masters. Masters that miss it get it when they are back. After
// Release, Until is zero whatever the outcome.
func (m *MultiLock) Release(ctx context.Context) error {
	c := m.c
	if c.closed.Load() {
		return ErrClosed
	}
	live := ctx.Err() == nil
	m.mu.Lock()
	keep := keyLife(m.keyTTL, c.s.DriftFactor) // counted from when a master that missed it answers again
	// released before setUntilLocked: a release does not close Done.
	inFn := m.onLost != nil // DoAll's fn runs: its context follows Until
	m.released = true
	m.setUntilLocked(time.Time{})
	endedFn := inFn && m.onLost == nil // this release ended fn's context
	m.mu.Unlock()
	ctx, cancel := ownReleaseCtx(ctx, live && endedFn)
	defer cancel()
	errs := make([]error, len(m.parts))
	eachPart(m.parts, func(i int, p *multiPart) {
		r := p.g.fanout(ctx, request{op: opMultiRelease, key: p.keys[0], keys: p.keys, token: m.token, hash: p.hash,
			timeout: c.s.NodeTimeout, keepMask: p.mayHold, keepFor: max(keep, 0)})
		switch qe := p.g.quorumError(opMultiRelease, p.name(), r); {
		case r.yes >= p.g.quorum:
		case r.no >= p.g.quorum:
			qe.sentinel = ErrNotHeld
			errs[i] = qe
		default:
			qe.cause = ctx.Err()
			errs[i] = qe
		}
	})
	if errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil }); len(errs) <= 1 {
		if len(errs) == 0 {
			return nil
		}
		return errs[0]
	}
	return &lineError{msg: fmt.Sprintf("redlock: %s %q: %s", opMultiRelease, setName(m.resources), inLine(errs)), errs: errs}
}

// String names the resources (for logs).
func (m *MultiLock) String() string {
	return "redlock.MultiLock{" + strings.Join(m.resources, ", ") + "}"
}

// DoAll acquires every resource (as LockAll does), runs fn, and releases
// them whatever happens: on return, on error and on panic (which then
// propagates). fn's context is cancelled, with cause ErrLockLost, when the
// MultiLock's validity runs out or an extension finds a part gone.
// WithAutoExtend extends all of them every ttl/3; WithTryOnce makes a
// single attempt. DoAll returns fn's error, or, when fn succeeded but the
// release found a part no longer held, that error (a MultiLock fn released
// itself is not released again). fn does not run when the resources are not
// obtained. MultiLockFromContext(fn's ctx) is the
// MultiLock (its fences, with Config.Fencing).
func (c *Client) DoAll(ctx context.Context, resources []string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) (err error) {
	if fn == nil {
		return &InputError{Arg: "fn", Reason: "nil"}
	}
	var o doOptions
	for _, opt := range opts {
		opt(&o)
	}
	m, err := c.lockAll(ctx, resources, ttl, o.try)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancelCause(context.WithValue(ctx, multiLockCtxKey{}, m))
	// fn's context ends at Until, following every change of it, whatever
	// the extensions are doing (a timer, as Do's: done.go).
	m.notifyLost(func(cause error) { cancel(cause) })
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		m.extendEvery(lctx, ttl, o, stop, cancel)
	}()
	defer func() {
		m.notifyLost(nil)
		close(stop)
		<-watched
		cancel(nil)
		if m.releasedByCaller() {
			return // fn released it (see runLocked)
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.ReleaseTimeout)
		relErr := m.Release(rctx)
		rcancel()
		if err == nil && relErr != nil {
			err = relErr
		}
	}()
	return fn(lctx)
}

// releasedByCaller reports whether Release was called on m (by fn, in
// DoAll: see Lock.releasedByCaller).
func (m *MultiLock) releasedByCaller() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.released
}

type multiLockCtxKey struct{}

// MultiLockFromContext returns the MultiLock held around the fn that DoAll
// runs, or nil: with Config.Fencing, fn passes its Fence(resource) with
// every write to a resource.
func MultiLockFromContext(ctx context.Context) *MultiLock {
	m, _ := ctx.Value(multiLockCtxKey{}).(*MultiLock)
	return m
}

// extendEvery extends the MultiLock by ttl every ttl/3 when asked (until
// maxHold, if set), and cancels ctx when an extension finds a part gone.
// ctx is fn's: it ends at Until (notifyLost), and so does an extension in
// flight, so none runs past the validity it is meant to prolong.
func (m *MultiLock) extendEvery(ctx context.Context, ttl time.Duration, o doOptions, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	if !o.autoExtend {
		return
	}
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	var holdEnd time.Time
	if o.maxHold > 0 {
		holdEnd = time.Now().Add(o.maxHold)
	}
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if !holdEnd.IsZero() && time.Now().After(holdEnd) {
				return // WithMaxHold: no more extensions; ctx ends at Until
			}
			ectx, ecancel := context.WithTimeout(ctx, m.c.s.NodeTimeout*2)
			err := m.Extend(ectx, ttl)
			ecancel()
			if errors.Is(err, ErrNotHeld) {
				cancel(fmt.Errorf("%w: %w", ErrLockLost, err))
				return
			}
		}
	}
}
