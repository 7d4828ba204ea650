package keymutex

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHandoffToQuitter forces the case where a key is handed to a waiter
// whose context has just ended: the waiter must pass the key on to the next
// waiter instead of losing it.
func TestHandoffToQuitter(t *testing.T) {
	m := New[string]()
	alice := NewOwner("alice")
	queued := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for m.Waiters("k") != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters not queued within 5 s", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	handoffs := 0
	for try := 0; try < 100 && handoffs < 3; try++ {
		l := m.MustLock(alice, "k")
		ctx, cancel := context.WithCancel(context.Background())
		quit := make(chan error, 1)
		go func() {
			ql, err := m.Await(ctx, NewOwner("quitter"), "k")
			if err == nil {
				err = m.Release(ql)
			}
			quit <- err
		}()
		queued(1)
		next := make(chan error, 1)
		go func() {
			nctx, ncancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ncancel()
			nl, err := m.Await(nctx, NewOwner("next"), "k")
			if err == nil {
				err = m.Release(nl)
			}
			next <- err
		}()
		queued(2)

		// Under m.mu, the quitter's context ends and the key is handed to
		// it (it is first in the queue), before it can look.
		m.mu.Lock()
		cancel()
		err := m.releaseLocked(l)
		m.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		switch err := <-quit; {
		case errors.Is(err, context.Canceled):
			handoffs++ // it gave up holding the key: it must have passed it on
		case err != nil:
			t.Fatal(err)
		}
		if err := <-next; err != nil {
			t.Fatalf("the key handed to a quitter was lost: %v", err)
		}
		if m.Holder("k") != nil {
			t.Fatal("key left held")
		}
	}
	if handoffs == 0 {
		t.Fatal("the quitter never gave up: the handoff path was not exercised")
	}
}
