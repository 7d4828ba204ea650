package safety

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/redlocktest"
)

// Fault is one kind of fault a schedule injects into a master and heals.
type Fault struct {
	Name   string
	Inject func(ctx context.Context, m redlocktest.Master) error
	// Heal ends the fault; nil when Inject is a complete event (a restart).
	Heal func(ctx context.Context, m redlocktest.Master) error
	// Hold is how long the fault lasts before Heal.
	Hold time.Duration
	// Gap is the healthy time between two faults.
	Gap time.Duration
	// Hit is how many masters of each group a cycle hits at once; 0 means
	// Minority(n). (A semaphore of k permits tolerates only N − q failed
	// masters: see redlock.SemaphoreQuorum.)
	Hit int
}

// Kill crashes masters (SIGKILL) and starts them again, empty, after down.
// For safety down must be at least the longest TTL: this is the "delayed
// restart" the Redlock analysis requires of masters without persistence.
func Kill(down time.Duration) Fault {
	return Fault{Name: fmt.Sprintf("kill, restart empty after %v", down),
		Inject: func(ctx context.Context, m redlocktest.Master) error { return m.Stop(ctx) },
		Heal:   func(ctx context.Context, m redlocktest.Master) error { return m.Start(ctx) },
		Hold:   down, Gap: 300 * time.Millisecond}
}

// Pause freezes masters for d.
func Pause(d time.Duration) Fault {
	return Fault{Name: fmt.Sprintf("pause %v", d),
		Inject: func(ctx context.Context, m redlocktest.Master) error { return m.Pause(ctx) },
		Heal:   func(ctx context.Context, m redlocktest.Master) error { return m.Unpause(ctx) },
		Hold:   d, Gap: 300 * time.Millisecond}
}

// Partition cuts masters off the network for d.
func Partition(d time.Duration) Fault {
	return Fault{Name: fmt.Sprintf("partition %v", d),
		Inject: func(ctx context.Context, m redlocktest.Master) error { return m.Disconnect(ctx) },
		Heal:   func(ctx context.Context, m redlocktest.Master) error { return m.Reconnect(ctx) },
		Hold:   d, Gap: 300 * time.Millisecond}
}

// RestartPersistent restarts masters at once, keeping every acknowledged
// write (appendfsync always).
func RestartPersistent() Fault {
	return Fault{Name: "restart with AOF always",
		Inject: func(ctx context.Context, m redlocktest.Master) error { return m.Restart(ctx, true) },
		Gap:    300 * time.Millisecond}
}

// Event is one fault injected into one master.
type Event struct {
	At     time.Time
	Master string
	Err    error
}

// Cycle is one round of a schedule: the masters hit at once and how long
// the fault operations took.
type Cycle struct {
	At         time.Time
	Masters    []string
	InjectTook time.Duration
	HealTook   time.Duration
}

// Schedule is what a fault schedule did: RunMinority's cycles, or
// RandomFaults' windows.
type Schedule struct {
	Cycles  []Cycle
	Windows []Window
	Events  []Event
	Errors  []error
}

// Log renders the schedule relative to t0, e.g.
// "+0.4s g0m1 g1m2 g2m0 (inject 0.23s, heal 0.45s)".
func (s Schedule) Log(t0 time.Time) string {
	var b strings.Builder
	for _, c := range s.Cycles {
		fmt.Fprintf(&b, "\n  +%.1fs %s (inject %.2fs", c.At.Sub(t0).Seconds(), strings.Join(c.Masters, " "), c.InjectTook.Seconds())
		if c.HealTook > 0 {
			fmt.Fprintf(&b, ", heal %.2fs", c.HealTook.Seconds())
		}
		b.WriteString(")")
	}
	return b.String()
}

// Minority returns how many masters of a group of n a fault may hit while a
// quorum stays: (n−1)/2.
func Minority(n int) int { return (n - 1) / 2 }

// RunMinority hits a minority of every group of f (fault.Hit masters when
// set) with fault, over and over,
// until the deadline: in each cycle every group loses a different rotating
// minority at the same time, the fault lasts fault.Hold, then every master
// is healed and the fleet stays healthy for fault.Gap. A cycle only starts if
// it can heal before the deadline; when ctx ends, what is faulted is healed.
func RunMinority(ctx context.Context, f redlocktest.Fleet, fault Fault, deadline time.Time) Schedule {
	var s Schedule
	var mu sync.Mutex
	groups, per := f.Groups(), f.MastersPerGroup()
	k := Minority(per)
	if fault.Hit > 0 {
		k = min(fault.Hit, per)
	}
	if k == 0 {
		return s
	}
	// A cycle's fault operations take time too (a container start takes
	// hundreds of milliseconds): budget for them.
	const opBudget = 800 * time.Millisecond
	for cycle := 0; ctx.Err() == nil; cycle++ {
		if time.Now().Add(fault.Hold + opBudget).After(deadline) {
			break
		}
		var hit []redlocktest.Master
		for g := range groups {
			for j := range k {
				hit = append(hit, f.Master(g, (cycle+g+j)%per))
			}
		}
		cyc := Cycle{At: time.Now()}
		for _, m := range hit {
			cyc.Masters = append(cyc.Masters, m.Name())
		}
		each(hit, func(m redlocktest.Master) {
			err := fault.Inject(context.WithoutCancel(ctx), m)
			mu.Lock()
			s.Events = append(s.Events, Event{At: cyc.At, Master: m.Name(), Err: err})
			if err != nil {
				s.Errors = append(s.Errors, fmt.Errorf("%s %s: %w", fault.Name, m.Name(), err))
			}
			mu.Unlock()
		})
		cyc.InjectTook = time.Since(cyc.At)
		if fault.Heal != nil {
			select {
			case <-time.After(fault.Hold):
			case <-ctx.Done():
			}
			t0 := time.Now()
			each(hit, func(m redlocktest.Master) {
				if err := fault.Heal(context.WithoutCancel(ctx), m); err != nil {
					mu.Lock()
					s.Errors = append(s.Errors, fmt.Errorf("heal %s after %s: %w", m.Name(), fault.Name, err))
					mu.Unlock()
				}
			})
			cyc.HealTook = time.Since(t0)
		}
		s.Cycles = append(s.Cycles, cyc)
		select {
		case <-time.After(fault.Gap):
		case <-ctx.Done():
		}
	}
	return s
}

// HealAll ends every fault on every master of f (a no-op for a master that
// is healthy): start what is stopped, unpause, reconnect.
func HealAll(ctx context.Context, f redlocktest.Fleet) error {
	var all []redlocktest.Master
	for g := range f.Groups() {
		for i := range f.MastersPerGroup() {
			all = append(all, f.Master(g, i))
		}
	}
	var mu sync.Mutex
	var errs []error
	each(all, func(m redlocktest.Master) {
		err := errors.Join(m.Unpause(ctx), m.Reconnect(ctx), m.Start(ctx))
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	return errors.Join(errs...)
}

func each(ms []redlocktest.Master, fn func(redlocktest.Master)) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() { fn(m) })
	}
	wg.Wait()
}
