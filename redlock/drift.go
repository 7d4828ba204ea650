package redlock

import "time"

// The validity rule lives here, in one place: every Until the client sets
// comes from validUntil, and every release kept for a master lives keyLife.
//
// A command that sets a key's TTL (SET NX PX, or the extend script's
// PEXPIRE) reaches a master no earlier than the moment the operation
// started, so wherever it lands the key lives at least ttl from that start
// on the master's clock. Taking the drift allowance off gives a time the
// client's monotonic clock can trust: validUntil(start, ttl) is never later
// than any master's possible expiry of the key, whether the command landed at
// once, late, or only when a paused master resumed.

// clockDriftFloor is the constant part of the drift allowance.
const clockDriftFloor = 2 * time.Millisecond

// driftAllowance is the part of the TTL reserved for clock drift between the
// masters of a group: ttl × factor + clockDriftFloor (2 ms).
func driftAllowance(ttl time.Duration, factor float64) time.Duration {
	return time.Duration(float64(ttl)*factor) + clockDriftFloor
}

// validUntil is the end of the validity of a ttl that the operation started
// at start (monotonic clock) sent to the masters:
// start + ttl − (ttl × factor + 2 ms). It is the only source of Until.
func validUntil(start time.Time, ttl time.Duration, factor float64) time.Time {
	return start.Add(ttl - driftAllowance(ttl, factor))
}

// validity is how long a lock acquired with ttl, whose attempt took elapsed
// (measured on the monotonic clock), can be trusted:
// ttl − elapsed − (ttl × factor + 2 ms). The lock is held only if it is > 0.
// It is validUntil(start, ttl, factor) − (start + elapsed).
func validity(ttl, elapsed time.Duration, factor float64) time.Duration {
	return ttl - elapsed - driftAllowance(ttl, factor)
}

// keyLife is the longest a key given ttl (rounded up to Redis's
// milliseconds) may live on a master, counted from when that master applies
// the command, measured on the client's clock: ttl + the drift allowance
// (the master's clock may run slow). A release kept for a master that missed
// it must be kept at least this long counted from when the master answers
// again: a SET or PEXPIRE held by a paused master applies on resume, with a
// fresh TTL.
func keyLife(ttl time.Duration, factor float64) time.Duration {
	ms := time.Duration(ttlMillis(ttl)) * time.Millisecond
	return ms + driftAllowance(ms, factor)
}

// minTTL is the smallest TTL the drift allowance does not consume entirely,
// rounded up to Redis's millisecond resolution.
func minTTL(factor float64) time.Duration {
	// ttl − ttl×factor − 2ms > 0  ⇔  ttl > 2ms / (1 − factor)
	least := time.Duration(float64(clockDriftFloor)/(1-factor)) + 1
	return least.Truncate(time.Millisecond) + time.Millisecond
}
