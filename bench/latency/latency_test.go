package latency

import (
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1 << 40, 1<<62 + 12345} {
		i := bucket(v)
		if lo, hi := lowerBound(i), lowerBound(i+1); v < lo || v >= hi {
			t.Errorf("v=%d in bucket %d = [%d,%d)", v, i, lo, hi)
		}
	}
	for i := 1; i < numBuckets-1; i++ {
		if lowerBound(i) <= lowerBound(i-1) {
			t.Fatalf("bounds not increasing at %d", i)
		}
	}
}

func TestQuantilesMatchSorted(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(50_000 + r.ExpFloat64()*200_000)
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if d := float64(got-want) / float64(want); d > 0.02 || d < -0.02 {
			t.Errorf("q%v = %v, want ≈ %v", q, got, want)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
		t.Errorf("min/max = %v/%v, want %v/%v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
	}
	if c := h.CDF(); c[len(c)-1].Share != 1 {
		t.Errorf("CDF ends at %v", c[len(c)-1].Share)
	}
	var total uint64
	for _, b := range h.Bins(30, h.Quantile(0.999)) {
		total += b.Count
	}
	if total != h.Count() {
		t.Errorf("bins hold %d samples, want %d", total, h.Count())
	}
}

func TestConcurrentAndMerge(t *testing.T) {
	var a, b Histogram
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 1000; i++ {
				a.Record(time.Duration(i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	b.Record(time.Hour)
	b.Merge(&a)
	if b.Count() != 8001 || b.Max() != time.Hour || b.Min() != time.Microsecond {
		t.Fatalf("count=%d max=%v min=%v", b.Count(), b.Max(), b.Min())
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 || empty.Min() != 0 || empty.CDF() != nil {
		t.Fatal("empty histogram not zero")
	}
}
