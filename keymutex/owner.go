package keymutex

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// TransferBuffer is the capacity of each transfer channel (one per heir and
// Mutex, see [Mutex.Transfers]).
const TransferBuffer = 16

// tracker is what an Owner knows of a Mutex it holds keys on: enough to free
// them all when the owner says goodbye, whatever the Mutex's key type.
type tracker interface {
	ownerGone(o *Owner)
}

// inbox is a transfer channel, whatever its key type.
type inbox interface {
	close()
}

// Owner is the holder of locks: the counterpart of an Elixir process. Create
// one per actor with [NewOwner] or [NewOwnerContext]; an Owner can be used
// with any number of Mutexes, of any key types. Its methods are safe for
// concurrent use.
//
// An Owner's life ends with [Owner.Goodbye] (or the end of its context):
// all its keys are freed and it can take no more locks.
type Owner struct {
	name string
	done chan struct{}
	gone atomic.Bool // set once, under mu

	mu      sync.Mutex
	mutexes []tracker         // Mutexes where the owner holds a lock (few: a slice)
	inboxes map[tracker]inbox // transfer channels, by Mutex
	stop    func() bool       // unregisters the context.AfterFunc
}

// NewOwner returns a new owner. The name is used in error messages and logs
// only; it need not be unique.
func NewOwner(name string) *Owner {
	return &Owner{name: name, done: make(chan struct{})}
}

// NewOwnerContext returns a new owner that says [Owner.Goodbye] by itself
// when ctx ends, freeing every key it holds, as the Elixir mutex frees the
// keys of a dead process. It starts no goroutine: the goodbye is registered
// with context.AfterFunc and unregistered by an explicit Goodbye.
func NewOwnerContext(ctx context.Context, name string) *Owner {
	o := NewOwner(name)
	stop := context.AfterFunc(ctx, o.Goodbye)
	o.mu.Lock()
	o.stop = stop
	o.mu.Unlock()
	return o
}

// Name returns the name given to NewOwner.
func (o *Owner) Name() string { return o.name }

// String returns the owner's name, quoted, as it appears in error messages.
func (o *Owner) String() string {
	if o == nil {
		return "<nil>"
	}
	return strconv.Quote(o.name)
}

// Done returns a channel that is closed when the owner's goodbye is complete:
// all its keys are free by then.
func (o *Owner) Done() <-chan struct{} { return o.done }

// Alive reports whether the owner has not said goodbye yet (false as soon
// as its goodbye starts).
func (o *Owner) Alive() bool { return !o.gone.Load() }

// Goodbye ends the owner's life: every lock it holds, on every Mutex, is
// released (waiting owners are handed the keys), its pending Await calls
// return ErrOwnerGone, its transfer channels are closed (transfers still
// buffered in them are released with the rest), and any later attempt to
// lock with it fails with ErrOwnerGone. Goodbye is idempotent.
func (o *Owner) Goodbye() {
	o.mu.Lock()
	if o.gone.Load() {
		o.mu.Unlock()
		return
	}
	o.gone.Store(true)
	for _, in := range o.inboxes {
		in.close() // no send can follow: senders check gone under o.mu
	}
	mutexes := slices.Clone(o.mutexes)
	stop := o.stop
	o.mu.Unlock()

	if stop != nil {
		stop()
	}
	// Lock order is Mutex.mu before Owner.mu, so the Mutexes are visited
	// without o.mu. No new lock can be tracked any more: track checks gone.
	for _, m := range mutexes {
		m.ownerGone(o)
	}
	close(o.done)
}

// track records that o holds a lock on m. It fails if o is gone. The caller
// holds m's lock.
func (o *Owner) track(m tracker) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gone.Load() {
		return false
	}
	o.trackLocked(m)
	return true
}

// trackLocked records m in o.mutexes once. The caller holds o.mu.
func (o *Owner) trackLocked(m tracker) {
	if !slices.Contains(o.mutexes, m) {
		o.mutexes = append(o.mutexes, m)
	}
}

// untrack records that o holds no more locks on m. The caller holds m's lock.
func (o *Owner) untrack(m tracker) {
	o.mu.Lock()
	if i := slices.Index(o.mutexes, m); i >= 0 {
		last := len(o.mutexes) - 1
		o.mutexes[i] = o.mutexes[last]
		o.mutexes[last] = nil
		o.mutexes = o.mutexes[:last]
	}
	o.mu.Unlock()
}
