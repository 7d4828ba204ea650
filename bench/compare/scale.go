package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

// scaleResult is the scale section: a fleet of many groups.
type scaleResult struct {
	Groups, Masters int
	Ulimit          uint64
	RealProcs       bool   // the fleet ran as real redis-server processes
	Note            string // why not, or how
	StartTime       time.Duration
	RedisMemPerProc float64 // bytes, from MemAvailable before/after starting them (approximate)

	NewTime             time.Duration // redlock.New on the fleet
	HeapPerMaster       float64       // bytes
	StackPerMaster      float64       // bytes
	GoroutinesPerMaster float64
	UpAfterNew          int

	LoadOps         float64 // lock+unlock/s at loadConc goroutines over the fleet
	LoadConc        int
	LoadErrs        int64
	LoadFirstErr    string
	ColdDur         time.Duration
	ColdOps         float64 // the unmeasured cold start
	ColdErrs        int64
	LoadCycles      int64
	LoadMaxAvg      float64 // max/avg commands per group under that load
	RingShareMaxAvg float64 // max/avg ring share (Client.Groups)

	// Down-fleet figures (unreachable loopback addresses, no dial succeeds):
	// what New and a master cost without connections.
	FakeHeapPerMaster float64
	FakeNewTime       time.Duration

	Route []routeRow
}

type routeRow struct {
	Groups        int
	NsPerOp       float64
	AllocsPerOp   float64
	ShareMaxAvg   float64 // max/avg of the ring shares (exact)
	RoutedMaxAvg  float64 // max/avg of 1M routed resources per group
	Moved         float64 // share of resources routed elsewhere once a group is added
	MovedBetween  float64 // … of which to another old group (not to the new one)
	IdealMoved    float64 // 1/(groups+1)
	NewTime       time.Duration
	HeapPerMaster float64
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeGroups returns groups of unreachable loopback addresses (port 1 of
// 127.a.b.c): every dial is refused at once, and only loopback is touched.
func fakeGroups(groups, size, offset int) [][]string {
	out := make([][]string, groups)
	for g := range out {
		for m := 0; m < size; m++ {
			i := offset + g*size + m
			out[g] = append(out[g], fmt.Sprintf("127.%d.%d.%d:1", 1+i/62500, (i/250)%250, i%250+1))
		}
	}
	return out
}

func fakeConfig(groups [][]string) redlock.Config {
	return redlock.Config{
		Cluster:           groups,
		DialTimeout:       100 * time.Millisecond,
		ReconnectInterval: time.Hour, // no background redials during the measurement
		Logger:            quietLogger(),
	}
}

func heapNow() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

func memAvailable() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "MemAvailable:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// runScale measures a fleet of groups × 5 masters, then routing at several
// fleet sizes. progress reports what it is doing.
func runScale(groups int, routeSizes []int, loadDur time.Duration, progress func(string, ...any)) *scaleResult {
	r := &scaleResult{Groups: groups, Masters: groups * 5, LoadConc: 64}
	r.Ulimit = openFileLimit()

	// The fleet: real redis-server processes with small limits, when the
	// machine allows it.
	var servers []*redisproc.Server
	need := uint64(r.Masters)*2 + 256 // one connection per master (+1 when busy), the proxies, slack
	switch {
	case !redisproc.Available():
		r.Note = "redis-server is not installed"
	case r.Ulimit < need:
		r.Note = fmt.Sprintf("ulimit -n is %d, below the %d this process needs for %d masters", r.Ulimit, need, r.Masters)
	default:
		progress("scale: starting %d redis-server processes (--maxmemory 2mb --io-threads 1 --hz 1 --maxclients 64)", r.Masters)
		before := memAvailable()
		t0 := time.Now()
		var err error
		servers, err = redisproc.StartN(r.Masters, redisproc.Options{Args: []string{"--maxmemory", "2mb", "--io-threads", "1", "--hz", "1", "--maxclients", "64", "--databases", "1"}})
		r.StartTime = time.Since(t0)
		if err != nil {
			r.Note = "starting them failed: " + err.Error()
		} else {
			r.RealProcs = true
			if after := memAvailable(); before > after {
				r.RedisMemPerProc = float64(before-after) / float64(r.Masters)
			}
		}
	}
	defer redisproc.StopAll(servers)

	var fleet [][]string
	if r.RealProcs {
		addrs := redisproc.Addrs(servers)
		for g := 0; g < groups; g++ {
			fleet = append(fleet, addrs[g*5:(g+1)*5])
		}
	} else {
		r.Note += "; the fleet figures below use unreachable loopback addresses instead (New succeeds with masters down): routing and client memory only"
		fleet = fakeGroups(groups, 5, 0)
	}

	progress("scale: redlock.New over %d groups × 5 masters", groups)
	h0, s0 := heapNow()
	g0 := runtime.NumGoroutine()
	t0 := time.Now()
	cfg := redlock.Config{Cluster: fleet, Logger: quietLogger()}
	if !r.RealProcs {
		cfg = fakeConfig(fleet)
	}
	c, err := redlock.New(cfg)
	r.NewTime = time.Since(t0)
	if err != nil {
		r.Note += "; redlock.New failed: " + err.Error()
		return r
	}
	h1, s1 := heapNow()
	r.HeapPerMaster = (float64(h1) - float64(h0)) / float64(r.Masters)
	r.StackPerMaster = (float64(s1) - float64(s0)) / float64(r.Masters)
	r.GoroutinesPerMaster = float64(runtime.NumGoroutine()-g0) / float64(r.Masters)
	for _, st := range c.MasterStats() {
		if st.Up {
			r.UpAfterNew++
		}
	}
	r.RingShareMaxAvg = shareMaxAvg(c.Groups())

	if r.RealProcs {
		progress("scale: %d goroutines of lock+unlock over the %d groups for %v", r.LoadConc, groups, loadDur)
		l := &qlLocker{name: "quorumlock", c: c}
		// Cold start, not measured: the first commands to each master's
		// second writer dial its connection (New dials one per master).
		var cold stats
		nm := &names{prefix: "scale:"}
		r.ColdDur = min(loadDur, time.Second)
		throughputRun(l, r.LoadConc, r.ColdDur, 1_000_000, nm, &cold)
		r.ColdOps, r.ColdErrs = cold.throughput(), cold.errs.Load()
		before := c.MasterStats()
		var s stats
		throughputRun(l, r.LoadConc, loadDur, 1_000_000, nm, &s)
		r.LoadOps, r.LoadErrs, r.LoadCycles = s.throughput(), s.errs.Load(), s.ok.Load()
		if f := s.firstErr.Load(); f != nil {
			r.LoadFirstErr = *f
		}
		perGroup := make([]float64, groups)
		for i, st := range c.MasterStats() {
			perGroup[st.Group] += float64(st.Commands - before[i].Commands)
		}
		r.LoadMaxAvg = maxAvg(perGroup)
	}
	_ = c.Close()

	// The same number of masters, all down: the client's own cost.
	{
		fg := fakeGroups(groups, 5, 0)
		h0, _ := heapNow()
		t0 := time.Now()
		c, err := redlock.New(fakeConfig(fg))
		r.FakeNewTime = time.Since(t0)
		if err == nil {
			h1, _ := heapNow()
			r.FakeHeapPerMaster = (float64(h1) - float64(h0)) / float64(groups*5)
			_ = c.Close()
		}
	}

	// Routing at several fleet sizes (groups of 3 unreachable masters).
	for _, n := range routeSizes {
		progress("scale: routing over %d groups", n)
		r.Route = append(r.Route, measureRoute(n))
	}
	return r
}

func shareMaxAvg(gs []redlock.GroupInfo) float64 {
	v := make([]float64, len(gs))
	for i, g := range gs {
		v[i] = g.Share
	}
	return maxAvg(v)
}

func maxAvg(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var sum, mx float64
	for _, x := range v {
		sum += x
		mx = max(mx, x)
	}
	if sum == 0 {
		return 0
	}
	return mx / (sum / float64(len(v)))
}

// measureRoute builds a client over n groups of 3 unreachable masters and
// measures Route, the balance of the ring, and the share of resources that
// move when one more group is added.
func measureRoute(n int) routeRow {
	row := routeRow{Groups: n, IdealMoved: 1 / float64(n+1)}
	fg := fakeGroups(n+1, 3, 100_000)
	h0, _ := heapNow()
	t0 := time.Now()
	c, err := redlock.New(fakeConfig(fg[:n]))
	row.NewTime = time.Since(t0)
	if err != nil {
		return row
	}
	defer c.Close()
	h1, _ := heapNow()
	row.HeapPerMaster = (float64(h1) - float64(h0)) / float64(n*3)
	row.ShareMaxAvg = shareMaxAvg(c.Groups())

	const distinct = 1 << 12
	res := make([]string, distinct)
	for i := range res {
		res[i] = "route:" + strconv.Itoa(i)
	}
	var sink []string
	for i := 0; i < 10_000; i++ {
		sink = c.Route(res[i&(distinct-1)])
	}
	// The best of 7 runs of 200k calls: a shared machine's bursts only
	// ever slow a run down.
	const iters = 200_000
	row.NsPerOp = -1
	for rep := 0; rep < 7; rep++ {
		runtime.GC()
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		start := time.Now()
		for i := 0; i < iters; i++ {
			sink = c.Route(res[i&(distinct-1)])
		}
		el := time.Since(start)
		runtime.ReadMemStats(&b)
		if ns := float64(el.Nanoseconds()) / iters; row.NsPerOp < 0 || ns < row.NsPerOp {
			row.NsPerOp = ns
		}
		row.AllocsPerOp = float64(b.Mallocs-a.Mallocs) / iters
	}
	_ = sink

	// Balance over 1M resources, and moves when group n+1 joins.
	c2, err := redlock.New(fakeConfig(fg))
	if err != nil {
		return row
	}
	defer c2.Close()
	index := make(map[string]int, n)
	for i, g := range fg[:n] {
		index[g[0]] = i
	}
	counts := make([]float64, n)
	moved, between := 0, 0
	const sample = 1_000_000
	for i := 0; i < sample; i++ {
		name := "balance:" + strconv.Itoa(i)
		a := c.Route(name)[0]
		counts[index[a]]++
		if b := c2.Route(name)[0]; b != a {
			moved++
			if b != fg[n][0] {
				between++
			}
		}
	}
	row.RoutedMaxAvg = maxAvg(counts)
	row.Moved = float64(moved) / sample
	row.MovedBetween = float64(between) / sample
	return row
}
