package redlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Lock is a lock held on a quorum of one group's masters. Its methods are
// safe for concurrent use.
type Lock struct {
	c        *Client
	g        *group
	hash     uint64
	resource string
	key      string
	token    string

	mayHold uint64 // masters where the SET may have landed (see result.mayHold)
	fence   int64  // Config.Fencing: the fencing token (fencing.go); 0 otherwise
	// Migration mode, a moved resource: the group of the previous ring,
	// where the lock is held too, and its masters that may hold the key.
	prev         *group
	prevMayHold  uint64
	obtained     time.Time   // start of the acquiring attempt (for Event.Held)
	lostReported atomic.Bool // EventLost was reported

	mu    sync.Mutex
	until time.Time // monotonic; zero once released or known lost. Set only through setUntil/capUntil.
	// changed is the untilChanged broadcast: closed (and cleared) at the
	// next change of until. nil while nobody waits, so a lock nobody
	// watches allocates nothing for it.
	changed chan struct{}
	// keyTTL is the longest TTL ever sent to the masters for this key
	// (acquire or extend, whatever the outcome): from when a master applies
	// its last command, the key lives at most keyLife(keyTTL) there.
	keyTTL time.Duration
	// extending is true while an Extend of this lock is in flight: Extends
	// are serialized, so that Until always comes from the extension the
	// masters applied last. extendDone (created by the first waiter) is
	// closed when it ends.
	extending  bool
	extendDone chan struct{}
	released   bool
	lost       bool // an Extend found it gone

	// Done (done.go): created on first use, closed when the lock is known
	// lost; doneTimer fires at Until to check.
	done      chan struct{}
	doneTimer *time.Timer
	doneShut  bool
	onLost    func(cause error) // Do's: cancels fn's context
	// auto marks a lock renewed by the shared extender (extender.go).
	auto bool

	// kind is nil for a plain lock; for a reader's share, a writer's lock or
	// a semaphore permit it names the scripts, run on keys (rw.go,
	// semaphore.go), and need the "yes" votes that hold it (0: a
	// majority). extra is the release's second argument (a writer's
	// waiting mark; "" otherwise).
	kind  *lockKind
	keys  []string
	need  int
	extra string
}

// Resource is the resource the lock was acquired for.
func (l *Lock) Resource() string { return l.resource }

// Token is the lock's random token: the value of its key on the masters.
// Use it as a fencing token only together with a monotonic counter of your
// own; it is random, not ordered.
func (l *Lock) Token() string { return l.token }

// Until is the end of the lock's validity: ttl − elapsed − drift after the
// start of the attempt (or of the last successful Extend). Past it, the lock
// must be considered lost. It is zero after Release.
//
// Until is never later than any master's possible expiry of the key: an
// Extend whose PEXPIRE may have landed (answered or not) never leaves Until
// after its own start + ttl − drift, even when it fails.
func (l *Lock) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// setUntil sets until to u and wakes the untilChanged waiters if it
// changed. l.mu is held.
func (l *Lock) setUntil(u time.Time) {
	if u.Equal(l.until) {
		return
	}
	l.until = u
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.armDone()
}

// capUntil makes sure until is not later than u (a lock already lost or
// released stays so). l.mu is held.
func (l *Lock) capUntil(u time.Time) {
	if !l.until.IsZero() && u.Before(l.until) {
		l.setUntil(u)
	}
}

// noteTTL records a TTL about to be sent for the key.
func (l *Lock) noteTTL(ttl time.Duration) {
	l.mu.Lock()
	l.keyTTL = max(l.keyTTL, ttl)
	l.mu.Unlock()
}

// Valid reports whether the lock's validity has not run out.
func (l *Lock) Valid() bool {
	u := l.Until()
	return !u.IsZero() && time.Now().Before(u)
}

// TTL returns the validity left (0 once it ran out).
func (l *Lock) TTL() time.Duration {
	u := l.Until()
	if u.IsZero() {
		return 0
	}
	return max(time.Until(u), 0)
}

// Extend resets the lock's TTL to ttl on a quorum of masters, only where the
// key still holds this token (an expired key is never re-created). Validity
// is recomputed from the start of this call. Extend is refused locally with
// ErrNotHeld once Until has passed, and sends nothing when ctx has already
// ended. When a majority of masters say the token no longer holds, it
// returns ErrNotHeld; when no quorum answers either way, a *QuorumError.
// A failed Extend never lengthens the validity; it shortens it when its
// PEXPIRE may have landed somewhere (a yes, a master that did not answer in
// time, a cancelled ctx) and ttl ends sooner than the current Until: Until
// is then this call's start + ttl − drift.
//
// Extends of one lock run one at a time (a second one waits for the first,
// or for its own ctx), so Until always follows the extension the masters
// applied last.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	if l.c.obs == nil {
		return l.extend(ctx, ttl, nil)
	}
	tr := &trace{}
	err := l.extend(ctx, ttl, tr)
	l.observeExtend(ctx, tr, err)
	return err
}

// observeExtend reports an extension of l (an Extend call, or a renewal of
// the shared extender) that ended with err, and the lock's loss when the
// extension found it gone (ErrNotHeld — not an Extend refused because the
// holder released it).
func (l *Lock) observeExtend(ctx context.Context, tr *trace, err error) {
	l.c.observe(tr.lockEvent(ctx, EventExtend, l.g, l.resource, err))
	if !errors.Is(err, ErrNotHeld) {
		return
	}
	l.mu.Lock()
	givenUp := l.released && !l.lost
	l.mu.Unlock()
	if !givenUp {
		l.reportLost(ctx, err)
	}
}

// reportLost sends EventLost once per lock.
func (l *Lock) reportLost(ctx context.Context, err error) {
	if l.c.obs != nil && !l.lostReported.Swap(true) {
		l.c.observe(Event{Context: ctx, Kind: EventLost, Resource: l.resource, Group: l.g.index, Quorum: l.g.quorum,
			Held: time.Since(l.obtained), Outcome: outcomeOf(err), Err: err})
	}
}

func (l *Lock) extend(ctx context.Context, ttl time.Duration, tr *trace) error {
	c := l.c
	if err := c.checkArgs(l.resource, ttl); err != nil {
		return err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if err := l.beginExtend(ctx); err != nil {
		return err
	}
	defer l.endExtend()
	if err := l.notValid(); err != nil {
		return err
	}
	l.noteTTL(ttl)
	start := time.Now()
	q := l.extendRequest(ttl)
	r, pr := fanoutBoth(ctx, l.g, q, l.prev, q)
	if tr != nil {
		tr.attempts, tr.dur = 1, time.Since(start)
		tr.record(l.g, &r)
		if l.prev != nil {
			tr.record(l.prev, &pr)
		}
	}
	return l.extended(r, pr, start, ttl, ctx.Err())
}

// extended applies the outcome r (and pr, the previous group's, for a
// moved resource in migration mode) of an extension by ttl that started at
// start (Extend's, or the shared extender's) to Until, and returns Extend's
// error. ctxErr is the caller's context error, if any.
func (l *Lock) extended(r, pr result, start time.Time, ttl time.Duration, ctxErr error) error {
	until := validUntil(start, ttl, l.c.s.DriftFactor)
	need, noNeed := l.needs()
	// In migration mode the lock is extended only when both groups
	// extended it, and lost when either says it is gone.
	v, pv := verdictOpen, verdictYes
	switch {
	case r.yes >= need:
		v = verdictYes
	case r.no >= noNeed:
		v = verdictNo
	}
	if l.prev != nil {
		pv = l.prev.verdict(&pr)
	}
	op := opExtend
	if l.kind != nil {
		op = l.kind.extend
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.released:
		return &opError{op: op.String(), resource: l.resource, sentinel: ErrNotHeld, why: "released while extending"}
	case v == verdictYes && pv == verdictYes && time.Now().Before(until):
		l.setUntil(until)
		return nil
	case v == verdictYes && pv == verdictYes:
		// Extended, but the extension took longer than its own validity:
		// nothing more can be trusted than before it.
		l.capUntil(until)
		qe := l.g.quorumErrorNeed(op, l.resource, r, need)
		if l.prev != nil {
			qe = joinQuorumErrors(qe, l.prev.quorumError(op, l.resource, pr), "previous")
		}
		qe.ValidityRanOut, qe.Took = true, time.Since(start)
		return qe
	case v == verdictNo || pv == verdictNo:
		l.lost = true // before setUntil: Done is closed
		l.setUntil(time.Time{})
		var qe *QuorumError
		if v == verdictNo {
			qe = l.g.quorumErrorNeed(op, l.resource, r, need)
			if l.prev != nil {
				qe = joinQuorumErrors(qe, l.prev.quorumError(op, l.resource, pr), "previous")
			}
		} else {
			qe = joinQuorumErrors(l.prev.quorumError(op, l.resource, pr), l.g.quorumErrorNeed(op, l.resource, r, need), "new")
		}
		qe.sentinel = ErrNotHeld
		return qe
	}
	// Masters that said yes, or whose answer is unknown, may have applied
	// this TTL (a paused master applies it when it resumes): never trust
	// more than it.
	if r.mayHaveApplied() || (l.prev != nil && pr.mayHaveApplied()) {
		l.capUntil(until)
	}
	qe := l.g.quorumErrorNeed(op, l.resource, r, need)
	if l.prev != nil {
		if v == verdictYes { // the previous group did not extend it
			qe = joinQuorumErrors(l.prev.quorumError(op, l.resource, pr), qe, "new")
		} else {
			qe = joinQuorumErrors(qe, l.prev.quorumError(op, l.resource, pr), "previous")
		}
	}
	qe.cause = ctxErr
	return qe
}

// needs returns the "yes" votes that hold l on its group, and the "no"
// votes that make them unreachable.
func (l *Lock) needs() (yes, no int) {
	yes = l.need
	if yes == 0 {
		yes = l.g.quorum
	}
	return yes, len(l.g.nodes) - yes + 1
}

// extendRequest is l's extension to ttl: the plain lock's compare-and-pexpire,
// or its kind's script.
func (l *Lock) extendRequest(ttl time.Duration) request {
	ms := ttlMillis(ttl)
	q := request{op: opExtend, key: l.key, token: l.token, ttlMs: ms, hash: l.hash, timeout: l.c.s.NodeTimeout, need: l.need}
	if l.kind != nil {
		q.op = l.kind.extend
		q.args = newScriptArgs(q.op, l.keys, l.token, l.token, ms)
	}
	return q
}

// releaseRequest is l's release, each master bounded by timeout; masters
// of l.mayHold that miss it keep it for keep.
func (l *Lock) releaseRequest(timeout, keep time.Duration) request {
	q := request{op: opRelease, key: l.key, token: l.token, hash: l.hash, timeout: timeout,
		keepMask: l.mayHold, keepFor: max(keep, 0), need: l.need}
	if l.kind != nil {
		q.op = l.kind.release
		q.args = newScriptArgs(q.op, l.keys, l.token, l.token, l.extra)
	}
	return q
}

// beginExtend waits until no other Extend of l is in flight and marks one
// in flight. It sends nothing and returns ctx's error when ctx ends first
// (or had ended already).
func (l *Lock) beginExtend(ctx context.Context) error {
	l.mu.Lock()
	for l.extending {
		if l.extendDone == nil {
			l.extendDone = make(chan struct{})
		}
		done := l.extendDone
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("redlock: extend %q: not sent (another Extend of this lock was in flight): %w", l.resource, ctx.Err())
		}
		l.mu.Lock()
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("redlock: extend %q: not sent: %w", l.resource, err)
	}
	l.extending = true
	l.mu.Unlock()
	return nil
}

// endExtend ends the Extend in flight and wakes the ones waiting.
func (l *Lock) endExtend() {
	l.mu.Lock()
	l.extending = false
	if l.extendDone != nil {
		close(l.extendDone)
		l.extendDone = nil
	}
	l.mu.Unlock()
}

// notValid is Extend's local refusal: ErrNotHeld once the lock was
// released or its validity ran out.
func (l *Lock) notValid() error {
	l.mu.Lock()
	until, released := l.until, l.released
	l.mu.Unlock()
	switch {
	case released:
		return &opError{op: opExtend.String(), resource: l.resource, sentinel: ErrNotHeld, why: "released"}
	case until.IsZero():
		return &opError{op: opExtend.String(), resource: l.resource, sentinel: ErrNotHeld, why: "lost (a majority of masters said the token no longer holds it)"}
	case !time.Now().Before(until):
		return &opError{op: opExtend.String(), resource: l.resource, sentinel: ErrNotHeld,
			why: fmt.Sprintf("its validity ran out %v ago", time.Since(until).Round(time.Millisecond))}
	}
	return nil
}

// Release deletes the lock's key on every master of its group where it still
// holds this token. It returns nil once a majority deleted it, ErrNotHeld
// when a majority says the token no longer holds (it expired, or another
// holder has the resource), and otherwise a *QuorumError naming the failed
// masters. After Release, Until is zero whatever the outcome.
func (l *Lock) Release(ctx context.Context) error {
	c := l.c
	if c.closed.Load() {
		return ErrClosed
	}
	live := ctx.Err() == nil
	l.mu.Lock()
	// A master that may hold the key and misses the release (down, or no
	// answer in time) gets it when it answers again: from then on, the key
	// may live there for as long as the longest TTL sent for it.
	keep := keyLife(l.keyTTL, c.s.DriftFactor)
	inFn := l.onLost != nil // Do's fn runs: its context follows Until
	l.released = true       // before setUntil: a release does not close Done (it ends Do's fn context)
	l.setUntil(time.Time{})
	endedFn := inFn && l.onLost == nil // this release ended fn's context
	auto := l.auto
	l.mu.Unlock()
	if auto {
		// No renewal is sent after this point: the extender drops the
		// lock, and checks released as it builds each pipeline. A renewal
		// already on the wire cannot outlive the release: the
		// compare-and-pexpire runs on a master either before the
		// compare-and-delete (which then deletes the key) or after it
		// (and finds no key of this token).
		c.ext.remove(l)
	}
	c.hub.releasing(l.key, l.token)
	q := l.releaseRequest(c.s.NodeTimeout, keep)
	rctx, rcancel := ownReleaseCtx(ctx, live && endedFn)
	defer rcancel()
	if c.obs == nil {
		return c.release(rctx, l.g, l.prev, l.resource, q, l.prevMayHold, true, nil)
	}
	tr := &trace{attempts: 1}
	start := time.Now()
	err := c.release(rctx, l.g, l.prev, l.resource, q, l.prevMayHold, true, tr)
	tr.dur = time.Since(start)
	ev := tr.lockEvent(ctx, EventRelease, l.g, l.resource, err)
	ev.Held = time.Since(l.obtained)
	c.observe(ev)
	if errors.Is(err, ErrNotHeld) {
		l.reportLost(ctx, err)
	}
	return err
}

// releasedByCaller reports whether Release was called on l (by fn, in Do:
// Do then does not release it again, which would find it gone and report
// ErrNotHeld and EventLost for a section that ended cleanly).
func (l *Lock) releasedByCaller() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

// ownReleaseCtx is the context of a release called with ctx. When the
// release ended the context of its lock's own Do or DoAll fn (ended: fn's
// context follows Until, now zero — fn releases the lock it runs under,
// perhaps from a nested Do) and ctx was live when it began, the release
// keeps ctx's deadline and values but not its cancellation, so that it is
// not cut short by the end it caused. Whether ctx is ended by fn's cannot
// be told from ctx.Err() at that point: a ctx derived from fn's ends at
// once, but one that fn's ends through context.AfterFunc (merged contexts)
// or a goroutine of a Context implementation ends a moment later, in the
// middle of the fan-out. Such a release is bounded by ctx's deadline and
// NodeTimeout, not by a cancellation of ctx.
func ownReleaseCtx(ctx context.Context, ended bool) (context.Context, context.CancelFunc) {
	if !ended {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	return context.WithoutCancel(ctx), func() {}
}

// ReleaseToken releases resource where its key still holds token, exactly as
// Lock.Release does, for a lock acquired elsewhere (another process that
// handed over its Token). It returns nil once a majority deleted the key,
// ErrNotHeld when a majority says token does not hold it, and otherwise a
// *QuorumError naming the failed masters. (Lock returns at quorum: right
// after it, a master it did not wait for may still be applying the SET; a
// release from another client can overtake it there, leaving that minority
// key to expire with its TTL.)
func (c *Client) ReleaseToken(ctx context.Context, resource, token string) error {
	if err := c.checkResource(resource); err != nil {
		return err
	}
	if token == "" {
		return &InputError{Arg: "token", Reason: "empty"}
	}
	if c.closed.Load() {
		return ErrClosed
	}
	g, pg, h := c.routeBoth(resource)
	// Any master may hold the token (its SET may land late): a master that
	// misses the release keeps it (kept.go), as for the holder's Release.
	return c.release(ctx, g, pg, resource, request{op: opRelease, key: c.s.KeyPrefix + resource, token: token, hash: h, timeout: c.s.NodeTimeout,
		keepMask: allMasters, keepFor: lifeUnknown}, allMasters, false, nil)
}

// release sends the release q to every master of g (and, for a moved
// resource's plain lock in migration mode, to pg, its previous group, at
// the same time, with prevMayHold as keepMask). Masters of q.keepMask that
// miss it keep it for up to q.keepFor (the key's remaining life) and send
// it when they are back.
//
// With two groups: strict (a Lock held on both) succeeds when both deleted
// it and is ErrNotHeld when either says the token is gone; otherwise (a
// token from a client on either ring) it succeeds when one deleted it and
// the other answered, and is ErrNotHeld when both say the token is not there.
func (c *Client) release(ctx context.Context, g, pg *group, resource string, q request, prevMayHold uint64, strict bool, tr *trace) error {
	pq := q
	pq.keepMask, pq.need = prevMayHold, 0
	r, pr := fanoutBoth(ctx, g, q, pg, pq)
	need, noNeed := q.needs(g)
	tr.record(g, &r)
	v, pv := verdictOpen, verdictNo
	switch {
	case r.yes >= need:
		v = verdictYes
	case r.no >= noNeed:
		v = verdictNo
	}
	if pg != nil {
		tr.record(pg, &pr)
		pv = pg.verdict(&pr)
	}
	released := func() error { // waiters on either group hear it
		if q.op == opRelease {
			c.hub.released(q.key, r)
			if pg != nil {
				c.hub.released(q.key, pr)
			}
		}
		return nil
	}
	var notHeld *QuorumError
	switch {
	case pg == nil && v == verdictYes:
		return released()
	case pg == nil && v == verdictNo:
		notHeld = g.quorumErrorNeed(q.op, resource, r, need)
	case pg != nil && strict && v == verdictYes && pv == verdictYes:
		return released()
	case pg != nil && strict && v == verdictNo:
		notHeld = joinQuorumErrors(g.quorumErrorNeed(q.op, resource, r, need), pg.quorumError(q.op, resource, pr), "previous")
	case pg != nil && strict && pv == verdictNo:
		notHeld = joinQuorumErrors(pg.quorumError(q.op, resource, pr), g.quorumErrorNeed(q.op, resource, r, need), "new")
	case pg != nil && !strict && v != verdictOpen && pv != verdictOpen:
		if v == verdictYes || pv == verdictYes {
			return released()
		}
		notHeld = joinQuorumErrors(g.quorumErrorNeed(q.op, resource, r, need), pg.quorumError(q.op, resource, pr), "previous")
	}
	if notHeld != nil {
		notHeld.sentinel = ErrNotHeld
		return notHeld
	}
	qe := g.quorumErrorNeed(q.op, resource, r, need)
	if pg != nil {
		if v != verdictOpen {
			qe = joinQuorumErrors(pg.quorumError(q.op, resource, pr), qe, "new")
		} else {
			qe = joinQuorumErrors(qe, pg.quorumError(q.op, resource, pr), "previous")
		}
	}
	qe.cause = ctx.Err()
	return qe
}

// DoOption changes how Do runs.
type DoOption func(*doOptions)

type doOptions struct {
	autoExtend bool
	try        bool
	maxHold    time.Duration // WithMaxHold: automatic extension stops after it
	maxHoldSet bool
}

// WithAutoExtend extends the lock by its ttl every ttl/3 while fn runs. The
// context fn gets is still cancelled (cause ErrLockLost) if an extension
// finds the lock gone or validity runs out before one succeeds. The
// extensions are made by the Client's shared extender: one goroutine and one
// ticker for all auto-extended locks, whose renewals due on a master go out
// as one pipeline. No renewal is sent after the lock's Release.
func WithAutoExtend() DoOption { return func(o *doOptions) { o.autoExtend = true } }

// WithTryOnce makes a single attempt (TryLock) instead of Lock's retries.
func WithTryOnce() DoOption { return func(o *doOptions) { o.try = true } }

type lockCtxKey struct{}

// LockFromContext returns the lock held around the fn that Do runs, or nil.
// fn can Extend it by hand; the context follows the new validity.
func LockFromContext(ctx context.Context) *Lock {
	l, _ := ctx.Value(lockCtxKey{}).(*Lock)
	return l
}

// Do acquires resource (as Lock does), runs fn, and releases the lock
// whatever happens: on return, on error and on panic (which then
// propagates). fn receives a context that is cancelled, with cause
// ErrLockLost, when the lock is lost: its validity runs out (Until) or an
// extension finds it gone — and when fn releases it itself
// (LockFromContext(ctx).Release; the cause then matches ErrNotHeld too):
// it follows every change of Until. Do returns fn's error; when fn succeeded but the
// release found the lock no longer held, it returns that error (the critical
// section may have overlapped another holder). A lock fn released itself is
// not released again: fn has its Release's outcome. fn does not run when the
// lock is not obtained: Do then returns Lock's error.
//
// This is the Elixir redlock's transaction(resource, ttl, fn).
func (c *Client) Do(ctx context.Context, resource string, ttl time.Duration, fn func(ctx context.Context) error) error {
	return c.DoWith(ctx, resource, ttl, fn)
}

// DoWith is Do with options (WithAutoExtend, WithTryOnce).
func (c *Client) DoWith(ctx context.Context, resource string, ttl time.Duration, fn func(ctx context.Context) error, opts ...DoOption) (err error) {
	if fn == nil {
		return &InputError{Arg: "fn", Reason: "nil"}
	}
	o, err := doOpts(opts)
	if err != nil {
		return err
	}
	var l *Lock
	if o.try {
		l, err = c.TryLock(ctx, resource, ttl)
	} else {
		l, err = c.Lock(ctx, resource, ttl)
	}
	if err != nil {
		return err
	}
	return c.runLocked(ctx, l, ttl, o, fn)
}

// doOpts applies opts and checks them.
func doOpts(opts []DoOption) (doOptions, error) {
	var o doOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxHoldSet && o.maxHold <= 0 {
		return o, &InputError{Arg: "WithMaxHold", Reason: fmt.Sprintf("%v is not positive", o.maxHold)}
	}
	return o, nil
}

// runLocked is the part of Do after the lock l (of any kind) was obtained:
// it runs fn under a context that ends when l is lost, extends l when
// asked, and releases l whatever happens.
func (c *Client) runLocked(ctx context.Context, l *Lock, ttl time.Duration, o doOptions, fn func(ctx context.Context) error) (err error) {
	lctx, cancel := context.WithCancelCause(context.WithValue(ctx, lockCtxKey{}, l))
	if o.autoExtend {
		c.ext.add(l, ttl, o.maxHold)
	}
	// fn's context ends when the lock is known lost (done.go): a timer at
	// Until that follows every change of it — no goroutine per section.
	l.notifyLost(func(cause error) { cancel(cause) })
	defer func() {
		l.notifyLost(nil)
		cancel(nil)
		if l.releasedByCaller() {
			return // fn released it: sent once, with fn's own outcome
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.ReleaseTimeout)
		relErr := l.Release(rctx)
		rcancel()
		if err == nil && relErr != nil {
			err = relErr
		}
	}()
	return fn(lctx)
}
