package redlock

import "time"

// driftAllowance is the part of the TTL reserved for clock drift between the
// masters of a group: ttl × factor + 2 ms.
func driftAllowance(ttl time.Duration, factor float64) time.Duration {
	return time.Duration(float64(ttl)*factor) + clockDriftFloor
}

// validity is how long a lock acquired with ttl, whose attempt took elapsed
// (measured on the monotonic clock), can be trusted:
// ttl − elapsed − (ttl × factor + 2 ms). The lock is held only if it is > 0.
func validity(ttl, elapsed time.Duration, factor float64) time.Duration {
	return ttl - elapsed - driftAllowance(ttl, factor)
}

// minTTL is the smallest TTL the drift allowance does not consume entirely,
// rounded up to Redis's millisecond resolution.
func minTTL(factor float64) time.Duration {
	// ttl − ttl×factor − 2ms > 0  ⇔  ttl > 2ms / (1 − factor)
	min := time.Duration(float64(clockDriftFloor)/(1-factor)) + 1
	return min.Truncate(time.Millisecond) + time.Millisecond
}
