package redlock

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestNoScriptResendKeepsOrder: a master that does not know the RWMutex
// scripts (SCRIPT FLUSH) gets a reader's RLock and its release in one
// pipeline — the RLock returned at quorum from the two others while this
// master's writer waited for it. The RLock's EVALSHA fails with NOSCRIPT
// and the release runs; sending the RLock again as EVAL would apply it
// after its own release and leave a share that nobody holds on that master
// for the whole TTL. It must not: the master ends with no share, and the
// script is loaded for the next use.
func TestNoScriptResendKeepsOrder(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = 20 * time.Second // nothing expires in a queue: the pause decides the batching
	c := newClient(t, cfg)
	ctx := context.Background()
	x := f[0][2]
	rx := raw(t, x)
	g := c.groups[0]
	nx := g.nodes[2]
	for round := range 3 {
		res := fmt.Sprintf("noscript-%d", round)
		_, h := c.route(res)
		w := nx.writers[0]
		if len(nx.writers) > 1 {
			w = nx.writers[(h>>32)%uint64(len(nx.writers))]
		}
		// x knows the release's script but not the RLock's (as after a
		// release ran once, and a script not loaded at connect).
		if _, err := x.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
		if _, err := x.Do(ctx, "SCRIPT", "LOAD", runlockScript.src); err != nil {
			t.Fatal(err)
		}
		if _, err := x.Do(ctx, "CLIENT", "PAUSE", "1500", "ALL"); err != nil {
			t.Fatal(err)
		}
		// Occupy the resource's writer on x: it sends this and waits for
		// the paused master, so what comes next queues behind it.
		out := make(chan reply, 1)
		q := request{op: opExists, key: res, hash: h, timeout: cfg.NodeTimeout}
		busy := q.call(2, &cmdArgs{key: res}, time.Now().Add(q.timeout), out)
		nx.submit(&busy, h, false)
		eventually(t, 10*time.Second, "the writer took the occupying command", w.empty)

		l, err := c.RWMutex(res).RLock(ctx, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-out:
		case <-time.After(40 * time.Second):
			t.Fatal("the paused master did not answer the occupying command")
		}
		barrier(t, c, res)
		if _, ok := zscore(t, rx, res+":rw:readers", l.Token()); ok {
			t.Fatalf("round %d: the released reader's share is on %s: its RLock was sent again after its release", round, x.Addr())
		}
		if !scriptExists(t, x, rlockScript) {
			t.Errorf("round %d: the RLock script was not loaded for the next use", round)
		}
	}
}
