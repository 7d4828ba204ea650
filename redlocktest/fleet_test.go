package redlocktest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/redlocktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// kinds are the two Fleet implementations; every behavioural test runs on both.
var kinds = []struct {
	name  string
	start func(t *testing.T, groups, masters int) redlocktest.Fleet
}{
	{"processes", func(t *testing.T, g, m int) redlocktest.Fleet { return redlocktest.StartProcessesT(t, g, m) }},
	{"containers", func(t *testing.T, g, m int) redlocktest.Fleet { return redlocktest.StartT(t, g, m) }},
}

// ping sends PING on a fresh connection, bounded by d.
func ping(m redlocktest.Master, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t0 := time.Now()
	_, err := m.Do(ctx, "PING")
	return time.Since(t0), err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func mustDo(t *testing.T, m redlocktest.Master, args ...any) any {
	t.Helper()
	v, err := m.Do(t.Context(), args...)
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

func timed(t *testing.T, what string, fn func(context.Context) error) {
	t.Helper()
	t0 := time.Now()
	if err := fn(t.Context()); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s took %v", what, time.Since(t0).Round(time.Millisecond))
}

func TestFaults(t *testing.T) {
	t.Parallel() // container work is mostly waiting on the Docker daemon
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t0 := time.Now()
			f := k.start(t, 1, 3)
			t.Logf("1×3 fleet started in %v", time.Since(t0).Round(time.Millisecond))

			cfg := f.Config()
			if len(cfg.Servers) != 3 || cfg.Cluster != nil || !slices.Equal(cfg.Servers, f.Addrs()[0]) {
				t.Fatalf("Config() = %+v, want Servers = %v", cfg, f.Addrs()[0])
			}
			for i := range 3 {
				if _, err := ping(f.Master(0, i), time.Second); err != nil {
					t.Fatalf("master %d: %v", i, err)
				}
			}
			m := f.Master(0, 1)
			addr := m.Addr()

			t.Run("StopStart", func(t *testing.T) {
				mustDo(t, m, "SET", "k", "v")
				timed(t, "Stop", m.Stop)
				if _, err := ping(m, time.Second); err == nil {
					t.Fatal("PING answered after Stop")
				}
				timed(t, "Start", m.Start)
				if _, err := ping(m, time.Second); err != nil {
					t.Fatalf("PING after Start: %v", err)
				}
				if m.Addr() != addr {
					t.Fatalf("address changed across Stop/Start: %s → %s", addr, m.Addr())
				}
				if v := mustDo(t, m, "GET", "k"); v != nil {
					t.Fatalf("GET k after a crash = %v, want nil (no persistence)", v)
				}
			})

			t.Run("PauseUnpause", func(t *testing.T) {
				mustDo(t, m, "SET", "k", "v")
				timed(t, "Pause", m.Pause)
				took, err := ping(m, 300*time.Millisecond)
				if !isTimeout(err) {
					t.Fatalf("PING on a paused master: %v, want a timeout", err)
				}
				t.Logf("PING while paused: timed out after %v (%v)", took.Round(time.Millisecond), err)
				timed(t, "Unpause", m.Unpause)
				if _, err := ping(m, time.Second); err != nil {
					t.Fatalf("PING after Unpause: %v", err)
				}
				if v := mustDo(t, m, "GET", "k"); v != "v" {
					t.Fatalf("GET k after Unpause = %v, want v", v)
				}
			})

			t.Run("DisconnectReconnect", func(t *testing.T) {
				mustDo(t, m, "SET", "k", "v")
				// An established connection, as a lock client's pool has.
				est, err := net.DialTimeout("tcp", m.Addr(), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer est.Close()
				rd := bufio.NewReader(est)
				if _, err := est.Write([]byte("PING\r\n")); err != nil {
					t.Fatal(err)
				}
				if line, err := rd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
					t.Fatalf("PING on the established connection = %q, %v", line, err)
				}
				timed(t, "Disconnect", m.Disconnect)
				took, err := ping(m, 500*time.Millisecond)
				if err == nil {
					t.Fatal("a new connection answered PING after Disconnect")
				}
				t.Logf("new connection while disconnected: failed after %v (timeout=%v): %v", took.Round(time.Millisecond), isTimeout(err), err)
				t1 := time.Now()
				_ = est.SetDeadline(time.Now().Add(500 * time.Millisecond))
				_, _ = est.Write([]byte("PING\r\n"))
				line, err := rd.ReadString('\n')
				if err == nil {
					t.Fatalf("the established connection answered %q after Disconnect", line)
				}
				t.Logf("established connection while disconnected: failed after %v (timeout=%v): %v", time.Since(t1).Round(time.Millisecond), isTimeout(err), err)
				timed(t, "Reconnect", m.Reconnect)
				if m.Addr() != addr {
					t.Fatalf("address changed across Disconnect/Reconnect: %s → %s", addr, m.Addr())
				}
				if v := mustDo(t, m, "GET", "k"); v != "v" {
					t.Fatalf("GET k after Reconnect = %v, want v (the master kept running)", v)
				}
			})

			t.Run("Restart", func(t *testing.T) {
				mustDo(t, m, "SET", "k", "v", "PX", "60000")
				timed(t, "Restart(persist=true)", func(ctx context.Context) error { return m.Restart(ctx, true) })
				if v := mustDo(t, m, "GET", "k"); v != "v" {
					t.Fatalf("GET k after Restart(persist=true) = %v, want v", v)
				}
				if ttl := mustDo(t, m, "PTTL", "k").(int64); ttl <= 0 || ttl > 60000 {
					t.Fatalf("PTTL k after Restart(persist=true) = %d, want the TTL kept", ttl)
				}
				timed(t, "Restart(persist=false)", func(ctx context.Context) error { return m.Restart(ctx, false) })
				if v := mustDo(t, m, "GET", "k"); v != nil {
					t.Fatalf("GET k after Restart(persist=false) = %v, want nil", v)
				}
				// The snapshot of the persisted restart must not come back
				// after a later crash either.
				mustDo(t, m, "SET", "k", "v")
				if err := m.Restart(t.Context(), true); err != nil {
					t.Fatal(err)
				}
				if err := m.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := m.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				if v := mustDo(t, m, "GET", "k"); v != nil {
					t.Fatalf("GET k after a persisted restart then a crash = %v, want nil", v)
				}
			})

			t.Run("StopEndsFaults", func(t *testing.T) {
				// A crash ends a pause and a partition: Start brings back a
				// reachable master.
				if err := m.Disconnect(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := m.Pause(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := m.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := m.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				if _, err := ping(m, time.Second); err != nil {
					t.Fatalf("PING after Stop/Start of a paused, disconnected master: %v", err)
				}
			})

			t.Run("StateErrors", func(t *testing.T) {
				if err := m.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
				for name, fn := range map[string]func(context.Context) error{
					"Pause":                 m.Pause,
					"Disconnect":            m.Disconnect,
					"Restart(persist=true)": func(ctx context.Context) error { return m.Restart(ctx, true) },
				} {
					if err := fn(t.Context()); err == nil {
						t.Errorf("%s on a stopped master: no error", name)
					} else if !strings.Contains(err.Error(), m.Addr()) {
						t.Errorf("%s: error %q does not name the master's address", name, err)
					}
				}
				if err := m.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
			})

			// The other masters were never touched.
			for _, i := range []int{0, 2} {
				if _, err := ping(f.Master(0, i), time.Second); err != nil {
					t.Fatalf("master %d: %v", i, err)
				}
			}
		})
	}
}

func TestClusterConfig(t *testing.T) {
	t.Parallel() // container work is mostly waiting on the Docker daemon
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t0 := time.Now()
			f := k.start(t, 3, 5)
			t.Logf("3×5 fleet started in %v", time.Since(t0).Round(time.Millisecond))
			cfg := f.Config()
			if cfg.Servers != nil || len(cfg.Cluster) != 3 {
				t.Fatalf("Config() = %+v, want 3 Cluster groups", cfg)
			}
			if m := f.ByAddr("127.0.0.1:1"); m != nil {
				t.Fatalf("ByAddr of an unknown address = %v, want nil", m)
			}
			seen := map[string]bool{}
			for g, group := range cfg.Cluster {
				if len(group) != 5 {
					t.Fatalf("group %d has %d masters, want 5", g, len(group))
				}
				for i, addr := range group {
					if seen[addr] {
						t.Fatalf("address %s appears twice", addr)
					}
					seen[addr] = true
					if got := f.Master(g, i).Addr(); got != addr {
						t.Fatalf("Master(%d, %d).Addr() = %s, Config says %s", g, i, got, addr)
					}
					if got := f.ByAddr(addr); got != f.Master(g, i) {
						t.Fatalf("ByAddr(%s) = %v, want Master(%d, %d)", addr, got, g, i)
					}
					if _, err := ping(f.Master(g, i), time.Second); err != nil {
						t.Fatalf("%s: %v", addr, err)
					}
				}
			}
		})
	}
}

func TestContainerCloseRemovesEverything(t *testing.T) {
	t.Parallel() // container work is mostly waiting on the Docker daemon
	f := redlocktest.StartT(t, 1, 2)
	api, err := testcontainers.NewDockerClientWithOpts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	filters := client.Filters{}.Add("label", redlocktest.LabelFleet+"="+f.ID())
	count := func() (containers, networks int) {
		cs, err := api.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := api.NetworkList(t.Context(), client.NetworkListOptions{Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		return len(cs.Items), len(ns.Items)
	}
	if c, n := count(); c != 2 || n != 1 {
		t.Fatalf("before Close: %d containers and %d networks labelled %s=%s, want 2 and 1", c, n, redlocktest.LabelFleet, f.ID())
	}
	t0 := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %v", time.Since(t0).Round(time.Millisecond))
	if c, n := count(); c != 0 || n != 0 {
		t.Fatalf("after Close: %d containers and %d networks left", c, n)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestProcessCloseStopsEverything(t *testing.T) {
	f, err := redlocktest.StartProcesses(t.Context(), 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	// A partitioned master holds a control connection: Close must end it too.
	if err := f.Master(0, 0).Disconnect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, group := range f.Addrs() {
		for _, addr := range group {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				t.Fatalf("%s still accepts connections after Close", addr)
			}
		}
	}
}

func TestBadShape(t *testing.T) {
	for _, tc := range []struct{ groups, masters int }{{0, 3}, {1, 0}, {-1, 1}} {
		if _, err := redlocktest.StartProcesses(t.Context(), tc.groups, tc.masters); err == nil {
			t.Errorf("StartProcesses(%d, %d): no error", tc.groups, tc.masters)
		}
		if _, err := redlocktest.Start(t.Context(), tc.groups, tc.masters); err == nil {
			t.Errorf("Start(%d, %d): no error", tc.groups, tc.masters)
		}
	}
}

// TestContainerFleetReapsLeftovers: a fleet left by a process that is gone
// (a test killed by -timeout runs no cleanup) is removed, containers and
// network, when the next container fleet starts; a fleet whose process is
// alive (this one) is kept.
func TestContainerFleetReapsLeftovers(t *testing.T) {
	// Not parallel: a container fleet started by another test while the
	// leftover is still being created would reap it half-made (a fleet
	// whose owner is gone is never being created outside this test).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _, _ := strings.Cut(redlocktest.OwnerID, "/")
	leftover, err := redlocktest.Start(t.Context(), 1, 1, redlocktest.WithOwner(fmt.Sprintf("%s/%d", host, gone.Process.Pid)))
	if err != nil {
		if errors.Is(err, redlocktest.ErrDockerUnavailable) && os.Getenv("CI") != "true" {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leftover.Close() }) // its containers are gone by then: only the Docker client is released
	kept := redlocktest.StartT(t, 1, 1)

	api, err := testcontainers.NewDockerClientWithOpts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	count := func(id string) (containers, networks int) {
		filters := client.Filters{}.Add("label", redlocktest.LabelFleet+"="+id)
		cs, err := api.ContainerList(t.Context(), client.ContainerListOptions{All: true, Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := api.NetworkList(t.Context(), client.NetworkListOptions{Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		return len(cs.Items), len(ns.Items)
	}
	if c, n := count(leftover.ID()); c != 0 || n != 0 {
		t.Errorf("the leftover fleet of dead process %d: %d containers and %d networks remain, want none", gone.Process.Pid, c, n)
	}
	if c, n := count(kept.ID()); c != 1 || n != 1 {
		t.Errorf("the fleet of this live process: %d containers and %d networks, want 1 and 1", c, n)
	}
	if _, err := ping(kept.Master(0, 0), 10*time.Second); err != nil {
		t.Errorf("the kept fleet's master does not answer: %v", err)
	}
}

// TestConcurrentFaultCalls: the fault methods of one master may be called
// from several goroutines at once (Master's contract): they run one after
// the other, never hang, fail only with an error naming the master, and
// leave a master that Start, Unpause and Reconnect bring back to serve.
func TestConcurrentFaultCalls(t *testing.T) {
	f := redlocktest.StartProcessesT(t, 1, 1)
	m := f.Master(0, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	faults := []func(context.Context) error{m.Pause, m.Unpause, m.Stop, m.Start, m.Disconnect, m.Reconnect}
	errs := make(chan error, 4*12)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 12; i++ {
				if err := faults[(g*5+i*7)%len(faults)](ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("concurrent fault calls did not finish within 2 minutes")
		}
	}
	close(errs)
	for err := range errs {
		if !strings.Contains(err.Error(), m.Name()) {
			t.Errorf("error does not name the master %s: %v", m.Name(), err)
		}
	}
	for _, fix := range []func(context.Context) error{m.Start, m.Unpause, m.Reconnect} {
		if err := fix(ctx); err != nil {
			t.Fatalf("bringing the master back: %v", err)
		}
	}
	if _, err := ping(m, 5*time.Second); err != nil {
		t.Fatalf("after the concurrent faults the master does not answer: %v", err)
	}
	mustDo(t, m, "SET", "k", "v")
	if v := mustDo(t, m, "GET", "k"); v != "v" {
		t.Fatalf("GET k = %v", v)
	}
}
