package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/integration/safety"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// The fleet simulation's shape: QUORUMLOCK_FLEET_GROUPS groups of 5 masters
// (default 10, the CI size) for QUORUMLOCK_FLEET_DURATION (default 6s).
// `make fleet` runs 100 groups (500 redis-server processes) for a minute.
const (
	envFleetGroups   = "QUORUMLOCK_FLEET_GROUPS"
	envFleetDuration = "QUORUMLOCK_FLEET_DURATION"
)

// fleetTune is applied to every master of the simulation, and again after
// each fault that restarted it: a memory cap (the fleet's keys need a few
// KiB; with noeviction, the default, a full master refuses writes instead of
// evicting locks) and one background tick a second, so that 500 idle
// servers cost little CPU. Persistence is already off (redisproc).
var fleetTune = []any{"CONFIG", "SET", "maxmemory", "8mb", "hz", "1"}

// TestFleetSimulation is the safety checker over a fleet of groups × 5
// redis-server processes under random minority faults: every group, on its
// own, at random times, loses 1 or 2 of its 5 masters (chosen at random) to
// a kill (restarted empty after the TTL + 300 ms), a pause (SIGSTOP), a
// partition or a restart with AOF always (in turn), heals, and starts over. Three client processes (this one
// and two children, 4 holders each, Fencing on) contend for one resource
// per group; every 200th hold of a holder stalls past its validity, so the
// fenced register has stale writers to refuse.
//
// It asserts no overlapping holds, no lost update, fences strictly
// increasing per resource, only stale writers refused, and that every group
// granted locks; it reports availability per group (min/median/max over the
// groups, per fault kind) and the machine's load.
func TestFleetSimulation(t *testing.T) {
	groups, d := fleetShape(t)
	checkNoClientGoroutines(t)
	mon := startMonitor()
	t0 := time.Now()
	f := redlocktest.StartProcessesT(t, groups, 5, redlocktest.WithStartTimeout(2*time.Minute))
	started := time.Since(t0)
	settle := func(ctx context.Context, m redlocktest.Master) error {
		_, err := m.Do(ctx, fleetTune...)
		return err
	}
	var tuneErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range groups {
		for _, m := range masters(f, g) {
			wg.Go(func() {
				if err := settle(t.Context(), m); err != nil {
					mu.Lock()
					tuneErr = fmt.Errorf("%s: %w", m.Name(), err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if tuneErr != nil {
		t.Fatalf("CONFIG SET on the fleet: %v", tuneErr)
	}
	t.Logf("%d × 5 redis-server processes started in %v", groups, started.Round(time.Millisecond))

	cfg := safetyConfig(t, f)
	cfg.Client.Cluster, cfg.Client.Fencing = f.Addrs(), true
	cfg.Goroutines, cfg.Children, cfg.ChildGoroutines = 4, 2, 4
	cfg.MaxOps = 200_000                                                    // the duration ends the run; this bounds it
	cfg.Startup = 2*time.Second + time.Duration(groups)*20*time.Millisecond // children dial every master first
	rf := safety.RandomFaults{
		Faults: []safety.Fault{safety.Kill(safetyTTL + 300*time.Millisecond), safety.Pause(safetyTTL),
			safety.Partition(safetyTTL), safety.RestartPersistent()},
		GapMin: 300 * time.Millisecond, GapMax: 3 * time.Second,
		Settle: settle,
	}
	sc := safety.Scenario{Name: fmt.Sprintf("fleet %d×5, random minority faults", groups), Duration: d,
		Schedule: rf.Run, StallEvery: 200}
	rep := runScenario(t, cfg, sc)
	use := mon.stop()

	// A fault operation that failed (on a machine with a load average of
	// 40, a dial to a master can miss its 1 s timeout) injected less than
	// planned: tolerated up to 1% of the fault events, and reported.
	failed := make(map[string]bool)
	for _, e := range rep.Schedule.Errors {
		failed[e.Error()] = true
	}
	rep.Problems = slices.DeleteFunc(rep.Problems, func(p string) bool { return failed[p] })
	if n := len(rep.Schedule.Errors); n > 0 {
		t.Logf("%d of %d fault operations failed: %v", n, len(rep.Schedule.Events), rep.Schedule.Errors)
		if n > max(1, len(rep.Schedule.Events)/100) {
			t.Errorf("%d of %d fault operations failed (more than 1%%)", n, len(rep.Schedule.Events))
		}
	}
	checkReport(t, rep)
	if rep.FenceInversions != 0 {
		t.Errorf("%d holds got a fence not above that of a hold obtained before they asked", rep.FenceInversions)
	}
	if rep.Refused != rep.RefusedStalled {
		t.Errorf("the fenced register refused %d holds, only %d of them stale (stalled past validity)", rep.Refused, rep.RefusedStalled)
	}
	if rep.Stalled > 0 && rep.RefusedStalled == 0 && rep.LateWrites == 0 {
		t.Errorf("%d stalled holds, none refused and no late write recorded", rep.Stalled)
	}
	router, err := safety.NewRouter(cfg.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	by := safety.ByGroup(rep.Records, rep.Schedule.Windows, groups, router.Group)
	for g := range groups {
		holds := 0
		for _, st := range by {
			holds += st[g].Holds
		}
		if holds == 0 {
			t.Errorf("group %d granted no lock in the whole run", g)
		}
	}
	kinds := make(map[string]bool)
	for _, w := range rep.Schedule.Windows {
		kinds[w.Fault] = true
	}
	if len(kinds) != len(rf.Faults) {
		t.Errorf("the schedule injected %d fault kinds of %d", len(kinds), len(rf.Faults))
	}
	t.Logf("fleet simulation, Markdown:\n\n%s", fleetMarkdown(groups, d, started, rep, by, use))
}

// fleetShape reads the simulation's size from the environment.
func fleetShape(t *testing.T) (groups int, d time.Duration) {
	groups, d = 10, 6*time.Second
	if v := os.Getenv(envFleetGroups); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 400 {
			t.Fatalf("%s=%q: want a number of groups from 1 to 400", envFleetGroups, v)
		}
		groups = n
	}
	if v := os.Getenv(envFleetDuration); v != "" {
		x, err := time.ParseDuration(v)
		if err != nil || x < time.Second || x > 10*time.Minute {
			t.Fatalf("%s=%q: want a duration from 1s to 10m", envFleetDuration, v)
		}
		d = x
	}
	return groups, d
}

// fleetMarkdown is the simulation's report as it goes into bench/RESULTS.md.
func fleetMarkdown(groups int, d, started time.Duration, rep safety.Report, by map[string][]safety.GroupStats, use usage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d groups × 5 = %d redis-server processes (started in %v), %v of random minority faults; "+
		"holders: %d in 3 processes (%d processes ran), TTL %v, NodeTimeout %v, Fencing on, every 200th hold stalled past its validity.\n\n",
		groups, 5*groups, started.Round(time.Millisecond), d, rep.Holders, rep.Processes, safetyTTL, nodeTimeout)
	b.WriteString("| faults (masters hit) | failed fault operations | attempts | holds | overlapping holds | lost updates | phantom | fence inversions | stalled holds | stale writes refused | late writes accepted | unknown writes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d (%d) | %d | %d | %d | **%d** | **%d** | %d | **%d** | %d | %d | %d | %d |\n\n",
		len(rep.Schedule.Windows), len(rep.Schedule.Events), len(rep.Schedule.Errors), rep.Attempts, rep.Holds,
		len(rep.Overlaps), rep.LostUpdates, rep.Phantoms, rep.FenceInversions,
		rep.Stalled, rep.RefusedStalled, rep.LateWrites, rep.Unknown)
	b.WriteString("Availability per group, by what the group was going through when an attempt began " +
		"(availability: attempts not refused for want of a quorum; got the lock: contention included):\n\n")
	b.WriteString(safety.GroupTable(by, rep.Schedule.Windows))
	fmt.Fprintf(&b, "\nMachine (nproc %d, shared): load average %s at the start, %s at the end, 1-minute peak %.2f; "+
		"redis-server RSS %s total at the peak (%s per process); holder processes' RSS %s at the peak; "+
		"this process: heap in use up to %s, up to %d goroutines.\n",
		runtime.NumCPU(), use.loadStart, use.loadEnd, use.loadPeak, mib(use.redisRSS), kib(use.redisRSS/max(int64(use.redisProcs), 1)),
		mib(use.childRSS), mib(int64(use.heap)), use.goroutines)
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
func kib(n int64) string { return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10)) }

// usage is what the monitor saw: load averages and peaks of memory.
type usage struct {
	loadStart, loadEnd string
	loadPeak           float64
	redisRSS, childRSS int64 // bytes, at their peaks
	redisProcs         int
	heap               uint64
	goroutines         int
}

// monitor samples the machine once a second while the simulation runs.
type monitor struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	u    usage
}

func startMonitor() *monitor {
	m := &monitor{done: make(chan struct{})}
	m.u.loadStart = loadAvg()
	m.wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			m.sample()
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
		}
	})
	return m
}

func (m *monitor) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	redis, procs, children := childrenRSS()
	var one float64
	if f := strings.Fields(loadAvg()); len(f) > 0 {
		one, _ = strconv.ParseFloat(f[0], 64)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u := &m.u
	u.loadPeak = max(u.loadPeak, one)
	if redis > u.redisRSS {
		u.redisRSS, u.redisProcs = redis, procs
	}
	u.childRSS = max(u.childRSS, children)
	u.heap = max(u.heap, ms.HeapInuse)
	u.goroutines = max(u.goroutines, runtime.NumGoroutine())
}

func (m *monitor) stop() usage {
	close(m.done)
	m.wg.Wait()
	m.u.loadEnd = loadAvg()
	return m.u
}

// loadAvg is the first three fields of /proc/loadavg ("n/a" elsewhere).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// childrenRSS sums the resident memory of this process's children from
// /proc: the redis-server processes (and how many), and the others (the
// holder processes). Zeros where /proc is missing.
func childrenRSS() (redis int64, procs int, others int64) {
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		rest := strings.Fields(string(stat[i+1:]))
		if len(rest) < 2 || rest[1] != self {
			continue
		}
		rss := vmRSS(filepath.Join(dir, "status"))
		if bytes.Contains(stat[:i], []byte("(redis-server")) {
			redis += rss
			procs++
		} else {
			others += rss
		}
	}
	return redis, procs, others
}

// vmRSS reads VmRSS (bytes) from a /proc status file.
func vmRSS(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
