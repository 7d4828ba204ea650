package redlockprom_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	redlockprom "github.com/quorumlock/quorumlock/metrics/prometheus"
	"github.com/quorumlock/quorumlock/redlock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// value returns the value of the metric name whose labels include want.
func value(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return metricValue(m)
		}
	}
	t.Fatalf("no metric %s%v", name, want)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestCollectorFaults(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	col := redlockprom.New()
	client, err := redlock.New(redlock.Config{Servers: redisproc.Addrs(servers), Observer: col, NodeTimeout: time.Second,
		ReconnectInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	col.Attach(client)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	ctx := context.Background()

	// A lock lost behind its holder's back.
	l, err := client.Lock(ctx, "lost", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if _, err := s.Do(ctx, "DEL", "lost"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Extend(ctx, 10*time.Second); !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Extend: %v", err)
	}
	if got := value(t, reg, "quorumlock_lost_total", nil); got != 1 {
		t.Fatalf("lost_total %v", got)
	}
	if got := value(t, reg, "quorumlock_extends_total", map[string]string{"outcome": "not_held"}); got != 1 {
		t.Fatalf("extends_total{not_held} %v", got)
	}

	// A master killed: marked down at its next command, counted, and up again after a restart.
	if err := servers[2].Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "quorumlock_masters_up", nil) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("masters_up never went to 2")
		}
		if l, err := client.TryLock(ctx, "probe", time.Second); err == nil {
			_ = l.Release(ctx)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := value(t, reg, "quorumlock_master_up", map[string]string{"master": servers[2].Addr()}); got != 0 {
		t.Fatalf("master_up of the killed master %v", got)
	}
	if got := value(t, reg, "quorumlock_master_events_total", map[string]string{"event": "master_down"}); got != 1 {
		t.Fatalf("master_down events %v", got)
	}
	if err := servers[2].Restart(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for value(t, reg, "quorumlock_masters_up", nil) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("masters_up never back to 3")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := value(t, reg, "quorumlock_master_events_total", map[string]string{"event": "master_up"}); got != 1 {
		t.Fatalf("master_up events %v", got)
	}
	if got := value(t, reg, "quorumlock_batching_factor", map[string]string{"master": servers[0].Addr()}); got < 1 {
		t.Fatalf("batching factor %v, want ≥ 1", got)
	}
}
