package redlockotel_test

import (
	"context"
	"fmt"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	redlockotel "github.com/quorumlock/quorumlock/metrics/otel"
	"github.com/quorumlock/quorumlock/redlock"
)

// Each Lock is a span, child of the caller's, with one event per master's
// vote; metrics go to the meter provider. Here an in-memory exporter and a
// manual reader stand in for a real pipeline.
func Example() {
	servers, err := redisproc.StartN(3, redisproc.Options{})
	if err != nil {
		panic(err)
	}
	defer redisproc.StopAll(servers)

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := redlockotel.New(tp, mp)
	if err != nil {
		panic(err)
	}
	client, err := redlock.New(redlock.Config{Servers: redisproc.Addrs(servers), Observer: obs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	obs.Attach(client)

	ctx, parent := tp.Tracer("app").Start(context.Background(), "monthly-report")
	lock, err := client.Lock(ctx, "report:2026-11", 10*time.Second)
	if err != nil {
		panic(err)
	}
	// Lock returns at quorum: the remaining master's vote may still be on its way.
	_ = lock.Release(ctx)
	parent.End()

	for _, s := range spans.GetSpans() {
		if s.Name == "redlock.Lock" {
			yes := 0
			for _, e := range s.Events {
				for _, a := range e.Attributes {
					if a.Key == "redlock.ok" && a.Value.AsBool() {
						yes++
					}
				}
			}
			fmt.Println(s.Name, "child of the caller:", s.Parent.SpanID() == parent.SpanContext().SpanID(),
				"vote events:", len(s.Events), "yes ≥ quorum:", yes >= 2)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "quorumlock.operations" {
					for _, dp := range d.DataPoints {
						op, _ := dp.Attributes.Value("redlock.op")
						outcome, _ := dp.Attributes.Value("redlock.outcome")
						fmt.Println(m.Name, op.AsString(), outcome.AsString(), dp.Value)
					}
				}
			case metricdata.Gauge[float64]:
				if m.Name == "quorumlock.masters.up" {
					fmt.Println(m.Name, d.DataPoints[0].Value)
				}
			}
		}
	}
	// Unordered output:
	// redlock.Lock child of the caller: true vote events: 3 yes ≥ quorum: true
	// quorumlock.operations acquire ok 1
	// quorumlock.operations release ok 1
	// quorumlock.masters.up 3
}
