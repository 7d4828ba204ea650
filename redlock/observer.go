package redlock

import (
	"context"
	"errors"
	"time"
)

// Observer receives lock-level events: acquisitions, extensions, releases,
// lost locks and master state changes (Config.Observer). Adapters for
// Prometheus and OpenTelemetry live in their own modules
// (github.com/quorumlock/quorumlock/metrics/prometheus and …/metrics/otel),
// so this package depends on neither.
//
// Observe is called synchronously: on the caller's goroutine for lock
// operations (after the outcome is known, before Lock, Extend or Release
// returns), and on a background goroutine for master events. It must not
// block and must be safe for concurrent use: hand the event to a channel or
// update atomic counters, never do I/O inline. The Event, including its
// Votes, belongs to the observer once passed.
type Observer interface {
	Observe(Event)
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventAcquire ends a Lock, TryLock or Await call (obtained or not).
	// Wait is the whole call, retries and waits for a release included;
	// Duration is its last attempt (the fan-out); Attempts counts the
	// attempts; Votes are the last attempt's.
	EventAcquire EventKind = iota + 1
	// EventExtend ends an Extend call, or a renewal of WithAutoExtend's
	// shared extender (Context is then context.Background(); Duration is
	// the renewal pipelines' round trip).
	EventExtend
	// EventRelease ends a Release call. Held is the time since the lock was
	// obtained.
	EventRelease
	// EventLost reports a lock known lost while held, once per lock,
	// whenever the client learns it: an Extend, a renewal of the shared
	// extender or a Release found a majority no longer holding its token
	// (or Extend found its validity run out), or the watch of Done or Do
	// saw its validity run out. An Extend refused because the lock was
	// released is not a loss. Held is the time since it was obtained.
	EventLost
	// EventMasterDown reports a master marked down (Err is why).
	EventMasterDown
	// EventMasterUp reports a master back up; Duration is how long it was down.
	EventMasterUp
	// EventMasterQuarantined reports a master voting no because it restarted
	// recently (Config.RestartQuarantine); Duration is the quarantine left.
	EventMasterQuarantined
)

var eventKindNames = [...]string{"", "acquire", "extend", "release", "lost", "master_down", "master_up", "master_quarantined"}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && k != 0 {
		return eventKindNames[k]
	}
	return "unknown"
}

// Outcome classifies how a lock operation ended.
type Outcome uint8

// Outcomes.
const (
	// OutcomeOK: obtained, extended or released by a quorum.
	OutcomeOK Outcome = iota
	// OutcomeBusy: not obtained, and at least one master said the resource
	// is held by someone else.
	OutcomeBusy
	// OutcomeNoQuorum: neither a quorum of yes nor (for extend and release)
	// a quorum of no: masters failed or did not answer in time.
	OutcomeNoQuorum
	// OutcomeNotHeld: extend or release found the token gone on a majority,
	// or the lock's validity ran out (EventLost).
	OutcomeNotHeld
	// OutcomeCanceled: the caller's context ended first.
	OutcomeCanceled
	// OutcomeError: any other error (bad argument, closed client…).
	OutcomeError
)

var outcomeNames = [...]string{"ok", "busy", "no_quorum", "not_held", "canceled", "error"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Event is one observation. Fields that do not apply to its Kind are zero.
type Event struct {
	Kind     EventKind
	Resource string // lock events
	Group    int    // index of the quorum group in Config (the new group in migration mode)
	Master   string // master events: the address, password redacted

	Duration time.Duration // see the kinds
	Wait     time.Duration // EventAcquire: from the call to its outcome, retries included
	Attempts int           // EventAcquire: attempts made
	Held     time.Duration // EventRelease, EventLost: since the lock was obtained

	Quorum  int    // votes needed (per group)
	Votes   []Vote // lock events: each master's vote in the last round, group order (both groups in migration mode: the previous group's after the new one's)
	Outcome Outcome
	Err     error // the error returned to the caller (master events: the cause); nil on success

	// Context is the caller's context of a lock operation (to parent a
	// tracing span); nil for master events.
	Context context.Context
}

// observe sends ev to the configured observer, if any. Callers check
// c.obs != nil first so that building the event costs nothing without one.
func (c *Client) observe(ev Event) { c.obs.Observe(ev) }

// outcomeOf classifies err (the error returned to the caller).
func outcomeOf(err error) Outcome {
	var qe *QuorumError
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case errors.Is(err, ErrNotHeld) || errors.Is(err, ErrLockLost):
		return OutcomeNotHeld
	case errors.As(err, &qe):
		if qe.Op == opAcquire.String() && qe.Busy() {
			return OutcomeBusy
		}
		return OutcomeNoQuorum
	}
	return OutcomeError
}

// trace collects what an observer wants to know about an operation: its
// attempts and its last fan-out. It is nil (and costs nothing) when no
// observer is configured.
type trace struct {
	attempts int
	dur      time.Duration // the last attempt's
	votes    []Vote        // the last attempt's
}

// begin starts an attempt.
func (t *trace) begin() {
	if t != nil {
		t.attempts++
		t.votes = t.votes[:0]
	}
}

// record adds a fan-out's votes to the current attempt.
func (t *trace) record(g *group, r *result) {
	if t == nil {
		return
	}
	for i, nd := range g.nodes {
		rp := r.slots[i].reply
		t.votes = append(t.votes, Vote{Addr: nd.addr.redacted, Answered: rp.done, OK: rp.ok && rp.err == nil, Err: rp.err})
	}
}

// lockEvent builds the event of a lock operation.
func (t *trace) lockEvent(ctx context.Context, kind EventKind, g *group, resource string, err error) Event {
	return Event{Context: ctx, Kind: kind, Resource: resource, Group: g.index, Quorum: g.quorum, Duration: t.dur,
		Attempts: t.attempts, Votes: t.votes, Outcome: outcomeOf(err), Err: err}
}
