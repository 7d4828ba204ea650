package redlock

import (
	"errors"
	"testing"
	"time"
)

// TestWriterQueueAfterCloseAnswered: a call that reaches a writer's queue
// after Close stopped the writer — a submit that read "not closed" just
// before Close — is answered with ErrClosed, not left unanswered until
// its deadline (its fan-out never back in the pool).
func TestWriterQueueAfterCloseAnswered(t *testing.T) {
	f := fleet(t, 1, 1)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = time.Minute
	c := newClient(t, cfg)
	nd := c.nodes[0]
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out := make(chan reply, 1)
	cl := &call{op: opExists, key: "k", args: &cmdArgs{key: "k"}, deadline: time.Now().Add(time.Minute), out: out}
	if err := nd.writers[0].push(cl); err != nil { // as submit does
		cl.fail(err)
	}
	select {
	case rp := <-out:
		if !errors.Is(rp.err, ErrClosed) {
			t.Errorf("answered %v, want ErrClosed", rp.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a call queued after the writer stopped is never answered")
	}
}
