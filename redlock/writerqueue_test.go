package redlock

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWriterQueueFullReleasesFollowSETs: one master is stopped
// while its only writer waits for a pipeline's answer; more operations than
// its queue holds leave their SETs and releases queued or refused there.
// Once it resumes, every SET it applied is followed by its release: no key
// is left, and the refused commands were counted.
func TestWriterQueueFullReleasesFollowSETs(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.PoolSize = 1
	cfg.NodeTimeout = 20 * time.Second // the stopped master's answers come after the resume
	cfg.ReconnectInterval = 20 * time.Millisecond
	c := newClient(t, cfg)
	ctx := context.Background()
	paused := f[0][2]
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = paused.Resume()
		}
	}()
	const ops = writerQueueLen + 200
	for i := range ops {
		res := fmt.Sprint("q:", i)
		l, err := c.TryLock(ctx, res, 60*time.Second)
		if err != nil {
			t.Fatalf("TryLock %s: %v", res, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release %s: %v", res, err)
		}
	}
	full := c.MasterStats()[2].QueueFull
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	t.Logf("%d commands refused with a full queue", full)
	if full == 0 {
		t.Errorf("the queue never filled")
	}
	eventually(t, 60*time.Second, "no key left on the resumed master", func() bool {
		v, err := paused.Do(ctx, "DBSIZE")
		return err == nil && strings.TrimPrefix(v, ":") == "0"
	})
}
