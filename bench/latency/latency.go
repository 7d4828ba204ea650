// Package latency records durations in a log-linear histogram that is safe
// for concurrent use and cheap enough to sit in a benchmark's hot loop (one
// atomic add per sample, no allocation), and answers percentiles, the mean
// and the points of a CDF or a histogram.
//
// Values are kept with a relative precision of 1/subBuckets (under 1 %):
// plenty for latency percentiles, and the memory stays fixed (≈ 35 KiB)
// whatever the number of samples.
package latency

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits    = 7
	subBuckets = 1 << subBits // linear buckets per power of two
	maxExp     = 64 - subBits
	numBuckets = (maxExp + 1) * subBuckets
)

// Histogram is a concurrent log-linear histogram of durations. The zero
// value is ready to use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	max    atomic.Int64
	min    atomic.Int64 // stored as ^ns so that the zero value means "none"
}

// bucket returns the index of the bucket holding v nanoseconds.
func bucket(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - subBits // ≥ 1
	return e*subBuckets + int(v>>(e-1)) - subBuckets
}

// lowerBound is the smallest value of bucket i; upper is the next one's.
func lowerBound(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := i / subBuckets
	m := uint64(i%subBuckets) + subBuckets
	return m << (e - 1)
}

// Record adds one sample. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucket(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if int64(v) <= m || h.max.CompareAndSwap(m, int64(v)) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && int64(v) >= ^m) || h.min.CompareAndSwap(m, ^int64(v)) {
			break
		}
	}
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > 0 {
		for {
			cur := h.max.Load()
			if m <= cur || h.max.CompareAndSwap(cur, m) {
				break
			}
		}
	}
	if m := o.min.Load(); m != 0 {
		for {
			cur := h.min.Load()
			if (cur != 0 && ^m >= ^cur) || h.min.CompareAndSwap(cur, m) {
				break
			}
		}
	}
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest sample (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Min is the smallest sample (exact), 0 without samples.
func (h *Histogram) Min() time.Duration {
	m := h.min.Load()
	if m == 0 {
		return 0
	}
	return time.Duration(^m)
}

// Mean is the average sample (exact), 0 without samples.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1), e.g. 0.99 for p99, as the
// middle of the bucket that holds it, clamped to [Min, Max]. 0 without samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := lowerBound(i), lowerBound(i+1)
			v := time.Duration(lo + (hi-lo)/2)
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Point is one point of a CDF: the share of samples ≤ Value.
type Point struct {
	Value time.Duration
	Share float64
}

// CDF returns the cumulative distribution at each non-empty bucket's upper
// bound (clamped to Max).
func (h *Histogram) CDF() []Point {
	n := h.n.Load()
	if n == 0 {
		return nil
	}
	var out []Point
	var seen uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		seen += c
		out = append(out, Point{Value: min(time.Duration(lowerBound(i+1)), h.Max()), Share: float64(seen) / float64(n)})
	}
	return out
}

// Bin is one bar of a histogram: samples in [Lo, Hi).
type Bin struct {
	Lo, Hi time.Duration
	Count  uint64
}

// Bins regroups the samples into n equal-width bins from the minimum to
// the given upper bound (e.g. the p99.9, so that a long tail does not
// squash the chart); samples above it land in the last bin. n ≥ 1.
func (h *Histogram) Bins(n int, upper time.Duration) []Bin {
	if h.n.Load() == 0 || n < 1 {
		return nil
	}
	lo := h.Min()
	if upper <= lo {
		upper = lo + time.Microsecond
	}
	width := (upper - lo + time.Duration(n) - 1) / time.Duration(n)
	width = max(width, 1)
	bins := make([]Bin, n)
	for i := range bins {
		bins[i].Lo = lo + time.Duration(i)*width
		bins[i].Hi = bins[i].Lo + width
	}
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		mid := time.Duration(lowerBound(i) + (lowerBound(i+1)-lowerBound(i))/2)
		mid = min(max(mid, h.Min()), h.Max())
		j := int((mid - lo) / width)
		j = min(max(j, 0), n-1)
		bins[j].Count += c
	}
	return bins
}
