package redlock

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// voteLog keeps every acquire event (its votes) for checking afterwards.
type voteLog struct {
	mu  sync.Mutex
	evs []Event
}

func (v *voteLog) Observe(ev Event) {
	if ev.Kind != EventAcquire {
		return
	}
	v.mu.Lock()
	v.evs = append(v.evs, ev)
	v.mu.Unlock()
}

// TestPooledFanoutNoCrossTalk: fan-outs are pooled (quorum.go), and masters
// answer after their caller moved on — after an early quorum or early
// failure, after NodeTimeout (SIGSTOP), after the caller's ctx ended — while
// other operations reuse the pools. Every vote must belong to its own
// request:
//
//   - busy:* resources are held by a foreign token on masters A and B: A
//     and B never vote yes on them, and no busy resource is ever obtained
//     (two holders);
//   - free:* resources are fresh names nobody holds: no master votes a
//     clean no on them;
//   - shared:* resources are contended by two clients: never two holders
//     within validity;
//
// and no reply ever reaches a fan-out of another use (strayReplies). The
// run is bounded in time and count; it asserts outcomes, not speed.
func TestPooledFanoutNoCrossTalk(t *testing.T) {
	f := fleet(t, 1, 3)
	a, b, cm := f[0][0], f[0][1], f[0][2]
	const busy = 8
	for i := range busy {
		for _, s := range []*redisproc.Server{a, b} {
			if _, err := s.Do(context.Background(), "SET", fmt.Sprintf("busy:%d", i), "foreign", "PX", "600000"); err != nil {
				t.Fatal(err)
			}
		}
	}
	logs := []*voteLog{{}, {}}
	var clients []*Client
	for i := range 2 {
		cfg := clusterConfig(f)
		cfg.NodeTimeout = 150 * time.Millisecond
		cfg.ReconnectInterval = 20 * time.Millisecond
		cfg.PoolSize = 1 + i // one writer per master, and two
		cfg.Observer = logs[i]
		clients = append(clients, newClient(t, cfg))
	}
	stray0, made0 := strayReplies.Load(), fansMade.Load()

	// Faults, one after the other until the workers stop: replies late but
	// within NodeTimeout (CLIENT PAUSE shorter than it), replies never read
	// (SIGSTOP longer than it: the writer answers with a timeout after the
	// caller has left).
	stopFaults := untilStopped(func(round int) bool {
		switch round % 3 {
		case 0:
			pauseCommands(t, a, 60*time.Millisecond)
		case 1:
			pauseCommands(t, cm, 60*time.Millisecond)
		case 2:
			if err := cm.Pause(); err != nil {
				t.Error(err)
				return false
			}
			time.Sleep(400 * time.Millisecond)
			if err := cm.Resume(); err != nil {
				t.Error(err)
				return false
			}
		}
		time.Sleep(100 * time.Millisecond)
		return true
	})

	var (
		holders  sync.Map // shared resource → *Lock holding it
		overlaps atomic.Int64
		ops      atomic.Int64
	)
	runWorkers(clients, 16, 2000, 4*time.Second, func(c *Client, w, i int) {
		ops.Add(1)
		switch i % 4 {
		case 0: // busy: must never be obtained
			if l, err := c.TryLock(context.Background(), fmt.Sprintf("busy:%d", i%busy), 5*time.Second); err == nil {
				t.Errorf("busy:%d obtained while A and B hold it (two holders)", i%busy)
				_ = l.Release(context.Background())
			}
		case 1: // free, a fresh name
			if l, err := c.TryLock(context.Background(), fmt.Sprintf("free:%d:%d", w, i), 5*time.Second); err == nil {
				_ = l.Release(context.Background())
			}
		case 2: // free, with a context that ends before the answers
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*100*time.Microsecond)
			if l, err := c.TryLock(ctx, fmt.Sprintf("free:%d:%d", w, i), 5*time.Second); err == nil {
				_ = l.Release(context.Background())
			}
			cancel()
		case 3: // contended by both clients
			res := fmt.Sprintf("shared:%d", i%4)
			l, err := c.TryLock(context.Background(), res, 2*time.Second)
			if err != nil {
				return
			}
			// A holder leaves the map before it releases: a valid
			// lock still in it is a second holder's.
			if prev, loaded := holders.Swap(res, l); loaded && prev.(*Lock).Valid() && l.Valid() {
				overlaps.Add(1)
				t.Errorf("%s held twice within validity", res)
			}
			time.Sleep(time.Millisecond)
			holders.CompareAndDelete(res, l)
			_ = l.Release(context.Background())
		}
	})
	stopFaults()
	_ = cm.Resume()

	var checked int
	for _, lg := range logs {
		lg.mu.Lock()
		for _, ev := range lg.evs {
			checked++
			for mi, v := range ev.Votes {
				no := v.Answered && !v.OK && v.Err == nil
				switch {
				case len(ev.Resource) > 5 && ev.Resource[:5] == "busy:" && mi < 2 && v.OK:
					t.Errorf("%s: master %s voted yes on a key it holds for another token (a vote of another request)", ev.Resource, v.Addr)
				case len(ev.Resource) > 5 && ev.Resource[:5] == "free:" && no:
					t.Errorf("%s: master %s voted no on a fresh key (a vote of another request)", ev.Resource, v.Addr)
				}
			}
			if ev.Outcome == OutcomeOK && ev.Resource[:5] == "busy:" {
				t.Errorf("%s obtained: %+v", ev.Resource, ev.Votes)
			}
		}
		lg.mu.Unlock()
	}
	stray, made := strayReplies.Load()-stray0, fansMade.Load()-made0
	t.Logf("%d operations, %d acquire events checked, %d fan-outs allocated (the rest reused), %d stray replies, %d overlaps",
		ops.Load(), checked, made, stray, overlaps.Load())
	if stray != 0 {
		t.Errorf("%d replies reached a fan-out of another use", stray)
	}
	if made >= ops.Load() {
		t.Errorf("%d fan-outs allocated for %d operations: the pool was not exercised", made, ops.Load())
	}
	if checked < 100 {
		t.Errorf("only %d acquisitions checked", checked)
	}
	for i := range busy {
		for _, s := range []*redisproc.Server{a, b} {
			if got := keyOn(t, s, fmt.Sprintf("busy:%d", i)); got != "foreign" {
				t.Errorf("%s: busy:%d = %q, want the foreign holder's token", s.Addr(), i, got)
			}
		}
	}
}

// TestPooledFanoutHeldWhileMasterPaused: while a master is stopped
// (SIGSTOP, shorter than NodeTimeout), every operation returns at quorum
// and leaves its call waiting on that master; none of those fan-outs may be
// in the pool until the master has answered. Every fan the pool holds has
// no reference left and no unread answer; once the master resumes and
// answers late, its fan-outs come back to the pool, and the releases it ran
// after the SETs leave none of the keys.
func TestPooledFanoutHeldWhileMasterPaused(t *testing.T) {
	f := fleet(t, 1, 3)
	cfg := clusterConfig(f)
	cfg.PoolSize = 1
	cfg.NodeTimeout = 20 * time.Second // the late answers come after the resume, not after a timeout
	c := newClient(t, cfg)
	g := c.groups[0]
	ctx := context.Background()
	stray0 := strayReplies.Load()
	cycle := func(res string) {
		l, err := c.TryLock(ctx, res, 30*time.Second)
		if err != nil {
			t.Fatalf("TryLock %s: %v", res, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release %s: %v", res, err)
		}
	}
	// drainPool takes every fan the pool holds, checks it is free, and
	// returns how many there were (they are not put back).
	drainPool := func(when string) int {
		n := 0
		for {
			fn, _ := g.fans.Get().(*fan)
			if fn == nil {
				return n
			}
			n++
			if refs := fn.refs.Load(); refs != 0 || len(fn.out) != 0 {
				t.Errorf("%s: a pooled fan-out still has %d references and %d unread answers", when, refs, len(fn.out))
			}
		}
	}
	for i := range 10 {
		cycle(fmt.Sprint("warm:", i))
	}
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
	drainPool("before")
	const ops = 50
	for i := range ops {
		cycle(fmt.Sprint("late:", i))
	}
	if n := drainPool("paused"); n != 0 {
		t.Errorf("%d fan-outs in the pool while every one used since the pause waits for the stopped master", n)
	}
	before := c.MasterStats()[2].Commands
	if err := paused.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	// Its writer sends the queued SETs and releases once the first late
	// answer is read: 2 × ops commands.
	eventually(t, 15*time.Second, "the resumed master answered every queued command", func() bool {
		return c.MasterStats()[2].Commands-before >= 2*ops-1
	})
	eventually(t, 15*time.Second, "late-answered fan-outs back in the pool", func() bool {
		return drainPool("resumed") > 0
	})
	for i := range ops {
		if v := keyOn(t, paused, fmt.Sprint("late:", i)); v != "" {
			t.Errorf("late:%d still on the resumed master (%q): its release did not follow its SET", i, v)
		}
	}
	if s := strayReplies.Load() - stray0; s != 0 {
		t.Errorf("%d replies reached a fan-out of another use", s)
	}
}
