package redlockotel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	redlockotel "github.com/quorumlock/quorumlock/metrics/otel"
	"github.com/quorumlock/quorumlock/redlock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSpansAndCounters(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	obs, err := redlockotel.New(tp, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	client, err := redlock.New(redlock.Config{Servers: redisproc.Addrs(servers), Observer: obs, NodeTimeout: time.Second,
		MaxRetry: 1, RetryInterval: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()

	l, err := client.Lock(ctx, "r", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Lock(ctx, "r", time.Second); !errors.Is(err, redlock.ErrNotObtained) {
		t.Fatalf("second Lock: %v", err)
	}
	for _, s := range servers {
		if _, err := s.Do(ctx, "DEL", "r"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Release(ctx); !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Release after DEL: %v", err)
	}

	var busy, lost, release int
	for _, s := range spans.GetSpans() {
		attrs := map[string]string{}
		for _, a := range s.Attributes {
			attrs[string(a.Key)] = a.Value.String()
		}
		switch {
		case s.Name == "redlock.Lock" && attrs["redlock.outcome"] == "busy":
			busy++
			if s.Status.Code != codes.Error || attrs["redlock.attempts"] != "2" || len(s.Events) != 3 {
				t.Errorf("busy span: status %v attrs %v events %d", s.Status, attrs, len(s.Events))
			}
		case s.Name == "redlock.lost":
			lost++
		case s.Name == "redlock.Release":
			release++
			if attrs["redlock.outcome"] != "not_held" || s.Status.Code != codes.Error {
				t.Errorf("release span: %v %v", attrs, s.Status)
			}
		}
	}
	if busy != 1 || lost != 1 || release != 1 {
		t.Fatalf("spans: %d busy Lock, %d lost, %d Release", busy, lost, release)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range d.DataPoints {
					got[m.Name] += dp.Value
				}
			}
			if d, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "quorumlock.acquire.wait" {
				for _, dp := range d.DataPoints {
					got[m.Name] += int64(dp.Count)
				}
			}
		}
	}
	if got["quorumlock.lost"] != 1 || got["quorumlock.operations"] != 3 || got["quorumlock.acquire.wait"] != 2 {
		t.Fatalf("metrics: %v", got)
	}
	_ = tp.Shutdown(ctx)
}
