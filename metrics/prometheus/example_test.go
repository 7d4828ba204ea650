package redlockprom_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	redlockprom "github.com/quorumlock/quorumlock/metrics/prometheus"
	"github.com/quorumlock/quorumlock/redlock"
)

// A collector observes the client's locks and reads its masters' statistics
// at each scrape. Here three redis-server processes on loopback stand in for
// the fleet; the registry would be served by promhttp.HandlerFor.
func Example() {
	servers, err := redisproc.StartN(3, redisproc.Options{})
	if err != nil {
		panic(err)
	}
	defer redisproc.StopAll(servers)

	col := redlockprom.New()
	client, err := redlock.New(redlock.Config{Servers: redisproc.Addrs(servers), Observer: col})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	col.Attach(client)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)

	ctx := context.Background()
	lock, err := client.Lock(ctx, "report:2026-11", 10*time.Second)
	if err != nil {
		panic(err)
	}
	_, err = client.TryLock(ctx, "report:2026-11", time.Second) // busy
	fmt.Println("second holder refused:", err != nil)
	if err := lock.Release(ctx); err != nil {
		panic(err)
	}

	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP quorumlock_acquires_total Lock/TryLock calls by outcome.
# TYPE quorumlock_acquires_total counter
quorumlock_acquires_total{outcome="busy"} 1
quorumlock_acquires_total{outcome="canceled"} 0
quorumlock_acquires_total{outcome="error"} 0
quorumlock_acquires_total{outcome="no_quorum"} 0
quorumlock_acquires_total{outcome="not_held"} 0
quorumlock_acquires_total{outcome="ok"} 1
# HELP quorumlock_busy_total Lock/TryLock calls that ended with the resource held by another holder.
# TYPE quorumlock_busy_total counter
quorumlock_busy_total 1
# HELP quorumlock_masters_up Masters not marked down.
# TYPE quorumlock_masters_up gauge
quorumlock_masters_up 3
`), "quorumlock_acquires_total", "quorumlock_busy_total", "quorumlock_masters_up")
	fmt.Println("metrics as expected:", err == nil)
	if err != nil {
		fmt.Println(err)
	}
	n, _ := testutil.GatherAndCount(reg, "quorumlock_hold_seconds", "quorumlock_master_up", "quorumlock_batching_factor")
	fmt.Println("series (1 hold histogram + 3 masters × 2):", n)
	// Output:
	// second holder refused: true
	// metrics as expected: true
	// series (1 hold histogram + 3 masters × 2): 7
}
