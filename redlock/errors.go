package redlock

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotObtained means the lock was not acquired: the resource is busy,
	// or no quorum of the group could be reached. The error that matches it
	// is a *QuorumError (errors.As) that says which — Busy, Unavailable or
	// ValidityRanOut — and, when the caller's context ended, it also matches
	// ctx.Err() (errors.Is).
	ErrNotObtained = errors.New("redlock: lock not obtained")

	// ErrNotHeld means Release or Extend found that the lock is no longer
	// held by this token (it expired, was released, or another holder has
	// it now).
	ErrNotHeld = errors.New("redlock: lock not held")

	// ErrClosed is returned by every operation on a closed Client.
	ErrClosed = errors.New("redlock: client closed")

	// ErrLockLost is the cause of the context that Do passes to fn when the
	// lock is lost (its validity ran out or an extension failed).
	ErrLockLost = errors.New("redlock: lock lost")

	// errNodeDown is the vote of a master that is marked down.
	errNodeDown = errors.New("master is down")
)

// Every error an operation returns is one line that names the operation and
// the resource once:
//
//	redlock: lock "report": not obtained: busy (1 of 3 masters said yes, 2 said no, 2 needed)
//	redlock: lock "report": not obtained: no quorum (0 of 3 masters said yes, 2 needed; failed: 10.0.0.1:6379: connection refused, 10.0.0.2:6379: i/o timeout); context deadline exceeded
//	redlock: release "report": not held (0 of 3 masters said yes, 3 said no, 2 needed)
//	redlock: extend "report": not held: released
//
// The sentinels (ErrNotObtained, ErrNotHeld, ErrClosed) and the caller's
// context error stay reachable with errors.Is, the *QuorumError with
// errors.As.

// InputError reports a bad argument to an operation (never ErrNotObtained).
type InputError struct {
	Arg    string // "resource", "ttl", "token" or "fn"
	Reason string
}

func (e *InputError) Error() string { return "redlock: invalid " + e.Arg + ": " + e.Reason }

// Vote is one master's answer to one operation.
type Vote struct {
	Addr     string // the master's address as written in Config, password redacted
	Answered bool   // false when the outcome was decided before this master answered
	OK       bool   // the master said yes (set, deleted, extended, or has the key)
	Err      error  // a transport or server error (a *MasterError); nil for a plain yes or no
}

func (v Vote) String() string {
	switch {
	case v.Err != nil:
		var me *MasterError
		if errors.As(v.Err, &me) {
			return v.Addr + ": " + me.Err.Error()
		}
		return v.Addr + ": " + v.Err.Error()
	case !v.Answered:
		return v.Addr + ": not awaited"
	case v.OK:
		return v.Addr + ": yes"
	default:
		return v.Addr + ": no"
	}
}

// QuorumError describes an operation that did not reach a quorum: each
// master's vote, so an operator can see which masters failed and how, and
// why the operation failed (Busy, Unavailable, ValidityRanOut). It is the
// error of Lock, TryLock, Release, Extend and IsLocked whenever masters
// were asked; get it with errors.As. It also matches the operation's
// sentinel (ErrNotObtained for Lock and TryLock, ErrNotHeld when a majority
// said the token does not hold the key) and the caller's context error
// with errors.Is.
type QuorumError struct {
	Op       string // "lock", "release", "extend" or "islocked"
	Resource string
	Quorum   int // votes needed
	// Votes has one vote per master of the group, in Config order. A master
	// cut off by NodeTimeout or by the caller's context carries that error;
	// one not awaited (the outcome was decided first) has Answered false
	// and no error.
	Votes []Vote

	// ValidityRanOut is set when a quorum said yes but the operation took
	// so long that no validity was left (ttl − elapsed − drift ≤ 0): the
	// TTL is too short for the fleet's round trips. Took is how long it took.
	ValidityRanOut bool
	Took           time.Duration

	sentinel error  // ErrNotObtained, ErrNotHeld or nil
	cause    error  // the caller's context error, ErrClosed, or nil
	why      string // overrides the outcome word (see reason)

	// Migration mode (Config.Previous), a moved resource: the other
	// group's votes, said after this group's ("previous" or "new").
	other     *QuorumError
	otherName string
}

// Yes counts the masters that said yes.
func (e *QuorumError) Yes() int {
	n := 0
	for _, v := range e.Votes {
		if v.OK {
			n++
		}
	}
	return n
}

// No counts the masters that answered no (not held, busy, not ours).
func (e *QuorumError) No() int {
	n := 0
	for _, v := range e.Votes {
		if v.Answered && !v.OK && v.Err == nil {
			n++
		}
	}
	return n
}

// Failed returns the masters that answered with an error (rather than yes or no).
func (e *QuorumError) Failed() []Vote {
	var out []Vote
	for _, v := range e.Votes {
		if v.Err != nil {
			out = append(out, v)
		}
	}
	return out
}

// Unavailable reports whether the failures alone decided the outcome: so
// many masters failed (down, timed out, refused) that a quorum could not be
// reached whatever the others said. Retrying will not help until masters
// are back; an operator should look at Failed.
func (e *QuorumError) Unavailable() bool {
	return !e.ValidityRanOut && len(e.Failed()) > len(e.Votes)-e.Quorum
}

// Busy reports whether masters answering "no" decided the outcome: for
// Lock and TryLock, another token holds the resource on them (the lock is
// taken; try again later). For Release and Extend the same votes mean the
// token no longer holds the key (the error then matches ErrNotHeld). It is
// false when the operation was Unavailable or its validity ran out.
func (e *QuorumError) Busy() bool {
	return !e.ValidityRanOut && !e.Unavailable() && e.No() > 0
}

// Is makes errors.Is(err, ErrNotObtained) (or ErrNotHeld) true for the
// error of an operation that failed that way.
func (e *QuorumError) Is(target error) bool { return e.sentinel != nil && target == e.sentinel }

// Unwrap returns the caller's context error (or ErrClosed) that ended the
// operation, if any.
func (e *QuorumError) Unwrap() error { return e.cause }

func (e *QuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redlock: %s %q: ", e.Op, e.Resource)
	switch {
	case errors.Is(e.sentinel, ErrNotObtained):
		b.WriteString("not obtained: ")
		b.WriteString(e.reason())
	case errors.Is(e.sentinel, ErrNotHeld):
		b.WriteString("not held")
	default:
		b.WriteString(e.reason())
	}
	b.WriteString(" (")
	e.writeVotes(&b)
	b.WriteString(")")
	if e.other != nil {
		fmt.Fprintf(&b, "; on the %s group: ", e.otherName)
		e.other.writeVotes(&b)
	}
	if e.cause != nil {
		b.WriteString("; ")
		b.WriteString(causeText(e.cause))
	}
	return b.String()
}

// outcome is what Error says after the operation and the resource: the
// outcome and the votes ("busy (1 of 3 masters said yes, …)").
func (e *QuorumError) outcome() string {
	return strings.TrimPrefix(strings.TrimPrefix(e.Error(), fmt.Sprintf("redlock: %s %q: ", e.Op, e.Resource)), "not obtained: ")
}

// reason is the one-word outcome.
func (e *QuorumError) reason() string {
	switch {
	case e.why != "":
		return e.why
	case e.ValidityRanOut:
		return "validity ran out"
	case e.Unavailable():
		return "no quorum"
	case e.Busy() && errors.Is(e.sentinel, ErrNotObtained):
		return "busy"
	}
	return "failed"
}

func (e *QuorumError) writeVotes(b *strings.Builder) {
	if e.ValidityRanOut {
		fmt.Fprintf(b, "%d of %s said yes, but it took %v: ttl − elapsed − drift left nothing", e.Yes(), masters(len(e.Votes)), e.Took.Round(time.Microsecond))
	} else {
		fmt.Fprintf(b, "%d of %s said yes", e.Yes(), masters(len(e.Votes)))
		if no := e.No(); no > 0 {
			fmt.Fprintf(b, ", %d said no", no)
		}
		waiting := 0
		for _, v := range e.Votes {
			if v.Err == nil && !v.Answered {
				waiting++
			}
		}
		if waiting > 0 {
			fmt.Fprintf(b, ", %d not awaited", waiting)
		}
		fmt.Fprintf(b, ", %d needed", e.Quorum)
	}
	if failed := e.Failed(); len(failed) > 0 {
		b.WriteString("; failed: ")
		for i, v := range failed {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(oneLine(v.String()))
		}
	}
}

// causeText is the message of the error that ended an operation, without
// a second "redlock: " prefix (ErrClosed reads "client closed").
func causeText(err error) string {
	return oneLine(strings.TrimPrefix(err.Error(), "redlock: "))
}

// lostError is the cause of Do's context when an extension found the lock
// no longer held: ErrLockLost and the extension's error, said in one line.
type lostError struct{ err error }

func (e *lostError) Error() string   { return "redlock: lock lost: " + causeText(e.err) }
func (e *lostError) Unwrap() []error { return []error{ErrLockLost, e.err} }

// masters is "1 master" or "n masters".
func masters(n int) string {
	if n == 1 {
		return "1 master"
	}
	return fmt.Sprintf("%d masters", n)
}

// opError is the one-line error of an operation that failed before or
// without asking masters (an ended context before the first attempt,
// Extend of a released lock). It matches its sentinel and cause with
// errors.Is.
type opError struct {
	op, resource string
	sentinel     error // ErrNotObtained or ErrNotHeld
	why          string
	cause        error // ctx.Err(), ErrClosed or nil
}

func (e *opError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redlock: %s %q: ", e.op, e.resource)
	if errors.Is(e.sentinel, ErrNotHeld) {
		b.WriteString("not held")
	} else {
		b.WriteString("not obtained")
	}
	if e.why != "" {
		b.WriteString(": ")
		b.WriteString(e.why)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(causeText(e.cause))
	}
	return b.String()
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.cause}
}

// withCause returns err (an acquisition's error) ended by cause (the
// caller's context error, or ErrClosed): still one line, matching both.
func withCause(err, cause error) error {
	switch e := err.(type) { //nolint:errorlint // the error an attempt returned itself: its own cause is set
	case *QuorumError:
		if e.cause == nil {
			cp := *e
			cp.cause = cause
			return &cp
		}
	case *opError:
		if e.cause == nil {
			cp := *e
			cp.cause = cause
			return &cp
		}
	case *lineError:
		return &lineError{msg: e.msg + "; " + causeText(cause), errs: append(slices.Clone(e.errs), cause)}
	}
	return &lineError{msg: oneLine(err.Error()) + "; " + causeText(cause), errs: []error{err, cause}}
}

// lineError is several errors said in one line: errors.Is and errors.As
// reach each of them (errors.Join's one-line form).
type lineError struct {
	msg  string
	errs []error
}

func (e *lineError) Error() string   { return e.msg }
func (e *lineError) Unwrap() []error { return e.errs }

// inLine says errs one after the other ("; " between them), each without a
// second "redlock: " prefix.
func inLine(errs []error) string {
	var b strings.Builder
	for i, err := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(causeText(err))
	}
	return b.String()
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// MasterError is a transport or server error of one master. (The package
// says "master" for a Redis server of the fleet; "node" appears only in
// NodeTimeout, named after the Redlock paper's per-node timeout.)
type MasterError struct {
	Addr string // redacted address
	Err  error

	permanent bool // classified when the raw error was at hand (see IsPermanent)
}

func (e *MasterError) Error() string { return "redlock: master " + e.Addr + ": " + e.Err.Error() }
func (e *MasterError) Unwrap() error { return e.Err }

// IsPermanent reports whether err (from New with StrictStart, Ping, or a
// master's vote) is a misconfiguration that retrying cannot fix:
//
//   - authentication refused: WRONGPASS, NOAUTH, an AUTH the server does not
//     expect, NOPERM (the ACL user lacks a command the client needs);
//   - a database index the server does not have ("ERR DB index is out of
//     range");
//   - TLS refused: the server's certificate is not trusted or does not match
//     its name, the server refused the client's certificate, or TLS was
//     spoken to a plaintext port.
//
// Everything else — connection refused, timeouts, a master that is down or
// loading, DNS failures — is transient: the client keeps retrying it in the
// background. A master that fails permanently is also retried (the
// operator may fix the server rather than the client) but New with
// StrictStart fails at once, and Logger gets an Error record.
//
// For a *QuorumError (the error of an operation) it is false: ask each
// Vote.Err.
func IsPermanent(err error) bool {
	switch e := err.(type) { //nolint:errorlint // one node of the tree: classifyPermanent walks the rest
	case nil, *QuorumError:
		return false
	case *MasterError:
		if e.permanent {
			return true
		}
	case *downError:
		if e.permanent {
			return true
		}
	}
	return classifyPermanent(err)
}

// classifyPermanent looks at a raw error (before redaction) and everything
// it wraps.
func classifyPermanent(err error) bool {
	if err == nil {
		return false
	}
	if permanentOne(err) {
		return true
	}
	switch u := err.(type) { //nolint:errorlint // walks the tree one node at a time
	case interface{ Unwrap() error }:
		return IsPermanent(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if IsPermanent(e) {
				return true
			}
		}
	}
	return false
}

// permanentPrefixes are the server replies that no retry can change.
var permanentPrefixes = []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR DB index", "ERR invalid DB index",
	"ERR AUTH", "ERR invalid password", "ERR Client sent AUTH"}

// permanentOne classifies err itself, not what it wraps.
func permanentOne(err error) bool {
	switch e := err.(type) { //nolint:errorlint // this node only: classifyPermanent walks the tree
	case redis.Error:
		msg := e.Error()
		for _, p := range permanentPrefixes {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	case x509.UnknownAuthorityError, *x509.UnknownAuthorityError, x509.HostnameError, *x509.HostnameError,
		x509.CertificateInvalidError, *x509.CertificateInvalidError, *tls.CertificateVerificationError,
		tls.RecordHeaderError, *tls.RecordHeaderError:
		return true
	case tls.AlertError, *tls.AlertError:
		// The server refused the handshake: a bad, unknown or missing client
		// certificate, or no common protocol version.
		return true
	}
	if _, wraps := err.(interface{ Unwrap() error }); wraps {
		return false
	}
	if _, wraps := err.(interface{ Unwrap() []error }); wraps {
		return false
	}
	// Some TLS alerts reach us as plain text (net.OpError wraps a private
	// type, or the redacted copy of an error).
	msg := err.Error()
	for _, p := range []string{"tls: bad certificate", "tls: certificate required", "tls: unknown certificate authority",
		"x509: ", "WRONGPASS", "NOAUTH", "NOPERM", "ERR DB index is out of range"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
