package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/bench/chart"
)

// report is everything one run measured.
type report struct {
	Plan      plan
	RetryBase time.Duration
	Machine   [][2]string
	LoadStart string
	LoadEnd   string
	Took      time.Duration
	Charts    []string

	Latency       map[string]*stats
	Throughput    map[int]map[string]*stats
	Handoff       map[string]*handoffStats
	Slow          map[string]*stats
	SlowAddr      string
	GroupsLatency map[string]*stats
	GroupsTP      map[string]*stats
	GroupsTP128   map[string]*stats
	OneLatency    map[string]*stats
	OneTP         map[string]*stats
	Allocs        map[string][3]float64 // allocs/op, bytes/op, errors
	Scale         *scaleResult
	KindsLatency  map[string]*stats
	KindsTP       map[string]*stats
	KindsNote     string // set when section 9 was measured on its own (-only kinds)
}

// The implementations, in the order tables list them.
var (
	fiveNames = []string{"floor", "quorumlock", "redsync", "redsync-failfast"}
	oneNames  = []string{"raw SET", "quorumlock-1", "bsm/redislock"}
	kindNames = []string{"Lock", "RWMutex RLock", "RWMutex Lock", "Semaphore(2) Acquire"}
)

// rueidislockOps is FACTS.md's figure for rueidislock (rueidis
// auto-pipelining) at 32 goroutines on one master, on this machine kind.
const rueidislockOps = 56_000

func describeMachine() [][2]string {
	cpu := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	redisV := "unknown"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		redisV = strings.TrimSpace(string(out))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	mem := "unknown"
	if m := memTotal(); m > 0 {
		mem = fmt.Sprintf("%.1f GiB", float64(m)/(1<<30))
	}
	return [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 MST")},
		{"nproc", fmt.Sprint(runtime.NumCPU())},
		{"CPU", cpu},
		{"memory", mem},
		{"kernel", strings.TrimSpace(string(kernel))},
		{"go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + fmt.Sprintf(", GOMAXPROCS %d", runtime.GOMAXPROCS(0))},
		{"redis", redisV},
	}
}

func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb uint64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
				return 0 // unknown
			}
			return kb * 1024
		}
	}
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

func us(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func x(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func ops(v float64) string { return fmt.Sprintf("%.0f", v) }

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func met(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

type target struct {
	what, want, got string
	ok              bool
}

func (r *report) targets() []target {
	var t []target
	p50 := func(m map[string]*stats, n string) float64 {
		if s := m[n]; s != nil {
			return float64(s.p(0.5))
		}
		return 0
	}
	tp := func(m map[string]*stats, n string) float64 {
		if s := m[n]; s != nil {
			return s.throughput()
		}
		return 0
	}
	ql, fl, rs := p50(r.Latency, "quorumlock"), p50(r.Latency, "floor"), p50(r.Latency, "redsync")
	t = append(t, target{"lock+unlock p50, 1 goroutine, 5 masters", "≤ 1.10× the floor",
		fmt.Sprintf("%s vs %s: %s", us(time.Duration(ql)), us(time.Duration(fl)), x(ratio(ql, fl))), ql > 0 && ratio(ql, fl) <= 1.10})
	t = append(t, target{"faster than redsync default at p50", "≥ 1.4×",
		fmt.Sprintf("redsync %s / quorumlock %s = %s", us(time.Duration(rs)), us(time.Duration(ql)), x(ratio(rs, ql))), ratio(rs, ql) >= 1.4})
	sql, sfl, srs := p50(r.Slow, "quorumlock"), p50(r.Slow, "floor"), p50(r.Slow, "redsync")
	pays := srs-sfl >= float64(1500*time.Microsecond)
	t = append(t, target{"one master 2 ms slower: p50", "≤ 1.2× the floor, while redsync default pays the slow master",
		fmt.Sprintf("quorumlock %s vs floor %s: %s; redsync %s (%+.0f µs over the floor: %s)", us(time.Duration(sql)), us(time.Duration(sfl)), x(ratio(sql, sfl)),
			us(time.Duration(srs)), (srs-sfl)/1e3, map[bool]string{true: "pays it", false: "does not pay it"}[pays]),
		sql > 0 && ratio(sql, sfl) <= 1.2 && pays})
	for _, c := range []struct {
		conc int
		want float64
	}{{32, 4}, {128, 6}} {
		q, s := tp(r.Throughput[c.conc], "quorumlock"), tp(r.Throughput[c.conc], "redsync")
		t = append(t, target{fmt.Sprintf("throughput, %d goroutines, distinct resources", c.conc), fmt.Sprintf("≥ %.0f× redsync", c.want),
			fmt.Sprintf("%s vs %s lock+unlock/s: %s", ops(q), ops(s), x(ratio(q, s))), ratio(q, s) >= c.want})
	}
	qa, ra := r.Allocs["quorumlock"][0], r.Allocs["redsync"][0]
	t = append(t, target{"allocations per lock+unlock", "≤ ½ of redsync's",
		fmt.Sprintf("%.0f vs %.0f: %s", qa, ra, x(ratio(qa, ra))), qa > 0 && ratio(qa, ra) <= 0.5})
	q1, b1 := p50(r.OneLatency, "quorumlock-1"), p50(r.OneLatency, "bsm/redislock")
	t = append(t, target{"one-master group: p50 ≈ bsm/redislock", "≤ 1.10× bsm",
		fmt.Sprintf("%s vs %s: %s", us(time.Duration(q1)), us(time.Duration(b1)), x(ratio(q1, b1))), q1 > 0 && ratio(q1, b1) <= 1.10})
	qt, bt := tp(r.OneTP, "quorumlock-1"), tp(r.OneTP, "bsm/redislock")
	t = append(t, target{"one-master group: throughput, 32 goroutines", fmt.Sprintf("≥ rueidislock class: %d/s (FACTS.md, quiet machine)", rueidislockOps),
		fmt.Sprintf("%s/s", ops(qt)), qt >= rueidislockOps})
	t = append(t, target{"one-master group: throughput vs bsm, 32 goroutines", "≥ 1.5× bsm (FACTS.md: rueidislock/bsm ≈ 56k/37k)",
		fmt.Sprintf("%s vs %s: %s", ops(qt), ops(bt), x(ratio(qt, bt))), ratio(qt, bt) >= 1.5})
	return t
}

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# quorumlock benchmark results\n\n")
	w("Generated by `make -C bench results` (that is `cd bench/compare && go run . -out ../RESULTS.md`) in %v.\n", r.Took.Round(time.Second))
	w("Every implementation ran **interleaved in one run, on the same redis-server processes** on 127.0.0.1 (rounds rotate the order to spread a noisy machine's drift over all of them). Ratios are only meaningful within this run.\n\n")
	w("| machine | |\n|---|---|\n")
	for _, kv := range r.Machine {
		w("| %s | %s |\n", kv[0], kv[1])
	}
	w("| load average (1/5/15 min) | %s at start, %s at the end |\n\n", r.LoadStart, r.LoadEnd)
	if r.Plan.latRounds < fullPlan.latRounds {
		w("> **-quick run**: too short for figures; regenerate without -quick.\n\n")
	}

	w("## Targets\n\n| target | wanted | measured | |\n|---|---|---|---|\n")
	for _, t := range r.targets() {
		w("| %s | %s | %s | %s |\n", t.what, t.want, t.got, met(t.ok))
	}
	w("\n")

	lat, tput := tables(w)

	p := r.Plan
	w("## 1. Latency: one goroutine, one group of 5 masters\n\n")
	w("Lock then release, sequentially, a fresh resource each cycle; %d rounds × %d cycles per implementation after %d warm-up cycles.\n\n", p.latRounds, p.latPerRound, p.latWarm)
	lat(r.Latency, fiveNames, "floor", "redsync")
	w("![latency CDF](results-latency-cdf.png)\n\n")

	for i, c := range []int{32, 128} {
		w("## 2%c. Throughput: %d goroutines on distinct resources, 5 masters\n\n", 'a'+rune(i), c)
		w("%d rounds × %v per implementation (after a warm-up at that concurrency); each library with its default connection pool (go-redis: 10 × GOMAXPROCS connections per master; quorumlock: PoolSize 2 with batching writers).\n\n", p.tpRounds, p.tpDur)
		tput(r.Throughput[c], fiveNames, "floor", "redsync")
	}
	w("![throughput](results-throughput.png)\n\n")

	w("## 3. Handoff: 32 goroutines on one resource, 5 masters\n\n")
	w("Each goroutine waits for the lock with its library's own retry loop, set to comparable knobs: a delay drawn uniformly from [%v, %v) between attempts (quorumlock `RetryStrategy: LinearBackoff(n, %v)`; redsync `WithTries(1<<30)`, `WithRetryDelayFunc`; the floor a loop with the same jitter), then releases at once. *Handoff* is the time from a holder starting its release to the next holder's lock returning. Two holders at once would count as a violation.\n\n",
		r.RetryBase/2, r.RetryBase*3/2, r.RetryBase)
	w("| implementation | acquisitions/s | handoff p50 | p90 | p99 | violations | errors |\n|---|---|---|---|---|---|---|\n")
	for _, n := range fiveNames {
		h := r.Handoff[n]
		if h == nil {
			continue
		}
		e := fmt.Sprint(h.errs.Load())
		if f := h.firstErr.Load(); f != nil {
			e += ": " + short(*f)
		}
		w("| %s | %s | %s | %s | %s | %d | %s |\n", n, ops(float64(h.acquisitions.Load())/h.elapsed.Seconds()),
			us(h.hist.Quantile(.5)), us(h.hist.Quantile(.9)), us(h.hist.Quantile(.99)), h.violations.Load(), e)
	}
	w("\n")

	w("## 4. One master 2 ms slower\n\n")
	w("Master %s behind an in-process toxiproxy on 127.0.0.1 with a 2 ms latency toxic (downstream); one goroutine, %d rounds × %d cycles. An implementation that returns at quorum should not see it.\n\n", r.SlowAddr, p.slowRounds, p.slowPerRound)
	lat(r.Slow, fiveNames, "floor", "redsync")

	w("## 5. One group of 5 vs 3 groups of 5 (quorumlock)\n\n")
	w("The same client code over `Servers` (5 masters) and over `Cluster` (15 masters, every resource routed to one group of 5). Latency: one goroutine, %d rounds × %d cycles. Throughput: 32 and 128 goroutines, %d rounds × %v. On a 2-core machine the 15 servers and the client share the same cores, so more groups cannot add throughput here; what this shows is that routing costs nothing measurable.\n\n", p.latRounds/2, p.latPerRound, p.tpRounds, p.tpDur)
	w("| fleet | p50 | p99 | lock+unlock/s at 32 | at 128 |\n|---|---|---|---|---|\n")
	for _, n := range []string{"quorumlock 1×5", "quorumlock 3×5"} {
		s, t, t128 := r.GroupsLatency[n], r.GroupsTP[n], r.GroupsTP128[n]
		if s == nil || t == nil || t128 == nil {
			continue
		}
		w("| %s | %s | %s | %s | %s |\n", n, us(s.p(.5)), us(s.p(.99)), ops(t.throughput()), ops(t128.throughput()))
	}
	w("\n")

	w("## 6. One master: quorumlock with a one-master group vs bsm/redislock vs raw SET\n\n")
	w("`raw SET` is the floor with one master: SET NX PX then the release script, called directly. FACTS.md, measured on this machine kind when quiet: bsm ≈ 0.12 ms p50 and ≈ 37k/s at 32 goroutines; rueidislock ≈ 0.14–0.15 ms and ≈ 56k/s.\n\n")
	w("Latency, one goroutine:\n\n")
	lat(r.OneLatency, oneNames, "raw SET", "")
	w("Throughput, 32 goroutines on distinct resources:\n\n")
	tput(r.OneTP, oneNames, "raw SET", "")

	w("## 7. Allocations per lock+unlock cycle\n\n")
	w("runtime.MemStats deltas over %d sequential cycles (resource names made beforehand), so the allocations of the libraries' background goroutines on behalf of the cycles count too. redsync allocates a Mutex per cycle (`NewMutex`), as it is used.\n\n", p.allocsN)
	w("| implementation | allocs/op | bytes/op | vs redsync (allocs) |\n|---|---|---|---|\n")
	for _, n := range append(append([]string(nil), fiveNames...), oneNames...) {
		a, ok := r.Allocs[n]
		if !ok {
			continue
		}
		w("| %s | %.0f | %.0f | %s |\n", n, a[0], a[1], x(ratio(a[0], r.Allocs["redsync"][0])))
	}
	w("\n")

	if s := r.Scale; s != nil {
		r.scaleMarkdown(&b, s)
	}

	r.kindsMarkdown(w)

	if f := r.findings(); len(f) > 0 {
		w("## Findings\n\n")
		for _, line := range f {
			w("- %s\n", line)
		}
		w("\n")
	}

	w("## Method\n\n")
	w("- The fleet: redis-server processes started by this program (internal/redisproc) on 127.0.0.1, persistence off; 15 masters for scenarios 1–7 (5 for the one-group scenarios, 10 more for 3 groups × 5; the one-master scenario uses a master the 5-master scenarios did not load).\n")
	w("- TTL 10 s everywhere. Every cycle locks a fresh resource name, so a key left on a minority of masters by a fan-out that returns at quorum cannot disturb a later cycle (the floor orders each master's release after its SET; redsync's fail-fast mode does not).\n")
	w("- The floor (bench/floor) is a hand-written go-redis Redlock: SET NX PX on every master from one goroutine each, return at quorum (or as soon as quorum is out of reach), compare-and-delete script the same way.\n")
	w("- Latency figures come from a log-linear histogram (bench/latency, < 1%% relative error).\n")
	w("- Scenarios are bounded in time and count; only 127.0.0.1 is a target (toxiproxy runs in-process).\n")
	w("- The machine is shared: compare ratios within one run, and regenerate on a quiet machine for absolute figures.\n")
	return b.String()
}

func (r *report) scaleMarkdown(b *strings.Builder, s *scaleResult) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## 8. Scale: %d groups × 5 = %d masters\n\n", s.Groups, s.Masters)
	if s.RealProcs {
		w("%d real redis-server processes (`--maxmemory 2mb --io-threads 1 --hz 1 --maxclients 64 --databases 1`), started 8 at a time in %v; ulimit -n %d.", s.Masters, s.StartTime.Round(time.Millisecond), s.Ulimit)
		if s.RedisMemPerProc > 0 {
			w(" MemAvailable dropped by ≈ %.1f MiB per process while they started (approximate: the machine is shared).", s.RedisMemPerProc/(1<<20))
		}
		w("\n\n")
	} else {
		w("**No real processes for the fleet**: %s.\n\n", s.Note)
	}
	w("| measure | value |\n|---|---|\n")
	w("| redlock.New (dials every master in parallel) | %v (%d of %d masters up after it) |\n", s.NewTime.Round(time.Microsecond), s.UpAfterNew, s.Masters)
	w("| client heap per master (connected) | %.1f KiB (+ %.1f KiB of goroutine stacks, %.1f goroutines) |\n", s.HeapPerMaster/1024, s.StackPerMaster/1024, s.GoroutinesPerMaster)
	w("| client heap per master (all down, no connection) | %.1f KiB; New took %v |\n", s.FakeHeapPerMaster/1024, s.FakeNewTime.Round(time.Microsecond))
	w("| ring share, max / average group | %.3f |\n", s.RingShareMaxAvg)
	if s.RealProcs {
		e := fmt.Sprint(s.LoadErrs)
		if s.LoadFirstErr != "" {
			e += ", first: " + short(s.LoadFirstErr)
		}
		w("| lock+unlock/s, %d goroutines over all groups for %v, after a cold start | %s (errors: %s) |\n", s.LoadConc, r.Plan.scaleLoad, ops(s.LoadOps), e)
		w("| … the first %v after New (a cold start, not in the line above) | %s lock+unlock/s, %d errors |\n", s.ColdDur, ops(s.ColdOps), s.ColdErrs)
		w("| commands per group under that load, max / average | %.3f (only ≈ %.0f cycles per group: sampling noise dominates; the 1M-resource column below is the balance figure) |\n", s.LoadMaxAvg, float64(s.LoadCycles)/float64(max(s.Groups, 1)))
	}
	w("\nRouting (`Client.Route`, groups of 3 unreachable loopback masters — New succeeds with masters down — so no server is involved):\n\n")
	w("| groups | Route ns/op | allocs/op | ring share max/avg | 1M resources max/avg | moved when a group is added | … of which between old groups | ideal 1/(n+1) | client heap per master | New |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rr := range s.Route {
		w("| %d | %.0f | %.0f | %.3f | %.3f | %.2f%% | %.2f%% | %.2f%% | %.1f KiB | %v |\n", rr.Groups, rr.NsPerOp, rr.AllocsPerOp, rr.ShareMaxAvg, rr.RoutedMaxAvg,
			rr.Moved*100, rr.MovedBetween*100, rr.IdealMoved*100, rr.HeapPerMaster/1024, rr.NewTime.Round(time.Microsecond))
	}
	if len(s.Route) > 1 {
		lo, hi := s.Route[0].NsPerOp, s.Route[0].NsPerOp
		for _, rr := range s.Route {
			lo, hi = min(lo, rr.NsPerOp), max(hi, rr.NsPerOp)
		}
		verdict := "flat"
		if hi/lo > 1.5 {
			verdict = "not flat in this run"
		}
		w("\nRoute ns/op (best of 7 runs of 200k calls) is %s: slowest / fastest = %.2f× from %d to %d groups. A route is one xxhash, one modulo and one slice index whatever the fleet size; the copy of the group's address slice that Route returns is its one allocation.\n", verdict, hi/lo, s.Route[0].Groups, s.Route[len(s.Route)-1].Groups)
	}
	w("\n")
}

// findings explains, from this run's figures, the targets not met and the
// other results a reader would ask about, pointing at the code responsible.
func (r *report) findings() []string {
	var out []string
	ts := r.targets()
	out = append(out, fmt.Sprintf("This run's load average (1/5/15 min) was %s at the start and %s at the end, on %s cores shared with other work: absolute figures are depressed and noisy; the ratios, measured in interleaved rounds, are the figures to read (the per-round ops/s columns show how steady they were).", r.LoadStart, r.LoadEnd, r.machine("nproc")))
	miss := func(i int) bool { return i < len(ts) && !ts[i].ok }
	p50 := func(m map[string]*stats, n string) time.Duration {
		if s := m[n]; s != nil {
			return s.p(.5)
		}
		return 0
	}
	if miss(0) || miss(1) {
		out = append(out, fmt.Sprintf("Latency, one goroutine (%s vs floor %s): every command crosses two goroutine hand-offs in the client — the caller enqueues it on the master's writer (redlock/writer.go `submit` → `writeLoop`/`exec`) and waits for the answer on the fan-out's channel (redlock/quorum.go `fanout`) — where the floor's per-master goroutine calls go-redis directly. A single caller pays both on every command; sending inline when the writer's queue is empty would remove them.",
			us(p50(r.Latency, "quorumlock")), us(p50(r.Latency, "floor"))))
	}
	if miss(2) {
		out = append(out, "Slow master: quorumlock should return at quorum (redlock/quorum.go `fanout` breaks out as soon as a quorum said yes); a p50 above 1.2× the floor means the slow master's commands delayed the others — look for shared state between the masters' writers in redlock/writer.go.")
	}
	if miss(3) || miss(4) {
		out = append(out, "Throughput below target: quorumlock's throughput comes from batching (commands per pipeline, printed by `redlock bench`): the writers in redlock/writer.go (`writeLoop`, two per master with the default PoolSize 2) send whatever piled up as one pipeline. With 32 goroutines × 5 masters the batches are small and every pipeline still costs the writer a wake-up, a pool acquire and a syscall pair; when the machine is loaded those per-pipeline costs dominate. Check the per-round columns: a round-to-round spread larger than the gap to the target means the run was too noisy to judge.")
	}
	if miss(5) {
		out = append(out, "Allocations above half of redsync's: profile `go test -bench LockUnlock -memprofile` in bench/; the per-command go-redis `Cmd` and the fan-out's channel in redlock/quorum.go are the usual sources.")
	}
	if miss(6) {
		out = append(out, fmt.Sprintf("One-master latency (quorumlock-1 %s vs bsm %s vs raw SET %s): a one-master group already takes the direct path — redlock/quorum.go `fanout` passes direct to redlock/writer.go `submit`, which sends the command on the caller's goroutine when the master's writer queue is empty (concurrent callers still batch through the writer). A p50 above target with that path means the remaining per-command costs dominate: the pool acquire (redlock/pool.go), the go-redis Cmd and the reply decoding; profile `go test -bench LockUnlock -cpuprofile` in bench/ with a one-master group, and check that the run was quiet (the ratios are interleaved, the absolute figures are not).",
			us(p50(r.OneLatency, "quorumlock-1")), us(p50(r.OneLatency, "bsm/redislock")), us(p50(r.OneLatency, "raw SET"))))
	}
	if miss(7) || miss(8) {
		out = append(out, "One-master throughput below target: see the batching factor of the one master with `redlock bench -masters 1`.")
	}
	if h, q := r.Handoff["floor"], r.Handoff["quorumlock"]; h != nil && q != nil && h.elapsed > 0 && q.elapsed > 0 {
		fa, qa := float64(h.acquisitions.Load())/h.elapsed.Seconds(), float64(q.acquisitions.Load())/q.elapsed.Seconds()
		if qa > 2*fa {
			out = append(out, fmt.Sprintf("Handoff (%.0f vs the floor's %.0f acquisitions/s): with 32 contenders, implementations that send each master's SET from its own goroutine (the floor, redsync) deliver competing attempts to the masters in different orders, so votes split (no contender reaches 3 of 5), everyone cleans up and retries. quorumlock's callers enqueue on all five writers in one tight loop, so the masters see competing attempts in nearly the same order and one contender wins. (A likely explanation, consistent with the figures; this run does not count split votes.)", qa, fa))
		}
	}
	if a, b := r.GroupsTP["quorumlock 1×5"], r.GroupsTP["quorumlock 3×5"]; a != nil && b != nil && b.throughput() < a.throughput()*0.8 {
		out = append(out, fmt.Sprintf("3 groups × 5 reached %.0f lock+unlock/s at 32 goroutines vs %.0f for 1 × 5: the same load spread over 3× more masters makes every writer's batches 3× smaller (more syscalls per lock), and on 2 cores the 15 servers compete with the client for CPU. On a fleet whose masters have their own cores, groups add capacity; here they cannot.", b.throughput(), a.throughput()))
	}
	if s := r.Scale; s != nil && s.LoadErrs > 0 {
		out = append(out, fmt.Sprintf("Scale load: %d of %d cycles failed, with masters that did not answer within NodeTimeout (100 ms): %d redis-server processes and the client on %s cores. They are timeouts of an overloaded machine, not wrong answers.", s.LoadErrs, s.LoadErrs+s.LoadCycles, s.Masters, r.machine("nproc")))
	}
	if s := r.Scale; s != nil && len(s.Route) > 0 {
		rr := s.Route[len(s.Route)-1]
		for _, x := range s.Route {
			if x.Moved > 1.3*x.IdealMoved {
				rr = x
				break
			}
		}
		if rr.Moved > 1.3*rr.IdealMoved {
			out = append(out, fmt.Sprintf("Adding a group moves more than the ideal share (e.g. %.2f%% vs 1/(n+1) = %.2f%% at %d groups, %.2f%% of it between old groups): consistent hashing with bounded loads (redlock/ring.go: buraksezer/consistent, Load %s) caps every group's partitions, so the newcomer also shifts partitions among the existing groups. The balance (ring share max/avg ≈ 1.15) is what the cap buys.", rr.Moved*100, rr.IdealMoved*100, rr.Groups, rr.MovedBetween*100, "1.15"))
		}
		last := s.Route[len(s.Route)-1]
		if len(s.Route) > 1 && last.NewTime > 500*time.Millisecond {
			out = append(out, fmt.Sprintf("redlock.New over %d groups took %v (%d groups: %v): the dials run in parallel; a CPU profile of New over 1000 groups puts ≈ 60%% of it in buraksezer/consistent.New, whose `add` re-sorts the whole ring after each member (quadratic in the number of groups; redlock/ring.go `newRing`). Building the ring's sorted hashes once would make it linear.", last.Groups, last.NewTime.Round(time.Millisecond), s.Route[len(s.Route)-2].Groups, s.Route[len(s.Route)-2].NewTime.Round(time.Millisecond)))
		}
	}
	return out
}

func (r *report) machine(key string) string {
	for _, kv := range r.Machine {
		if kv[0] == key {
			return kv[1]
		}
	}
	return "?"
}

func errText(s *stats) string {
	n := s.errs.Load()
	if n == 0 {
		return "0"
	}
	if f := s.firstErr.Load(); f != nil {
		return fmt.Sprintf("%d: %s", n, short(*f))
	}
	return fmt.Sprint(n)
}

// short keeps an error message to one line of a table.
func short(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "|", "/")), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func (r *report) writeCharts(dir string) error {
	// Latency CDF of scenario 1.
	var series []chart.Series
	var xmax float64
	for _, n := range fiveNames {
		s := r.Latency[n]
		if s == nil || s.hist.Count() == 0 {
			continue
		}
		cs := chart.Series{Name: n}
		for _, pt := range s.hist.CDF() {
			cs.X = append(cs.X, float64(pt.Value)/1e3)
			cs.Y = append(cs.Y, pt.Share)
		}
		xmax = max(xmax, float64(s.p(0.99))/1e3*1.2)
		series = append(series, cs)
	}
	var buf bytes.Buffer
	if err := chart.Lines(&buf, chart.Options{
		Title:  "lock+unlock latency CDF: 1 goroutine, 5 masters",
		XLabel: "latency of a lock+unlock cycle (µs)", YLabel: "share of cycles",
		YMin: 0, YMax: 1, XMax: xmax, LegendBottom: true,
		Notes: []string{"interleaved in one run on the same redis-server processes; x axis cut at 1.2 × the largest p99"},
	}, series); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results-latency-cdf.png"), buf.Bytes(), 0o644); err != nil {
		return err
	}

	// Throughput bars of scenario 2.
	var cats []chart.Category
	concs := make([]int, 0, len(r.Throughput))
	for c := range r.Throughput {
		concs = append(concs, c)
	}
	sort.Ints(concs)
	for _, c := range concs {
		cat := chart.Category{Label: fmt.Sprintf("%d goroutines", c)}
		for _, n := range fiveNames {
			v := 0.0
			if s := r.Throughput[c][n]; s != nil {
				v = s.throughput()
			}
			cat.Values = append(cat.Values, v)
		}
		cats = append(cats, cat)
	}
	buf.Reset()
	if err := chart.Bars(&buf, chart.Options{
		Title:  "lock+unlock throughput, distinct resources, 5 masters",
		YLabel: "lock+unlock cycles per second",
		Notes:  []string{"interleaved rounds in one run on the same redis-server processes"},
	}, fiveNames, cats); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results-throughput.png"), buf.Bytes(), 0o644)
}

// tableFunc renders one table of stats, ratios against floorName (and
// redsyncName when not empty).
type tableFunc func(m map[string]*stats, order []string, floorName, redsyncName string)

// tables returns the latency and throughput table renderers writing with w.
func tables(w func(format string, a ...any)) (lat, tput tableFunc) {
	lat = func(m map[string]*stats, order []string, floorName, redsyncName string) {
		w("| implementation | p50 | p90 | p99 | p99.9 | p50 vs %s |", floorName)
		if redsyncName != "" {
			w(" %s p50 / p50 |", redsyncName)
		}
		w(" cycles | errors |\n|---|---|---|---|---|---|")
		if redsyncName != "" {
			w("---|")
		}
		w("---|---|\n")
		fl := m[floorName]
		for _, n := range order {
			s := m[n]
			if s == nil {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s |", n, us(s.p(.5)), us(s.p(.9)), us(s.p(.99)), us(s.p(.999)), x(ratio(float64(s.p(.5)), float64(fl.p(.5)))))
			if redsyncName != "" {
				w(" %s |", x(ratio(float64(m[redsyncName].p(.5)), float64(s.p(.5)))))
			}
			w(" %d | %s |\n", s.ok.Load(), errText(s))
		}
		w("\n")
	}
	tput = func(m map[string]*stats, order []string, floorName, redsyncName string) {
		w("| implementation | lock+unlock/s | vs %s |", floorName)
		if redsyncName != "" {
			w(" vs %s |", redsyncName)
		}
		w(" p50 | p99 | cycles | errors | ops/s per round |\n|---|---|---|")
		if redsyncName != "" {
			w("---|")
		}
		w("---|---|---|---|---|\n")
		for _, n := range order {
			s := m[n]
			if s == nil {
				continue
			}
			w("| %s | %s | %s |", n, ops(s.throughput()), x(ratio(s.throughput(), m[floorName].throughput())))
			if redsyncName != "" {
				w(" %s |", x(ratio(s.throughput(), m[redsyncName].throughput())))
			}
			var rs []string
			for _, v := range s.rounds {
				rs = append(rs, ops(v))
			}
			w(" %s | %s | %d | %s | %s |\n", us(s.p(.5)), us(s.p(.99)), s.ok.Load(), errText(s), strings.Join(rs, " / "))
		}
		w("\n")
	}

	return lat, tput
}

// kindsMarkdown writes section 9 (RWMutex and Semaphore vs a plain Lock).
func (r *report) kindsMarkdown(w func(format string, a ...any)) {
	if r.KindsLatency == nil {
		return
	}
	p := r.Plan
	lat, tput := tables(w)
	w("## 9. RWMutex and Semaphore vs a plain Lock (quorumlock, 5 masters)\n\n")
	if r.KindsNote != "" {
		w("%s\n\n", r.KindsNote)
	}
	w("One client; cycles of a plain `Lock`, an `RWMutex` reader's share (`RLock`), an `RWMutex` writer's lock (`Lock`) and a permit of a 2-permit `Semaphore` (`Acquire`, quorum 4 of 5), each followed by its `Release`, on fresh resources, interleaved in %d rounds × %d cycles (one goroutine), then 32 goroutines for %d rounds × %v. The plain lock is a SET and a compare-and-delete script; the others are one Lua script each way (sorted sets scored by the server's TIME), and the permit waits for 4 masters instead of 3.\n\n", p.latRounds, p.latPerRound, p.tpRounds, p.tpDur)
	w("Latency, one goroutine (lock+release cycle):\n\n")
	lat(r.KindsLatency, kindNames, "Lock", "")
	w("Throughput, 32 goroutines on distinct resources:\n\n")
	tput(r.KindsTP, kindNames, "Lock", "")
}
