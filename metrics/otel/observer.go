// Package redlockotel reports quorumlock's lock-level events through
// OpenTelemetry: a span per Lock/TryLock, Extend and Release call (child of
// the caller's span) with an event per master's vote, and metrics.
//
// It lives in its own Go module so that the redlock package does not depend
// on OpenTelemetry.
//
//	obs, err := redlockotel.New(otel.GetTracerProvider(), otel.GetMeterProvider())
//	client, err := redlock.New(redlock.Config{Servers: addrs, Observer: obs})
//	obs.Attach(client) // masters up, batching factor
//
// Spans: "redlock.Lock" (Lock and TryLock), "redlock.Extend",
// "redlock.Release", timed from the call's start to its outcome, with
// attributes redlock.resource, redlock.group, redlock.quorum,
// redlock.attempts, redlock.outcome, and one "redlock.vote" event per master
// (redlock.master, redlock.answered, redlock.ok, error.message). A lost lock
// adds a "redlock.lost" span.
//
// Metrics: quorumlock.acquire.duration and quorumlock.acquire.wait
// (histograms, s, by redlock.outcome), quorumlock.hold (histogram, s),
// quorumlock.operations (counter by redlock.op and redlock.outcome),
// quorumlock.lost (counter), quorumlock.master.events (counter by
// redlock.event), and, once attached, quorumlock.masters.up and
// quorumlock.master.batching (gauges).
package redlockotel

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/quorumlock/quorumlock/redlock"
)

const scope = "github.com/quorumlock/quorumlock/metrics/otel"

var outcomes = []redlock.Outcome{redlock.OutcomeOK, redlock.OutcomeBusy, redlock.OutcomeNoQuorum,
	redlock.OutcomeNotHeld, redlock.OutcomeCanceled, redlock.OutcomeError}

// Observer is a redlock.Observer that records spans and metrics. Create it
// with New; it is safe for concurrent use.
type Observer struct {
	tracer trace.Tracer
	client atomic.Pointer[redlock.Client]

	acquireDur, acquireWait, hold, opDur metric.Float64Histogram
	ops, lost, masterEvents              metric.Int64Counter

	outcomeAttrs []metric.MeasurementOption    // by Outcome
	opAttrs      [4][]metric.MeasurementOption // by op (acquire, extend, release) then Outcome
	eventAttrs   map[redlock.EventKind]metric.MeasurementOption
}

// New returns an Observer recording spans with tp and metrics with mp.
// Either may be a no-op provider.
func New(tp trace.TracerProvider, mp metric.MeterProvider) (*Observer, error) {
	o := &Observer{tracer: tp.Tracer(scope)}
	m := mp.Meter(scope)
	var err error
	hist := func(name, desc string) metric.Float64Histogram {
		if err != nil {
			return nil
		}
		var h metric.Float64Histogram
		h, err = m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc))
		return h
	}
	count := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	o.acquireDur = hist("quorumlock.acquire.duration", "Duration of the last attempt (one fan-out) of each Lock/TryLock call.")
	o.acquireWait = hist("quorumlock.acquire.wait", "Duration of each Lock/TryLock call, retries included.")
	o.hold = hist("quorumlock.hold", "Time from acquisition to Release.")
	o.opDur = hist("quorumlock.operation.duration", "Duration of Extend and Release calls.")
	o.ops = count("quorumlock.operations", "Lock operations by op and outcome.")
	o.lost = count("quorumlock.lost", "Locks known lost while held.")
	o.masterEvents = count("quorumlock.master.events", "Master state changes (master_down, master_up, master_quarantined).")
	if err == nil {
		var up, batching metric.Float64ObservableGauge
		up, err = m.Float64ObservableGauge("quorumlock.masters.up", metric.WithDescription("Masters not marked down."))
		if err == nil {
			batching, err = m.Float64ObservableGauge("quorumlock.master.batching", metric.WithDescription("Commands per pipeline sent to each master since start."))
		}
		if err == nil {
			_, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
				c := o.client.Load()
				if c == nil {
					return nil
				}
				n := 0
				for _, st := range c.MasterStats() {
					if st.Up {
						n++
					}
					if st.Pipelines > 0 {
						ob.ObserveFloat64(batching, float64(st.Commands)/float64(st.Pipelines), metric.WithAttributes(
							attribute.String("redlock.master", st.Addr), attribute.Int("redlock.group", st.Group)))
					}
				}
				ob.ObserveFloat64(up, float64(n))
				return nil
			}, up, batching)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redlockotel: %w", err)
	}
	for _, oc := range outcomes {
		o.outcomeAttrs = append(o.outcomeAttrs, metric.WithAttributeSet(attribute.NewSet(attribute.String("redlock.outcome", oc.String()))))
	}
	for i, op := range []string{"", "acquire", "extend", "release"} {
		for _, oc := range outcomes {
			o.opAttrs[i] = append(o.opAttrs[i], metric.WithAttributeSet(attribute.NewSet(
				attribute.String("redlock.op", op), attribute.String("redlock.outcome", oc.String()))))
		}
	}
	o.eventAttrs = map[redlock.EventKind]metric.MeasurementOption{}
	for _, k := range []redlock.EventKind{redlock.EventMasterDown, redlock.EventMasterUp, redlock.EventMasterQuarantined} {
		o.eventAttrs[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("redlock.event", k.String())))
	}
	return o, nil
}

// Attach makes the observable gauges (masters up, batching) read c's
// MasterStats. Call it once the client exists.
func (o *Observer) Attach(c *redlock.Client) { o.client.Store(c) }

// Observe implements redlock.Observer. It records the span and the metrics
// and returns; exporting is the SDK's business (use a batching span
// processor so that nothing blocks here).
func (o *Observer) Observe(ev redlock.Event) {
	ctx := ev.Context
	if ctx == nil {
		ctx = context.Background()
	}
	oc := int(ev.Outcome)
	if oc >= len(outcomes) {
		oc = int(redlock.OutcomeError)
	}
	switch ev.Kind {
	case redlock.EventAcquire:
		o.acquireDur.Record(ctx, ev.Duration.Seconds(), o.outcomeAttrs[oc])
		o.acquireWait.Record(ctx, ev.Wait.Seconds(), o.outcomeAttrs[oc])
		o.ops.Add(ctx, 1, o.opAttrs[1][oc])
		o.span(ctx, "redlock.Lock", ev, ev.Wait)
	case redlock.EventExtend:
		o.opDur.Record(ctx, ev.Duration.Seconds(), o.opAttrs[2][oc])
		o.ops.Add(ctx, 1, o.opAttrs[2][oc])
		o.span(ctx, "redlock.Extend", ev, ev.Duration)
	case redlock.EventRelease:
		o.opDur.Record(ctx, ev.Duration.Seconds(), o.opAttrs[3][oc])
		o.ops.Add(ctx, 1, o.opAttrs[3][oc])
		o.hold.Record(ctx, ev.Held.Seconds())
		o.span(ctx, "redlock.Release", ev, ev.Duration)
	case redlock.EventLost:
		o.lost.Add(ctx, 1)
		o.span(ctx, "redlock.lost", ev, 0)
	case redlock.EventMasterDown, redlock.EventMasterUp, redlock.EventMasterQuarantined:
		o.masterEvents.Add(ctx, 1, o.eventAttrs[ev.Kind])
	}
}

// span records a finished span of length d ending now.
func (o *Observer) span(ctx context.Context, name string, ev redlock.Event, d time.Duration) {
	end := time.Now()
	_, sp := o.tracer.Start(ctx, name, trace.WithTimestamp(end.Add(-d)), trace.WithSpanKind(trace.SpanKindClient))
	if !sp.IsRecording() {
		sp.End(trace.WithTimestamp(end))
		return
	}
	sp.SetAttributes(
		attribute.String("redlock.resource", ev.Resource),
		attribute.Int("redlock.group", ev.Group),
		attribute.Int("redlock.quorum", ev.Quorum),
		attribute.String("redlock.outcome", ev.Outcome.String()),
	)
	if ev.Attempts > 0 {
		sp.SetAttributes(attribute.Int("redlock.attempts", ev.Attempts))
	}
	if ev.Held > 0 {
		sp.SetAttributes(attribute.Float64("redlock.held_s", ev.Held.Seconds()))
	}
	for _, v := range ev.Votes {
		attrs := []attribute.KeyValue{
			attribute.String("redlock.master", v.Addr),
			attribute.Bool("redlock.answered", v.Answered),
			attribute.Bool("redlock.ok", v.OK),
		}
		if v.Err != nil {
			attrs = append(attrs, attribute.String("error.message", v.Err.Error()))
		}
		sp.AddEvent("redlock.vote", trace.WithTimestamp(end), trace.WithAttributes(attrs...))
	}
	if ev.Outcome != redlock.OutcomeOK || ev.Kind == redlock.EventLost {
		msg := ev.Outcome.String()
		if ev.Err != nil {
			msg = ev.Err.Error()
		}
		sp.SetStatus(codes.Error, msg)
	}
	sp.End(trace.WithTimestamp(end))
}
