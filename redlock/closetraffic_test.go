package redlock

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCloseUnderTrafficAnswersEveryCall: Close while many goroutines lock and
// release: every call is answered (ErrClosed) once Close returns, none
// waits for NodeTimeout, whatever the moment Close comes.
func TestCloseUnderTrafficAnswersEveryCall(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.NodeTimeout = time.Minute // a call nobody answers would hang this long
	cfg.PoolSize = 2
	cfg.Logger = quietLogger
	for round := range 30 {
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 200; i++ {
					l, err := c.TryLock(context.Background(), fmt.Sprint("c:", w, ":", i), time.Minute)
					if err != nil {
						if c.closed.Load() {
							return
						}
						continue
					}
					_ = l.Release(context.Background())
				}
			}()
		}
		close(start)
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		_ = c.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: callers still waiting 30 s after Close (a call queued after the writer stopped is never answered)", round)
		}
	}
}
