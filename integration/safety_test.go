package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/integration/safety"
	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// TestMain turns this test binary into a holder process when the safety
// checker starts it again with safety.EnvChild set, or into the child of
// TestCIFailsWithoutDocker (no test runs then).
func TestMain(m *testing.M) {
	if code, ok := noDockerChild(); ok { // the child of TestCIFailsWithoutDocker
		os.Exit(code)
	}
	if safety.IsChild() {
		if err := safety.RunChild(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "safety holder process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// safetyTTL is the lock TTL of the safety runs. A killed master stays down
// longer than that before it starts again, empty (a delayed restart).
const safetyTTL = 600 * time.Millisecond

// safetyScenarios: every fault hits a rotating minority of every group.
func safetyScenarios(d time.Duration) []safety.Scenario {
	kill := safety.Kill(safetyTTL + 300*time.Millisecond)
	pause := safety.Pause(safetyTTL)
	part := safety.Partition(safetyTTL)
	aof := safety.RestartPersistent()
	return []safety.Scenario{
		{Name: "none", Duration: d * 2 / 3},
		{Name: "kill minority, restart empty after TTL+300ms", Fault: &kill, Duration: d},
		{Name: "pause minority " + safetyTTL.String(), Fault: &pause, Duration: d},
		{Name: "partition minority " + safetyTTL.String(), Fault: &part, Duration: d},
		{Name: "restart minority with AOF always", Fault: &aof, Duration: d},
		// Not a fault of the fleet: every holder stalls past its validity on
		// every 4th hold. The fenced register is what refuses those writes.
		{Name: "holders paused past validity", Duration: d * 2 / 3, StallEvery: 4},
	}
}

// runSafety runs every scenario on f with holders in this process and in
// two child processes, with Fencing on (every register access carries the
// lock's fence), prints the table, and asserts zero overlaps and zero lost
// updates for every (minority) fault, fences in order, only stalled holders
// refused by the register, and that every fault still let holders through.
func runSafety(t *testing.T, f redlocktest.Fleet, perScenario time.Duration) {
	cfg := safetyConfig(t, f)
	cfg.Client.Fencing = true
	var reports []safety.Report
	for _, sc := range safetyScenarios(perScenario) {
		reports = append(reports, runScenario(t, cfg, sc))
	}
	t.Logf("safety under faults (%d groups × %d masters, TTL %v, NodeTimeout %v):\n%s",
		f.Groups(), f.MastersPerGroup(), safetyTTL, nodeTimeout, safety.Table(reports))

	for _, rep := range reports {
		checkReport(t, rep)
		checkFences(t, rep)
		// Liveness: a minority fault never stops the lock.
		if rep.Holds == 0 || rep.Sections == 0 {
			t.Errorf("%s: no lock obtained in %d attempts", rep.Name, rep.Attempts)
		}
	}
}

// checkFences asserts what Fencing promises in a scenario run with it: no
// hold's fence is below that of a hold obtained before it asked (every
// kind: plain, reader, writer, permit); holders that respect their
// validity are never refused by the fenced register, and holders paused
// past it are (that is what the fence is for) — only those.
func checkFences(t *testing.T, rep safety.Report) {
	t.Helper()
	if rep.FenceInversions != 0 {
		t.Errorf("%s: %d holds got a fence not above that of a hold obtained before they asked", rep.Name, rep.FenceInversions)
	}
	if rep.Stalled == 0 && rep.Refused != 0 {
		t.Errorf("%s: the fenced register refused %d holds of holders that respect their validity", rep.Name, rep.Refused)
	}
	if rep.Stalled > 0 && (rep.RefusedStalled == 0 || rep.Refused != rep.RefusedStalled) {
		t.Errorf("%s: %d stalled holds, %d refused of which %d stalled: want stalled holds refused, and only those",
			rep.Name, rep.Stalled, rep.Refused, rep.RefusedStalled)
	}
}

// runScenario runs one scenario and logs what it did.
func runScenario(t *testing.T, cfg safety.Config, sc safety.Scenario) safety.Report {
	t.Helper()
	t0 := time.Now()
	rep, err := safety.Run(t.Context(), cfg, sc)
	if err != nil {
		t.Fatalf("%s: %v", sc.Name, err)
	}
	t.Logf("%s: %d attempts, %d holds in %v", sc.Name, rep.Attempts, rep.Holds, time.Since(t0).Round(time.Millisecond))
	if top := rep.TopUnavailable(3); len(top) > 0 {
		t.Logf("%s: %d attempts without a quorum of answers, e.g.:\n  %s", sc.Name, rep.Unavailable, strings.Join(top, "\n  "))
	}
	return rep
}

// checkReport asserts that a scenario ran as planned and broke nothing:
// no overlap (for RWMutex: a writer with anyone; for a semaphore: more
// holders than permits), no lost, phantom or torn register update, fresh
// tokens.
func checkReport(t *testing.T, rep safety.Report) {
	t.Helper()
	for _, p := range rep.Problems {
		t.Errorf("%s: %s", rep.Name, p)
	}
	if rep.Processes < 3 {
		t.Errorf("%s: holders ran in %d processes, want 3", rep.Name, rep.Processes)
	}
	for _, o := range rep.Overlaps {
		t.Errorf("%s: OVERLAP %v", rep.Name, o)
	}
	if rep.LostUpdates != 0 || rep.Phantoms != 0 {
		t.Errorf("%s: %d lost and %d phantom register updates: %+v", rep.Name, rep.LostUpdates, rep.Phantoms, rep.Registers)
	}
	if rep.TornReads != 0 {
		t.Errorf("%s: %d readers saw a write while they held", rep.Name, rep.TornReads)
	}
	if rep.DuplicateTokens != 0 {
		t.Errorf("%s: %d tokens handed out twice", rep.Name, rep.DuplicateTokens)
	}
	if rep.Name != "none" && rep.Stalled == 0 && rep.Faults == 0 {
		t.Errorf("%s: no fault was injected", rep.Name)
	}
}

// safetyConfig is the checker's setup on f: holders in this process and in
// two child processes, a register server of their own.
func safetyConfig(t *testing.T, f redlocktest.Fleet) safety.Config {
	reg, err := redisproc.Start(redisproc.Options{})
	if err != nil {
		t.Fatalf("start the register server: %v", err)
	}
	t.Cleanup(func() { _ = reg.Close() })

	return safety.Config{
		Fleet: f,
		Client: safety.ClientSpec{
			NodeTimeout:       nodeTimeout,
			ReconnectInterval: reconnectInterval,
			DialTimeout:       dialTimeout,
			ReleaseTimeout:    time.Second,
			Logger:            debugLogger(t),
		},
		Register:        reg.Addr(),
		TTL:             safetyTTL,
		Goroutines:      3,
		Children:        2,
		ChildGoroutines: 3,
		MaxOps:          1500,
		ChildRun:        "^$", // TestMain runs the holders
		Dir:             t.TempDir(),
		Logf:            t.Logf,
	}
}

// TestSafetyRWMutexAndSemaphoreProcesses is the checker for RWMutex and
// Semaphore on one group of 5 redis-server processes, with holders in three
// OS processes:
//
//   - readers and writers under every minority fault (2 of 5 masters hit;
//     a majority, 3, is enough): no writer ever holds with anyone, no
//     reader sees a write, no writer update is lost;
//   - a semaphore of 2 permits (q = 4 of 5: it tolerates 1 failed master)
//     under the same schedule, and under faults of 1 master at a time:
//     never more than 2 holders within validity. Faults of 2 masters leave
//     it safe but unavailable while they last — the table shows how much.
//
// Both run with Fencing on: no hold (reader, writer, permit) gets a fence
// below that of a hold obtained before it asked, and the fenced register
// (a writer refused below any holder's fence, a reader below a writer's)
// refuses no holder that respects its validity — and does refuse writers
// that stall past it ("rw: holders paused past validity").
func TestSafetyRWMutexAndSemaphoreProcesses(t *testing.T) {
	f := startProcesses(t, 1, 5)
	cfg := safetyConfig(t, f)
	cfg.Goroutines, cfg.ChildGoroutines, cfg.MaxOps = 3, 3, 1000
	cfg.Client.Fencing = true
	const d = 3 * time.Second
	kill := safety.Kill(safetyTTL + 300*time.Millisecond)
	pause := safety.Pause(safetyTTL)
	part := safety.Partition(safetyTTL)
	aof := safety.RestartPersistent()
	kill1, pause1 := kill, pause
	kill1.Hit, pause1.Hit = 1, 1

	rw := cfg
	rw.Mode = safety.ModeRW
	var rwReports []safety.Report
	for _, sc := range []safety.Scenario{
		{Name: "none", Duration: d * 2 / 3},
		{Name: "rw: kill 2 of 5, restart empty after TTL+300ms", Fault: &kill, Duration: d},
		{Name: "rw: pause 2 of 5 " + safetyTTL.String(), Fault: &pause, Duration: d},
		{Name: "rw: partition 2 of 5 " + safetyTTL.String(), Fault: &part, Duration: d},
		{Name: "rw: restart 2 of 5 with AOF always", Fault: &aof, Duration: d},
		{Name: "rw: holders paused past validity", Duration: d * 2 / 3, StallEvery: 4},
	} {
		rep := runScenario(t, rw, sc)
		checkReport(t, rep)
		checkFences(t, rep)
		if rep.Reads == 0 || rep.Writes == 0 || rep.Sections == 0 {
			t.Errorf("%s: a minority fault stopped the RWMutex: %d reads, %d writes, %d sections", rep.Name, rep.Reads, rep.Writes, rep.Sections)
		}
		rwReports = append(rwReports, rep)
	}
	t.Logf("RWMutex under faults (1 group × 5 masters, TTL %v):\n%s%s", safetyTTL, safety.Table(rwReports), safety.KindTable(rwReports))

	sem := cfg
	sem.Mode, sem.Permits = safety.ModeSemaphore, 2
	var semReports []safety.Report
	for _, sc := range []safety.Scenario{
		{Name: "none", Duration: d * 2 / 3},
		{Name: "sem: kill 1 of 5 (within N-q), restart after TTL+300ms", Fault: &kill1, Duration: d},
		{Name: "sem: pause 1 of 5 (within N-q) " + safetyTTL.String(), Fault: &pause1, Duration: d},
		{Name: "sem: kill 2 of 5, restart empty after TTL+300ms", Fault: &kill, Duration: d},
		{Name: "sem: pause 2 of 5 " + safetyTTL.String(), Fault: &pause, Duration: d},
	} {
		rep := runScenario(t, sem, sc)
		checkReport(t, rep)
		checkFences(t, rep)
		if rep.MaxPermits > 2 {
			t.Errorf("%s: %d permit holders at once", rep.Name, rep.MaxPermits)
		}
		if (rep.Name == "none" || strings.Contains(rep.Name, "within")) && rep.Permits == 0 {
			t.Errorf("%s: no permit obtained in %d attempts", rep.Name, rep.Attempts)
		}
		semReports = append(semReports, rep)
	}
	t.Logf("Semaphore (2 permits, q = 4) under faults (1 group × 5 masters, TTL %v):\n%s%s", safetyTTL, safety.Table(semReports), safety.KindTable(semReports))
}

// TestSafetyUnderFaults is the safety checker on containers: 3 groups × 3
// masters, holders as goroutines and as 2 separate OS processes, while a
// minority of every group is killed (restarted after the TTL), paused,
// partitioned, or restarted with AOF always.
func TestSafetyUnderFaults(t *testing.T) {
	f := startContainers(t, 3, 3)
	runSafety(t, f, 7*time.Second)
}

// TestSafetyUnderFaultsProcesses is the same checker on redis-server
// processes (no Docker needed, quick): an extra, not a replacement.
func TestSafetyUnderFaultsProcesses(t *testing.T) {
	f := startProcesses(t, 3, 3)
	runSafety(t, f, 4*time.Second)
}

// TestSafetyFenceSavesRegister: holders that stall past their validity (on
// every 2nd hold) lose register updates when the register does not check
// fences — the lock alone cannot stop a paused holder — and lose none when
// every access carries the lock's fence: the register refuses the stalled
// holders' stale writes instead.
func TestSafetyFenceSavesRegister(t *testing.T) {
	f := startProcesses(t, 1, 3)
	reg, err := redisproc.Start(redisproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	run := func(fencing bool) safety.Report {
		cfg := safety.Config{
			Fleet: f,
			Client: safety.ClientSpec{NodeTimeout: nodeTimeout, ReconnectInterval: reconnectInterval,
				DialTimeout: dialTimeout, ReleaseTimeout: time.Second, Fencing: fencing},
			Register: reg.Addr(), TTL: 300 * time.Millisecond, Goroutines: 3, Children: -1, MaxOps: 1000,
			Startup: 100 * time.Millisecond, Logf: t.Logf,
		}
		name := "stall every 2nd hold, fencing " + map[bool]string{false: "off", true: "on"}[fencing]
		rep, err := safety.Run(t.Context(), cfg, safety.Scenario{Name: name, Duration: 2 * time.Second, StallEvery: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rep.Problems {
			t.Errorf("%s: %s", name, p)
		}
		return rep
	}
	off, on := run(false), run(true)
	t.Logf("\n%s", safety.Table([]safety.Report{off, on}))
	if off.Stalled == 0 || off.LostUpdates == 0 {
		t.Errorf("without fences: %d stalled holds, %d lost updates; want stalls to lose updates", off.Stalled, off.LostUpdates)
	}
	if on.Stalled == 0 || on.LostUpdates != 0 || on.Phantoms != 0 || on.RefusedStalled == 0 || on.Refused != on.RefusedStalled {
		t.Errorf("with fences: %d stalled, %d lost, %d phantom, %d refused (%d stalled); want no loss and only stalled holds refused",
			on.Stalled, on.LostUpdates, on.Phantoms, on.Refused, on.RefusedStalled)
	}
	if len(off.Overlaps)+len(on.Overlaps) != 0 || on.FenceInversions != 0 {
		t.Errorf("overlaps within validity: %d, %d; fence inversions %d", len(off.Overlaps), len(on.Overlaps), on.FenceInversions)
	}
}

// TestSafetyCheckerCatchesUnsafeLocks guards the checker itself: it must
// report overlaps and lost updates when the "lock" protects nothing. Each
// holder locks through its own one-master fleet, a different master each,
// so all of them hold the same resource at once.
func TestSafetyCheckerCatchesUnsafeLocks(t *testing.T) {
	f := startProcesses(t, 1, 3)
	reg, err := redisproc.Start(redisproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	until := time.Now().Add(1500 * time.Millisecond)
	var mu sync.Mutex
	var records []safety.Record
	var wg sync.WaitGroup
	for i, addr := range f.Addrs()[0] {
		h := safety.HolderSpec{Name: fmt.Sprintf("h%d", i), Resources: []string{"shared"}, TTL: 200 * time.Millisecond,
			Until: until, MaxOps: 300, MaxHold: 5 * time.Millisecond, MaxPause: 2 * time.Millisecond, Margin: 20 * time.Millisecond}
		wg.Go(func() {
			recs, err := safety.RunHolders(t.Context(), safety.ClientSpec{Cluster: [][]string{{addr}}, NodeTimeout: nodeTimeout}, reg.Addr(), []safety.HolderSpec{h})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			records = append(records, recs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	r := safety.NewRegister(reg.Addr(), 1)
	defer r.Close()
	final, err := r.Finals(t.Context(), []string{"shared"})
	if err != nil {
		t.Fatal(err)
	}
	rep := safety.Check("no real lock (3 independent one-master fleets)", records, final)
	rep.Processes = 1
	t.Logf("\n%s", safety.Table([]safety.Report{rep}))
	if len(rep.Overlaps) == 0 || rep.LostUpdates == 0 {
		t.Fatalf("the checker missed an unprotected critical section: %d overlaps, %d lost updates in %d holds",
			len(rep.Overlaps), rep.LostUpdates, rep.Holds)
	}
}

// debugLogger logs the parent holders' master down/up events when
// QUORUMLOCK_DEBUG is set.
func debugLogger(t *testing.T) *slog.Logger {
	if os.Getenv("QUORUMLOCK_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, nil))
}
