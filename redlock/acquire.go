package redlock

import (
	"context"
	"slices"
	"time"
)

// lockKind is what a scripted lock is — a reader's share, a writer's lock,
// a semaphore permit: the operations (scripts) that take, give back and
// extend it. A plain lock has none (Lock.kind is nil). fenced is the
// acquire's fenced form (Config.Fencing).
type lockKind struct {
	acquire, release, extend, fenced opKind
}

var (
	kindRead   = &lockKind{acquire: opRLock, release: opRUnlock, extend: opRExtend, fenced: opRLockFence}
	kindWrite  = &lockKind{acquire: opWLock, release: opWUnlock, extend: opWExtend, fenced: opWLockFence}
	kindPermit = &lockKind{acquire: opSemAcquire, release: opSemRelease, extend: opSemExtend, fenced: opSemAcquireFence}
)

// allMasters is the keep mask (mayHold) of a release needed on every master
// of its group: a waiting writer's mark may be on any master that got its
// script, whatever it answered (see RWMutex.Lock); a token handed over by
// another process may hold any master (ReleaseToken).
const allMasters = ^uint64(0)

// scripted is one resource's scripted locks (an RWMutex's or a
// Semaphore's): its group, its keys, and the votes a holder needs.
type scripted struct {
	c        *Client
	resource string
	g        *group
	hash     uint64
	keys     []string // KEYS of every script; keys[0] picks each master's writer
	need     int      // "yes" votes that hold a lock (0: the group's majority)
}

func newScripted(c *Client, resource string, suffixes ...string) scripted {
	g, h := c.route(resource)
	keys := make([]string, len(suffixes))
	for i, s := range suffixes {
		keys[i] = c.s.KeyPrefix + resource + s
	}
	return scripted{c: c, resource: resource, g: g, hash: h, keys: keys}
}

// quorum is the number of masters a holder needs.
func (s *scripted) quorum() int {
	if s.need > 0 {
		return s.need
	}
	return s.g.quorum
}

// attempt is one acquisition of kind with a fresh token: the script runs
// on every master of the group in parallel with ARGV (token, ttl in ms,
// argv…). It succeeds with s.quorum() "yes" and validity left, as Lock's
// attempt does; otherwise it releases the token on every master — those
// that timed out included — detached from ctx, exactly as a failed plain
// attempt does. extra is the held lock's release argument (see Lock.extra).
func (s *scripted) attempt(ctx context.Context, kind *lockKind, ttl time.Duration, extra string, argv ...any) (*Lock, error) {
	c := s.c
	if err := c.refuseMoving(kind.acquire.String(), s.resource); err != nil {
		return nil, err // migration mode: a moved resource's scripted locks are not held on both groups
	}
	token := newToken()
	ms := ttlMillis(ttl)
	args := append([]any{token, ms}, argv...)
	need := s.quorum()
	op, keys := kind.acquire, s.keys
	if c.s.Fencing { // the fenced form: one more key and argument
		op, keys = kind.fenced, append(keys[:len(keys):len(keys)], c.fenceKey)
		args = append(args, fenceSlotNames[fenceSlot(s.hash)])
	}
	start := time.Now() // monotonic
	q := request{op: op, key: s.keys[0], token: token, ttlMs: ms, hash: s.hash, timeout: c.s.NodeTimeout,
		need: need, args: newScriptArgs(op, keys, token, args...)}
	r := s.g.fanout(ctx, q)
	until := validUntil(start, ttl, c.s.DriftFactor)
	l := &Lock{c: c, g: s.g, hash: s.hash, resource: s.resource, key: s.keys[0], token: token, keyTTL: ttl,
		mayHold: r.mayHold(), kind: kind, keys: s.keys, need: s.need, extra: extra, obtained: start}
	if extra != "" {
		// A waiting writer's release also lifts its mark, which a master
		// that refused it (a "no", not counted in mayHold) may carry.
		l.mayHold = allMasters
	}
	// A master that answered another semaphore's permits refuses the
	// attempt, even one that reached its quorum elsewhere: clients that
	// disagree on permits are a mistake to report, not a race to win.
	mismatch := permitsError(s.resource, r)
	var fenceErr error
	if r.yes >= need && time.Now().Before(until) && mismatch == nil {
		if c.s.Fencing {
			l.fence, fenceErr = c.settleFence(ctx, kind.acquire, s.g, nil, s.hash, nil, s.resource, r, result{})
		}
		if fenceErr == nil && time.Now().Before(until) {
			l.until = until
			return l, nil
		}
	}
	// The cleanup gives back this attempt's token only: a waiting writer's
	// mark stays while it retries (Lock lifts it when it gives up). So it
	// is needed only where this attempt's script may have landed
	// (r.mayHold), not on every master as the held writer's release (which
	// also lifts the mark) is: kept for a master that refused the attempt or
	// never got it (down), one cleanup per failed attempt would fill the
	// kept list (maxKeptReleases) while a writer waits, and releases other
	// locks do need would be dropped.
	l.extra, l.mayHold = "", r.mayHold()
	s.g.releaseDetached(l.releaseRequest(c.s.ReleaseTimeout, keyLife(ttl, c.s.DriftFactor)))
	if fenceErr != nil {
		return nil, fenceErr
	}
	qe := s.g.quorumErrorNeed(kind.acquire, s.resource, r, need)
	if mismatch != nil {
		return nil, &lineError{msg: mismatch.Error() + "; " + causeText(qe), errs: []error{mismatch, qe}}
	}
	qe.sentinel, qe.cause = ErrNotObtained, ctx.Err()
	if r.yes >= need {
		qe.ValidityRanOut, qe.Took = true, time.Since(start)
	}
	return nil, qe
}

// acquire takes kind (attempt's arguments) in the one retry loop of
// blocking acquisitions (acquireLoop, wait.go): when masters refused it,
// the loop waits for the next release announced on the resource's channel
// (every release script of RWMutex and Semaphore announces on keys[0]'s),
// bounded by Config.RetryStrategy and by how long the masters may still
// refuse (busyLeftScript in mode "r", "w" or "s" with permits). The first
// attempt is made here: an uncontended one allocates nothing for waiting.
func (s *scripted) acquire(ctx context.Context, kind *lockKind, ttl time.Duration, extra, mode string, permits int, argv ...any) (*Lock, error) {
	l, err := s.attempt(ctx, kind, ttl, extra, argv...)
	if err == nil {
		return l, nil
	}
	return s.wait(ctx, kind, ttl, extra, mode, permits, argv, err)
}

// wait is acquire after a first attempt that failed with err.
func (s *scripted) wait(ctx context.Context, kind *lockKind, ttl time.Duration, extra, mode string, permits int, argv []any, err error) (*Lock, error) {
	c := s.c
	args := newScriptArgs(opBusyLeft, s.keys, "", mode)
	if mode == "s" {
		args = newScriptArgs(opBusyLeft, s.keys, "", mode, permits)
	}
	keys := []waitKey{{key: s.keys[0], g: s.g, need: s.quorum(), left: request{op: opBusyLeft, key: s.keys[0], hash: s.hash,
		timeout: c.s.NodeTimeout, args: args}}}
	busyOf := func(err error) []waitKey {
		if isBusy(err) {
			return keys
		}
		return nil
	}
	var l *Lock
	own := slices.Clone(argv) // the caller's (variadic) argv stays on its stack
	err = c.acquireLoop(ctx, acquisition{op: kind.acquire.String(), resource: s.resource, strategy: c.s.RetryStrategy,
		firstErr: err, firstBusy: busyOf(err),
		try: func() (busy []waitKey, err error) {
			l, err = s.attempt(ctx, kind, ttl, extra, own...)
			return busyOf(err), err
		}})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// do is Do for a scripted lock: acquire (one attempt with WithTryOnce),
// then run fn as Client.Do runs it.
func (s *scripted) do(ctx context.Context, ttl time.Duration, fn func(ctx context.Context) error, opts []DoOption,
	lock, try func(context.Context, time.Duration) (*Lock, error)) error {
	if fn == nil {
		return &InputError{Arg: "fn", Reason: "nil"}
	}
	o, err := doOpts(opts)
	if err != nil {
		return err
	}
	acquire := lock
	if o.try {
		acquire = try
	}
	l, err := acquire(ctx, ttl)
	if err != nil {
		return err
	}
	return s.c.runLocked(ctx, l, ttl, o, fn)
}
