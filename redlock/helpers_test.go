package redlock

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// fleet starts groups × masters redis-server processes.
func fleet(t testing.TB, groups, masters int) [][]*redisproc.Server {
	t.Helper()
	return fleetWith(t, groups, masters, redisproc.Options{})
}

// fleetWith is fleet with the servers' options (persistence, say).
func fleetWith(t testing.TB, groups, masters int, opts redisproc.Options) [][]*redisproc.Server {
	t.Helper()
	all := redisproc.StartT(t, groups*masters, opts)
	out := make([][]*redisproc.Server, groups)
	for g := range out {
		out[g] = all[g*masters : (g+1)*masters]
	}
	return out
}

// clusterConfig is a config for the fleet. Its NodeTimeout is generous:
// these tests run under the race detector on a shared machine, and a
// healthy master must never look down; fault tests set their own.
func clusterConfig(f [][]*redisproc.Server) Config {
	if len(f) == 1 {
		return Config{Servers: redisproc.Addrs(f[0]), NodeTimeout: time.Second}
	}
	cl := make([][]string, len(f))
	for i, g := range f {
		cl[i] = redisproc.Addrs(g)
	}
	return Config{Cluster: cl, NodeTimeout: time.Second}
}

// fencedConfig is clusterConfig with Fencing, for the fencing tests; with
// nodeTimeout > 0 (fault tests) a master that stops answering is given up
// after nodeTimeout and reconnected every 50 ms.
func fencedConfig(f [][]*redisproc.Server, nodeTimeout time.Duration) Config {
	cfg := clusterConfig(f)
	cfg.Fencing = true
	if nodeTimeout > 0 {
		cfg.NodeTimeout = nodeTimeout
		cfg.ReconnectInterval = 50 * time.Millisecond
	}
	return cfg
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newClient creates a client closed at the end of the test.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// keyOn reads key on one master directly ("" when absent).
func keyOn(t *testing.T, s *redisproc.Server, key string) string {
	t.Helper()
	return s.GetT(t, key)
}

// heldEverywhere waits until every master in masters holds l's key with
// its token. Lock returns at quorum, so a master it did not wait for may
// still be applying the SET; a test that faults a master and then expects
// the holder's release to reach a majority must first let the holder's
// SET land everywhere, or a competitor's SET NX can overtake it on the
// master that was late (that competitor then cleans up, leaving the
// holder with a bare majority).
func heldEverywhere(t *testing.T, masters []*redisproc.Server, l *Lock) {
	t.Helper()
	eventually(t, 30*time.Second, "the holder's key on every master", func() bool {
		for _, s := range masters {
			if s.GetT(t, l.key) != l.Token() {
				return false
			}
		}
		return true
	})
}

// runWorkers runs op from workers goroutines, worker w with
// clients[w%len(clients)], each up to maxOps times (i counts them) or until
// d has passed; it returns when every worker is done.
func runWorkers(clients []*Client, workers, maxOps int, d time.Duration, op func(c *Client, w, i int)) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		c := clients[w%len(clients)]
		wg.Go(func() {
			for i := 0; i < maxOps && time.Now().Before(deadline); i++ {
				op(c, w, i)
			}
		})
	}
	wg.Wait()
}

// untilStopped runs round(0), round(1), … on a goroutine of its own until
// round returns false or stop is called; stop waits for the round in
// progress to end.
func untilStopped(round func(i int) bool) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			if !round(i) {
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// aofAlways are the options of masters that keep their data across a
// restart: AOF, fsync at every write.
var aofAlways = redisproc.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}}

// minorityFault is one fault of a master, and what ends it.
type minorityFault struct {
	name     string
	do, undo func(t *testing.T, s *redisproc.Server)
}

// minorityFaults are the faults the fencing tests put one master at a time
// through: killed and restarted (with its data when it persists),
// paused by SIGSTOP, paused by CLIENT PAUSE ALL (its commands run late), and
// restarted empty (its data files removed, whatever its persistence).
func minorityFaults(hold time.Duration) []minorityFault {
	must := func(t *testing.T, what string, s *redisproc.Server, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s: %v", what, s.Addr(), err)
		}
	}
	return []minorityFault{
		{"kill", func(t *testing.T, s *redisproc.Server) { must(t, "kill", s, s.Kill()) },
			func(t *testing.T, s *redisproc.Server) { must(t, "restart", s, s.Restart()) }},
		{"SIGSTOP", func(t *testing.T, s *redisproc.Server) { must(t, "pause", s, s.Pause()) },
			func(t *testing.T, s *redisproc.Server) { must(t, "resume", s, s.Resume()) }},
		{"CLIENT PAUSE", func(t *testing.T, s *redisproc.Server) { pauseCommands(t, s, hold) },
			func(*testing.T, *redisproc.Server) {}},
		{"restart empty", func(t *testing.T, s *redisproc.Server) {
			must(t, "kill", s, s.Kill())
			for _, f := range []string{"appendonlydir", "appendonly.aof", "dump.rdb"} {
				must(t, "wipe", s, os.RemoveAll(filepath.Join(s.Dir(), f)))
			}
			must(t, "restart", s, s.Restart())
		}, func(*testing.T, *redisproc.Server) {}},
	}
}

// runMinorityFaults puts the masters ms through rounds faults, one master
// at a time (a minority of a group of three or more), each held for hold,
// with hold between them.
func runMinorityFaults(t *testing.T, ms []*redisproc.Server, rounds int, hold time.Duration) {
	t.Helper()
	faults := minorityFaults(hold)
	for i := range rounds {
		ft, s := faults[i%len(faults)], ms[i%len(ms)]
		ft.do(t, s)
		time.Sleep(hold)
		ft.undo(t, s)
		time.Sleep(hold)
	}
}

// acq is one completed acquisition in the adversarial fencing tests.
type acq struct {
	start, done time.Time // before the acquisition was called; after it returned
	fence       int64
	who         string
}

// raceFences starts workers acquirers per client (each trying at most
// 10000 times): acquire(c, who, n) takes some lock of the resource under
// test and returns its fence and its release (an error: not obtained).
// finish stops them and returns the completed acquisitions; it also runs at
// the end of the test, so that a failing test leaves no acquirer behind.
func raceFences(t *testing.T, clients []*Client, workers int,
	acquire func(c *Client, who string, n int) (int64, func(), error)) (finish func() []acq) {
	stop := make(chan struct{})
	var mu sync.Mutex
	var done []acq
	var wg sync.WaitGroup
	for ci, c := range clients {
		for w := range workers {
			who := "c" + strconv.Itoa(ci) + "w" + strconv.Itoa(w)
			wg.Go(func() {
				for n := 0; n < 10000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					fence, release, err := acquire(c, who, n)
					if err != nil {
						continue
					}
					a := acq{start: start, done: time.Now(), fence: fence, who: who}
					mu.Lock()
					done = append(done, a)
					mu.Unlock()
					time.Sleep(time.Millisecond)
					release()
				}
			})
		}
	}
	end := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(end)
	return func() []acq {
		end()
		return done
	}
}

// checkFenceOrder fails for every two acquisitions a, b where a completed
// before b started and a's fence is not below b's (the promise of
// Lock.Fence), and returns how many there were.
func checkFenceOrder(t *testing.T, done []acq) int {
	t.Helper()
	violations := 0
	for _, a := range done {
		for _, b := range done {
			if a.done.Before(b.start) && a.fence >= b.fence {
				violations++
				if violations <= 5 {
					t.Errorf("%s's fence %d (done %v) is not below %s's fence %d (started %v later)",
						a.who, a.fence, a.done.Format("15:04:05.000000"), b.who, b.fence, b.start.Sub(a.done))
				}
			}
		}
	}
	return violations
}
