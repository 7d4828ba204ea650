package redlocktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/redlock"
)

// backend is what differs between a container and a process: the primitive
// operations. master keeps the state machine on top of them, once for both.
type backend interface {
	addr() string
	// kill ends the process at once (SIGKILL semantics).
	kill(ctx context.Context) error
	// start starts the stopped master and waits until it answers PING.
	start(ctx context.Context) error
	freeze(ctx context.Context) error
	thaw(ctx context.Context) error
	// cut partitions the running master from every client.
	cut(ctx context.Context) error
	// heal ends a partition; running tells whether the master still runs
	// (after a kill there is nothing left to reconnect but bookkeeping).
	heal(ctx context.Context, running bool) error
	// wipe deletes the snapshot a persisted restart left behind, so the next
	// start is empty. Called while stopped.
	wipe(ctx context.Context) error
}

// master implements Master for both fleets. Fault methods are serialized by
// mu, so calling them concurrently is safe (they run one after the other).
type master struct {
	name    string
	b       backend
	timeout time.Duration // readiness bound after a Reconnect

	mu           sync.Mutex
	stopped      bool
	paused       bool
	disconnected bool
	snapshot     bool // a SAVEd dump.rdb exists: the next plain start must wipe it
}

var _ Master = (*master)(nil)

func (m *master) Name() string { return m.name }
func (m *master) Addr() string { return m.b.addr() }

func (m *master) errorf(op string, err error) error {
	return fmt.Errorf("redlocktest: %s %s (%s): %w", op, m.name, m.b.addr(), err)
}

// Stop kills the master. It also ends a Pause or a Disconnect: the master
// comes back reachable at the next Start.
func (m *master) Stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopLocked(ctx)
}

func (m *master) stopLocked(ctx context.Context) error {
	if m.stopped {
		return nil
	}
	if err := m.b.kill(ctx); err != nil {
		return m.errorf("stop", err)
	}
	m.stopped, m.paused = true, false
	if m.disconnected {
		if err := m.b.heal(ctx, false); err != nil {
			return m.errorf("stop: reconnect", err)
		}
		m.disconnected = false
	}
	return nil
}

// Start starts a stopped master, empty, and waits until it answers PING.
func (m *master) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.startLocked(ctx, false)
}

func (m *master) startLocked(ctx context.Context, keepSnapshot bool) error {
	if !m.stopped {
		return nil
	}
	if m.snapshot && !keepSnapshot {
		if err := m.b.wipe(ctx); err != nil {
			return m.errorf("start: wipe the snapshot", err)
		}
		m.snapshot = false
	}
	if err := m.b.start(ctx); err != nil {
		return m.errorf("start", err)
	}
	m.stopped = false
	return nil
}

// Pause freezes the master until Unpause.
func (m *master) Pause(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.paused:
		return nil
	case m.stopped:
		return m.errorf("pause", errStopped)
	}
	if err := m.b.freeze(ctx); err != nil {
		return m.errorf("pause", err)
	}
	m.paused = true
	return nil
}

// Unpause resumes a paused master.
func (m *master) Unpause(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.paused {
		return nil
	}
	if err := m.b.thaw(ctx); err != nil {
		return m.errorf("unpause", err)
	}
	m.paused = false
	return nil
}

// Disconnect partitions the running, unpaused master from every client.
func (m *master) Disconnect(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.disconnected:
		return nil
	case m.stopped:
		return m.errorf("disconnect", errStopped)
	case m.paused:
		return m.errorf("disconnect", errPaused)
	}
	if err := m.b.cut(ctx); err != nil {
		return m.errorf("disconnect", err)
	}
	m.disconnected = true
	return nil
}

// Reconnect ends a Disconnect and waits until the master answers PING.
func (m *master) Reconnect(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.disconnected {
		return nil
	}
	if err := m.b.heal(ctx, true); err != nil {
		return m.errorf("reconnect", err)
	}
	m.disconnected = false
	if m.paused {
		return nil // reachable again, but it cannot answer PING until Unpause
	}
	if err := waitPing(ctx, m.b.addr(), m.timeout); err != nil {
		return m.errorf("reconnect", err)
	}
	return nil
}

// Restart kills the master and starts it again; with persist, every write
// acknowledged before the call survives.
func (m *master) Restart(ctx context.Context, persist bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if persist {
		switch {
		case m.stopped:
			return m.errorf("restart with persistence", errStopped)
		case m.paused:
			return m.errorf("restart with persistence", errPaused)
		case m.disconnected:
			return m.errorf("restart with persistence", errDisconnected)
		}
		if err := persistNow(ctx, m.b.addr()); err != nil {
			return m.errorf("restart with persistence", err)
		}
		m.snapshot = true
	}
	if err := m.stopLocked(ctx); err != nil {
		return err
	}
	return m.startLocked(ctx, persist)
}

// Do sends one command on a fresh connection.
func (m *master) Do(ctx context.Context, args ...any) (any, error) {
	v, err := do(ctx, m.b.addr(), args...)
	if err != nil && !errors.Is(err, redis.Nil) {
		return v, fmt.Errorf("redlocktest: %v on %s (%s): %w", args, m.name, m.b.addr(), err)
	}
	return v, err
}

var (
	errStopped      = errors.New("the master is stopped")
	errPaused       = errors.New("the master is paused")
	errDisconnected = errors.New("the master is disconnected")
)

// fleet holds what both fleet kinds share: the masters, group by group.
type fleet struct {
	masters [][]*master
}

// Config returns a ready client configuration (Servers for one group,
// Cluster for several) with the masters' addresses.
func (f *fleet) Config() redlock.Config { return configOf(f.Addrs()) }

// Groups is the number of quorum groups.
func (f *fleet) Groups() int { return len(f.masters) }

// MastersPerGroup is the number of masters in each group.
func (f *fleet) MastersPerGroup() int { return len(f.masters[0]) }

// Master returns master i of group g, both counted from 0.
func (f *fleet) Master(g, i int) Master { return f.masters[g][i] }

// ByAddr returns the master whose Addr is addr, or nil.
func (f *fleet) ByAddr(addr string) Master {
	for _, group := range f.masters {
		for _, m := range group {
			if m.Addr() == addr {
				return m
			}
		}
	}
	return nil
}

// Addrs returns every master's "host:port", group by group.
func (f *fleet) Addrs() [][]string {
	out := make([][]string, len(f.masters))
	for g, group := range f.masters {
		out[g] = make([]string, len(group))
		for i, m := range group {
			out[g][i] = m.Addr()
		}
	}
	return out
}
