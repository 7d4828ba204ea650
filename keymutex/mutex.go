package keymutex

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// Mutex is a set of locks, one per key. The zero value is ready to use and
// logs with slog.Default(); [New] sets options. A Mutex must not be copied
// after first use. Its methods are safe for concurrent use.
//
// Keys of floating-point types must not be NaN (NaN is not equal to itself,
// so it could never be found again); such keys are rejected with ErrInvalid.
type Mutex[K cmp.Ordered] struct {
	mu     sync.Mutex
	keys   map[K]keyState[K]   // held keys, with their waiters
	owners map[*Owner]*Lock[K] // each owner's complete locks (list heads)
	logger *slog.Logger        // nil: slog.Default()
}

// keyState is a held key: its holder and its FIFO queue of waiters. A key is
// in the map only while held; a free key never has waiters, because a
// released key is handed straight to its first waiter.
type keyState[K cmp.Ordered] struct {
	holder     *Lock[K]
	head, tail *waiter[K]
}

// waiter is one Await or AwaitAll waiting for one key.
type waiter[K cmp.Ordered] struct {
	lock       *Lock[K]      // the lock being acquired
	ready      chan struct{} // closed when the key is handed to lock
	granted    bool          // the key was handed over; guarded by Mutex.mu
	prev, next *waiter[K]
}

type lockState uint8

const (
	statePending   lockState = iota // being acquired by Await/AwaitAll
	stateHeld                       // handed to its owner
	stateReleased                   // released by Release or ReleaseAll
	stateGivenAway                  // moved to another owner by GiveAway
	stateOwnerGone                  // freed by its owner's Goodbye
)

// Lock is a lock held on one key (TryLock, Await, GiveAway) or on several
// keys at once (AwaitAll). Its keys and owner never change: GiveAway hands
// the heir a new Lock and the giver's Lock stops being held.
type Lock[K cmp.Ordered] struct {
	m     *Mutex[K]
	owner *Owner
	keys  []K // sorted, unique; points into one for single-key locks
	one   [1]K

	// Guarded by m.mu.
	state      lockState
	heir       *Owner   // for stateGivenAway
	prev, next *Lock[K] // the owner's list of locks on m
}

// Keys returns a copy of the lock's keys, in ascending order.
func (l *Lock[K]) Keys() []K { return slices.Clone(l.keys) }

// Key returns the lock's key (its first key for a multi-key lock).
func (l *Lock[K]) Key() K { return l.keys[0] }

// Owner returns the owner the lock was taken by (or given to).
func (l *Lock[K]) Owner() *Owner { return l.owner }

// String describes the lock, e.g. `key "a" of owner "alice"`.
func (l *Lock[K]) String() string { return fmtKeys(l.keys) + " of owner " + l.owner.String() }

// Transfer is what an heir receives on [Mutex.Transfers] when a lock is given
// to it with [Mutex.GiveAway]: the counterpart of Elixir's
// {:"MUTEX-TRANSFER", from, lock, gift} message.
type Transfer[K cmp.Ordered] struct {
	From *Owner   // the giver
	Lock *Lock[K] // the lock, now held by the heir
	Gift any      // the value passed to GiveAway
}

// Option configures a Mutex made by New.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger sets the logger that reports ReleaseAsync failures (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// New returns a new Mutex configured by opts.
func New[K cmp.Ordered](opts ...Option) *Mutex[K] {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return &Mutex[K]{logger: o.logger}
}

func (m *Mutex[K]) init() {
	if m.keys == nil {
		m.keys = make(map[K]keyState[K])
		m.owners = make(map[*Owner]*Lock[K])
	}
}

func newLock[K cmp.Ordered](m *Mutex[K], o *Owner, key K) *Lock[K] {
	l := &Lock[K]{m: m, owner: o}
	l.one[0] = key
	l.keys = l.one[:]
	return l
}

func isNaN[K cmp.Ordered](k K) bool { return k != k }

func checkKey[K cmp.Ordered](op string, o *Owner, key K) error {
	if o == nil {
		return invalid("%s key %s: nil owner", op, fmtKey(key))
	}
	if isNaN(key) {
		return invalid("%s: NaN key", op)
	}
	return nil
}

func checkKeys[K cmp.Ordered](op string, o *Owner, keys []K) error {
	if len(keys) == 0 {
		return invalid("%s: no keys", op)
	}
	if o == nil {
		return invalid("%s %s: nil owner", op, fmtKeys(keys))
	}
	for _, k := range keys {
		if isNaN(k) {
			return invalid("%s: NaN key", op)
		}
	}
	return nil
}

// TryLock locks key for owner if the key is free, and fails at once with an
// error wrapping ErrBusy (naming the key and its holder) if it is held, even
// by owner itself: locks are not reentrant.
func (m *Mutex[K]) TryLock(owner *Owner, key K) (*Lock[K], error) {
	if err := checkKey("lock", owner, key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	if owner.gone.Load() {
		return nil, fmt.Errorf("keymutex: lock key %s: owner %s: %w", fmtKey(key), owner, ErrOwnerGone)
	}
	if st, busy := m.keys[key]; busy {
		return nil, busyError(key, st.holder.owner)
	}
	l := newLock(m, owner, key)
	m.keys[key] = keyState[K]{holder: l}
	if !m.attach(l) {
		delete(m.keys, key)
		return nil, fmt.Errorf("keymutex: lock key %s: owner %s: %w", fmtKey(key), owner, ErrOwnerGone)
	}
	return l, nil
}

func busyError[K cmp.Ordered](key K, holder *Owner) error {
	return fmt.Errorf("keymutex: key %s is held by owner %s: %w", fmtKey(key), holder, ErrBusy)
}

// MustLock is like TryLock but panics, with an error naming the key and its
// holder, if the key cannot be locked.
func (m *Mutex[K]) MustLock(owner *Owner, key K) *Lock[K] {
	l, err := m.TryLock(owner, key)
	if err != nil {
		panic(fmt.Errorf("keymutex: MustLock: %w", err))
	}
	return l
}

// Await locks key for owner, waiting (without polling, first come first
// served) until the key is free. ctx bounds the wait: when it ends first,
// Await returns an error that wraps ErrBusy and ctx.Err() and names the key
// and its holder. If owner says goodbye meanwhile, Await returns
// ErrOwnerGone. If owner itself holds key, Await fails at once with
// ErrWouldDeadlock. A context already done fails at once, even if the key is
// free.
func (m *Mutex[K]) Await(ctx context.Context, owner *Owner, key K) (*Lock[K], error) {
	if err := checkKey("await", owner, key); err != nil {
		return nil, err
	}
	l := newLock(m, owner, key)
	if err := m.acquire(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

// AwaitAll locks all keys at once for owner, as one Lock, waiting as Await
// does. The keys are taken one by one in ascending order, so owners that
// take several keys only through AwaitAll cannot deadlock. The keys must be
// unique and at least one (ErrInvalid otherwise). If AwaitAll fails, owner
// holds none of the keys.
func (m *Mutex[K]) AwaitAll(ctx context.Context, owner *Owner, keys ...K) (*Lock[K], error) {
	if err := checkKeys("await all", owner, keys); err != nil {
		return nil, err
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, invalid("await all: duplicate key %s", fmtKey(sorted[i]))
		}
	}
	l := &Lock[K]{m: m, owner: owner, keys: sorted}
	if err := m.acquire(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

// acquire takes the keys of the pending lock l, in order, waiting for each.
func (m *Mutex[K]) acquire(ctx context.Context, l *Lock[K]) error {
	o := l.owner
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("keymutex: owner %s awaiting %s: %w", o, fmtKeys(l.keys), err)
	}
	m.mu.Lock()
	m.init()
	for i, k := range l.keys {
		if o.gone.Load() {
			m.freeKeys(l.keys[:i])
			m.mu.Unlock()
			return fmt.Errorf("keymutex: owner %s awaiting %s: %w", o, fmtKeys(l.keys), ErrOwnerGone)
		}
		st, busy := m.keys[k]
		if !busy {
			m.keys[k] = keyState[K]{holder: l}
			continue
		}
		if st.holder.owner == o {
			m.freeKeys(l.keys[:i])
			m.mu.Unlock()
			return fmt.Errorf("keymutex: owner %s awaiting key %s: %w", o, fmtKey(k), ErrWouldDeadlock)
		}
		w := &waiter[K]{lock: l, ready: make(chan struct{})}
		st.push(w)
		m.keys[k] = st
		m.mu.Unlock()

		var cause error
		select {
		case <-w.ready:
			m.mu.Lock() // the key is ours: the releaser made l its holder
			continue
		case <-ctx.Done():
			cause = ctx.Err()
			if c := context.Cause(ctx); c != nil && c != cause { //nolint:errorlint // identity: is the cause the very error Err returns?
				cause = errors.Join(cause, c)
			}
		case <-o.done:
		}

		m.mu.Lock()
		held := i // keys of l held now
		var holder *Owner
		if w.granted {
			held++ // handed to us just as we gave up: pass it on below
		} else {
			st := m.keys[k]
			st.remove(w)
			m.keys[k] = st
			holder = st.holder.owner
		}
		m.freeKeys(l.keys[:held])
		m.mu.Unlock()
		if cause == nil {
			return fmt.Errorf("keymutex: owner %s awaiting %s: %w", o, fmtKeys(l.keys), ErrOwnerGone)
		}
		if holder == nil {
			return fmt.Errorf("keymutex: owner %s gave up awaiting %s: %w: %w", o, fmtKeys(l.keys), ErrBusy, cause)
		}
		return fmt.Errorf("keymutex: owner %s gave up awaiting %s (key %s is held by owner %s): %w: %w",
			o, fmtKeys(l.keys), fmtKey(k), holder, ErrBusy, cause)
	}
	defer m.mu.Unlock()
	if !m.attach(l) {
		m.freeKeys(l.keys)
		return fmt.Errorf("keymutex: owner %s awaiting %s: %w", o, fmtKeys(l.keys), ErrOwnerGone)
	}
	return nil
}

func (s *keyState[K]) push(w *waiter[K]) {
	w.prev = s.tail
	if s.tail == nil {
		s.head = w
	} else {
		s.tail.next = w
	}
	s.tail = w
}

func (s *keyState[K]) remove(w *waiter[K]) {
	if w.prev == nil {
		s.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		s.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
}

// freeKey releases a held key: it is handed to its first waiter, or becomes
// free. The caller holds m.mu.
func (m *Mutex[K]) freeKey(k K) {
	st := m.keys[k]
	if w := st.head; w != nil {
		st.remove(w)
		st.holder = w.lock
		w.granted = true
		close(w.ready)
		m.keys[k] = st
		return
	}
	delete(m.keys, k)
}

func (m *Mutex[K]) freeKeys(keys []K) {
	for _, k := range keys {
		m.freeKey(k)
	}
}

// attach marks the complete lock l as held and adds it to its owner's list,
// unless the owner is gone. The caller holds m.mu.
func (m *Mutex[K]) attach(l *Lock[K]) bool {
	head := m.owners[l.owner]
	if head == nil && !l.owner.track(m) {
		return false
	}
	l.prev, l.next = nil, head
	if head != nil {
		head.prev = l
	}
	m.owners[l.owner] = l
	l.state = stateHeld
	return true
}

// detach removes l from its owner's list. The caller holds m.mu.
func (m *Mutex[K]) detach(l *Lock[K]) {
	if l.prev == nil {
		if l.next == nil {
			delete(m.owners, l.owner)
			l.owner.untrack(m)
		} else {
			m.owners[l.owner] = l.next
		}
	} else {
		l.prev.next = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.prev, l.next = nil, nil
}

// notHeldError explains why l is not held. The caller holds m.mu.
func notHeldError[K cmp.Ordered](op string, l *Lock[K]) error {
	var why string
	switch l.state {
	case stateGivenAway:
		why = "was given away to owner " + l.heir.String()
	case stateOwnerGone:
		why = "was freed when its owner said goodbye"
	default:
		why = "was already released"
	}
	return fmt.Errorf("keymutex: %s %s: the lock of owner %s %s: %w", op, fmtKeys(l.keys), l.owner, why, ErrNotHeld)
}

func (m *Mutex[K]) checkHeld(op string, l *Lock[K]) error {
	if l == nil {
		return invalid("%s: nil lock", op)
	}
	if l.m != m {
		return invalid("%s %s: lock of owner %s belongs to another Mutex", op, fmtKeys(l.keys), l.owner)
	}
	if l.state != stateHeld {
		return notHeldError(op, l)
	}
	return nil
}

// Release releases all the keys of lock together; the first waiter of each
// key is handed it. It fails with an error wrapping ErrNotHeld, naming the
// keys and the lock's owner, if the lock is not held any more: released
// already, given away, or freed by its owner's goodbye.
func (m *Mutex[K]) Release(lock *Lock[K]) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.releaseLocked(lock)
}

func (m *Mutex[K]) releaseLocked(lock *Lock[K]) error {
	if err := m.checkHeld("release", lock); err != nil {
		return err
	}
	m.detach(lock)
	m.freeKeys(lock.keys)
	lock.state = stateReleased
	return nil
}

// ReleaseAsync releases lock as Release does but returns nothing: a failure
// is logged (at Error level) by the Mutex's logger, as Elixir's
// fire-and-forget release does. It never waits for another owner, only for
// the Mutex's short internal bookkeeping, so it returns at once; and since
// it starts no goroutine, an owner's operations keep their order (a TryLock
// of the same key right after it finds the key free, as an Elixir process's
// messages keep theirs).
func (m *Mutex[K]) ReleaseAsync(lock *Lock[K]) {
	if err := m.Release(lock); err != nil {
		m.log().Error("keymutex: asynchronous release failed", "error", err)
	}
}

func (m *Mutex[K]) log() *slog.Logger {
	if m.logger != nil {
		return m.logger
	}
	return slog.Default()
}

// ReleaseAll releases every lock that owner holds on m and returns how many
// it released. The owner stays usable (it is Elixir's Mutex.goodbye/1 for a
// process that lives on); use [Owner.Goodbye] to end an owner on every
// Mutex.
func (m *Mutex[K]) ReleaseAll(owner *Owner) int {
	return m.releaseOwner(owner, stateReleased)
}

func (m *Mutex[K]) ownerGone(o *Owner) { m.releaseOwner(o, stateOwnerGone) }

func (m *Mutex[K]) releaseOwner(o *Owner, state lockState) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for l := m.owners[o]; l != nil; l = l.next {
		m.freeKeys(l.keys)
		l.state = state
		n++
	}
	if n > 0 {
		for l := m.owners[o]; l != nil; {
			next := l.next
			l.prev, l.next = nil, nil
			l = next
		}
		delete(m.owners, o)
		o.untrack(m)
	}
	return n
}

// Holder returns the owner that holds key, or nil if the key is free. The
// answer may be stale as soon as it is returned; it is meant for logs,
// tests and examples.
func (m *Mutex[K]) Holder(key K) *Owner {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st, ok := m.keys[key]; ok {
		return st.holder.owner
	}
	return nil
}

// typedInbox is a transfer channel of one Mutex key type.
type typedInbox[K cmp.Ordered] chan Transfer[K]

func (c typedInbox[K]) close() { close(c) }

// inboxLocked returns o's transfer channel for m, creating it (closed if o
// is gone). The caller holds o.mu.
func (m *Mutex[K]) inboxLocked(o *Owner) typedInbox[K] {
	if in, ok := o.inboxes[m]; ok {
		return in.(typedInbox[K])
	}
	in := make(typedInbox[K], TransferBuffer)
	if o.gone.Load() {
		close(in)
	}
	if o.inboxes == nil {
		o.inboxes = make(map[tracker]inbox)
	}
	o.inboxes[m] = in
	return in
}

// Transfers returns the channel on which owner receives the locks of m given
// to it with GiveAway. There is one channel per owner and Mutex, buffered
// with TransferBuffer places; it is closed when the owner says goodbye.
func (m *Mutex[K]) Transfers(owner *Owner) <-chan Transfer[K] {
	owner.mu.Lock()
	defer owner.mu.Unlock()
	return m.inboxLocked(owner)
}

// GiveAway moves the single-key lock to heir, which receives a Transfer with
// a new Lock (held by heir), the giver and gift on m.Transfers(heir). The
// giver's lock is no longer held afterwards. GiveAway never blocks: if the
// heir's transfer channel is full it fails with ErrTransferFull and the
// giver keeps the lock. If heir is gone, the lock is released instead and
// GiveAway returns nil, just as if heir had taken the lock and said goodbye.
// Giving a lock to its own owner, or giving a multi-key lock, fails with
// ErrInvalid.
func (m *Mutex[K]) GiveAway(lock *Lock[K], heir *Owner, gift any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkHeld("give away", lock); err != nil {
		return err
	}
	switch {
	case heir == nil:
		return invalid("give away %s: nil heir", fmtKeys(lock.keys))
	case len(lock.keys) != 1:
		return invalid("give away %s of owner %s: a multi-key lock cannot be given away", fmtKeys(lock.keys), lock.owner)
	case heir == lock.owner:
		return invalid("give away %s: owner %s cannot give a lock to itself", fmtKeys(lock.keys), heir)
	}
	key := lock.keys[0]
	nl := newLock(m, heir, key)

	heir.mu.Lock()
	if heir.gone.Load() {
		heir.mu.Unlock()
		m.detach(lock)
		m.freeKey(key)
		lock.state, lock.heir = stateGivenAway, heir
		return nil
	}
	select {
	case m.inboxLocked(heir) <- Transfer[K]{From: lock.owner, Lock: nl, Gift: gift}:
	default:
		heir.mu.Unlock()
		return fmt.Errorf("keymutex: give away %s from owner %s to owner %s: %w", fmtKey(key), lock.owner, heir, ErrTransferFull)
	}
	heir.trackLocked(m)
	heir.mu.Unlock()

	// The heir cannot use nl before m.mu is released.
	m.detach(lock)
	lock.state, lock.heir = stateGivenAway, heir
	st := m.keys[key]
	st.holder = nl
	m.keys[key] = st
	head := m.owners[heir]
	nl.next = head
	if head != nil {
		head.prev = nl
	}
	m.owners[heir] = nl
	nl.state = stateHeld
	return nil
}

// WithLock awaits key for owner (see Await), runs fn, and releases the lock
// when fn returns, fails or panics (the panic goes on after the release).
// It returns fn's error, joined with the release error if the lock could
// not be released (for instance because owner said goodbye during fn). It is
// the counterpart of Elixir's Mutex.under/with_lock.
func (m *Mutex[K]) WithLock(ctx context.Context, owner *Owner, key K, fn func() error) error {
	l, err := m.Await(ctx, owner, key)
	if err != nil {
		return err
	}
	return m.run(l, fn)
}

// WithLockAll is WithLock for several keys, awaited at once with AwaitAll.
func (m *Mutex[K]) WithLockAll(ctx context.Context, owner *Owner, keys []K, fn func() error) error {
	l, err := m.AwaitAll(ctx, owner, keys...)
	if err != nil {
		return err
	}
	return m.run(l, fn)
}

func (m *Mutex[K]) run(l *Lock[K], fn func() error) (err error) {
	panicking := true
	defer func() {
		rerr := m.Release(l)
		if !panicking {
			err = errors.Join(err, rerr)
		}
	}()
	err = fn()
	panicking = false
	return err
}
