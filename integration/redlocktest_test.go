package integration

import (
	"context"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlocktest"
)

// knownBug fails the test with the description of a bug that was found by
// this suite and fixed: its test now guards against the regression.
func knownBug(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("regression of a fixed bug: "+format, args...)
}

// TestFleetReconnectWhilePaused: the fault harness heals a master that was
// partitioned and then paused in any order (safety.HealAll unpauses first,
// but Master.Reconnect documents and implements Reconnect of a paused
// master: "reachable again, but it cannot answer PING until Unpause").
// Disconnect → Pause → Reconnect → Unpause must leave the master answering
// on its address, for both fleet kinds.
func TestFleetReconnectWhilePaused(t *testing.T) {
	for _, kind := range []string{"containers", "processes"} {
		t.Run(kind, func(t *testing.T) {
			var f redlocktest.Fleet
			if kind == "containers" {
				f = startContainers(t, 1, 1)
			} else {
				f = startProcesses(t, 1, 1)
			}
			m := f.Master(0, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := m.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			rerr := m.Reconnect(ctx)
			if err := m.Unpause(ctx); err != nil {
				t.Fatal(err)
			}
			var perr error
			deadline := time.Now().Add(slack)
			for time.Now().Before(deadline) {
				pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				_, perr = m.Do(pctx, "PING")
				pcancel()
				if perr == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The fault state machine must be consistent afterwards: a
			// Reconnect is a no-op and a new Disconnect really partitions.
			rerr2 := m.Reconnect(ctx)
			derr := m.Disconnect(ctx)
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, cut := m.Do(pctx, "PING")
			pcancel()
			herr := m.Reconnect(ctx)
			if rerr == nil && perr == nil && rerr2 == nil && derr == nil && cut != nil && herr == nil {
				return
			}
			msg := "Disconnect → Pause → Reconnect → Unpause: Reconnect: %v; PING after Unpause: %v; " +
				"Reconnect again: %v; Disconnect again: %v; PING while disconnected again: %v (want an error); Reconnect: %v"
			if kind == "processes" {
				knownBug(t, "redlocktest ProcessFleet: Reconnect of a paused, disconnected master runs CONFIG SET port "+
					"on a SIGSTOPped redis-server: it times out, leaves the master marked disconnected and its control "+
					"connection broken, so later Reconnects fail and a later Disconnect is a silent no-op. "+msg,
					rerr, perr, rerr2, derr, cut, herr)
			}
			t.Fatalf(msg, rerr, perr, rerr2, derr, cut, herr)
		})
	}
}
