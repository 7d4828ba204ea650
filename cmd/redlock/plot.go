package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/quorumlock/quorumlock/bench/chart"
	"github.com/quorumlock/quorumlock/bench/latency"
)

// writeHistogram writes the latency histogram of the cycles to a PNG file.
// The x axis ends at the p99 so that a long tail does not squash the
// chart; slower cycles are counted in the last bar.
func writeHistogram(path string, h *latency.Histogram, r benchResult) error {
	upper := h.Quantile(0.99)
	unit, div := "ms", float64(time.Millisecond)
	if upper < 2*time.Millisecond {
		unit, div = "µs", float64(time.Microsecond)
	}
	var bars []chart.Bar
	for _, b := range h.Bins(60, upper) {
		bars = append(bars, chart.Bar{Lo: float64(b.Lo) / div, Hi: float64(b.Hi) / div, Count: float64(b.Count)})
	}
	o := chart.Options{
		Title:  fmt.Sprintf("lock+unlock latency: %s, %d goroutines", describe(r.Fleet.Addrs), r.Concurrency),
		XLabel: "latency of a lock+unlock cycle (" + unit + ")",
		YLabel: "cycles",
		Notes: []string{
			fmt.Sprintf("%d cycles in %.1fs: %.0f ops/s; p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
				r.Ops, r.ElapsedS, r.Throughput, fmtUs(r.Cycle.P50), fmtUs(r.Cycle.P90), fmtUs(r.Cycle.P99), fmtUs(r.Cycle.P999), fmtUs(r.Cycle.Max)),
			"cycles slower than the p99 are counted in the last bar",
		},
	}
	var buf bytes.Buffer
	if err := chart.Histogram(&buf, o, bars); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
