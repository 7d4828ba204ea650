package redlock

import (
	"math/rand/v2"
	"time"
)

// RetryStrategy decides whether Lock tries again after a failed attempt and
// how long it waits first. It must be safe for concurrent use: one strategy
// serves every Lock call of a Client.
type RetryStrategy interface {
	// Backoff is called after failed attempt number retry (1 for the first
	// attempt). It returns the delay before the next attempt, or ok=false to
	// stop.
	Backoff(retry int) (delay time.Duration, ok bool)
}

// RetryFunc adapts a function to RetryStrategy.
type RetryFunc func(retry int) (time.Duration, bool)

// Backoff calls f.
func (f RetryFunc) Backoff(retry int) (time.Duration, bool) { return f(retry) }

// LinearBackoff makes maxRetry further attempts, each after a delay drawn
// uniformly from [interval/2, 3×interval/2) — the jitter desynchronizes
// clients that compete for the same resource. This is the default strategy
// built from Config.MaxRetry and Config.RetryInterval.
func LinearBackoff(maxRetry int, interval time.Duration) RetryStrategy {
	return RetryFunc(func(retry int) (time.Duration, bool) {
		if retry > maxRetry {
			return 0, false
		}
		return jitter(interval), true
	})
}

// ExponentialBackoff makes maxRetry further attempts; the delay before retry
// n is drawn uniformly from [0, min(maxDelay, base×2^(n−1))) ("full
// jitter"), at least 1 ms.
func ExponentialBackoff(maxRetry int, base, maxDelay time.Duration) RetryStrategy {
	return RetryFunc(func(retry int) (time.Duration, bool) {
		if retry > maxRetry {
			return 0, false
		}
		d := base
		for i := 1; i < retry && d < maxDelay; i++ {
			d *= 2
		}
		d = min(d, maxDelay)
		if d <= time.Millisecond {
			return time.Millisecond, true
		}
		return time.Millisecond + rand.N(d-time.Millisecond), true
	})
}

// NoRetry makes Lock behave like TryLock.
func NoRetry() RetryStrategy {
	return RetryFunc(func(int) (time.Duration, bool) { return 0, false })
}

func jitter(interval time.Duration) time.Duration {
	if interval <= 1 {
		return interval
	}
	return interval/2 + rand.N(interval)
}
