package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/quorumlock/quorumlock/bench/latency"
	"github.com/quorumlock/quorumlock/redlock"
)

const benchSynopsis = `Usage: redlock bench [flags]

Runs lock+unlock cycles (Lock, then Release) from -concurrency goroutines
for -duration (and at most -ops cycles), showing progress on stderr, then
prints ops, errors by kind, throughput, latency percentiles of the cycles
and the client's batching factor (commands per pipeline).

Without -servers/-cluster (or REDLOCK_SERVERS/REDLOCK_CLUSTER) it starts an
embedded fleet on 127.0.0.1 (-groups × -masters): redis-server processes
when installed, otherwise in-process miniredis servers.

Examples:
  redlock bench                                   # 1 group × 5 embedded masters, 32 goroutines, 5s
  redlock bench -resources 1 -concurrency 16      # everyone on one resource: contention
  redlock bench -slow-master-ms 2 -plot lat.png   # one master 2 ms slower; latency histogram
  redlock bench -cluster "a:1,b:1,c:1;d:1,e:1,f:1" -json
  redlock bench -mode rw -write-every 10          # RWMutex: RLock cycles, every 10th a writer's Lock
  redlock bench -mode sem -permits 3              # Semaphore(3): Acquire+Release cycles
  redlock bench -metrics 127.0.0.1:9090 -duration 1m  # scrape http://127.0.0.1:9090/metrics meanwhile

-mode chooses what a cycle takes: a plain lock (lock, the default), an
RWMutex's share or exclusive lock (rw), or a Semaphore permit (sem). Latency
is reported by kind (RLock and Lock separately in rw mode).`

// maxBenchDuration is the hard cap of -duration; minBenchDuration the
// shortest run that measures anything (the fleet's pools and scripts are
// warmed up first, but a run must still outlast a few scheduler ticks).
const (
	maxBenchDuration = time.Hour
	minBenchDuration = 100 * time.Millisecond
)

type benchOpts struct {
	fleetFlags
	embeddedFlags
	concurrency   int
	resources     int
	ttl           time.Duration
	duration      time.Duration
	ops           int64
	hold          time.Duration
	try           bool
	maxRetry      int
	retryInterval time.Duration
	slowMs        int
	json          bool
	plot          string
	quiet         bool
	mode          string
	writeEvery    int
	permits       int
	metrics       string
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) (flagSet, error) {
	f := newFlags("bench", benchSynopsis)
	var o benchOpts
	o.fleetFlags.register(f.fs)
	o.embeddedFlags.register(f.fs)
	f.fs.IntVar(&o.concurrency, "concurrency", 32, "goroutines running cycles")
	f.fs.IntVar(&o.resources, "resources", 1024, "distinct resources: 1 = everyone contends for one; ≥ concurrency = no two goroutines share one")
	f.fs.DurationVar(&o.ttl, "ttl", 10*time.Second, "lock TTL")
	f.fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long to run (100ms..1h; with -ops and no -duration: up to 1h, until the ops are done)")
	f.fs.Int64Var(&o.ops, "ops", 0, "stop after this many cycles (0: only -duration bounds the run)")
	f.fs.DurationVar(&o.hold, "hold", 0, "time to hold each lock before releasing it (not counted in the latency)")
	f.fs.BoolVar(&o.try, "try", false, "one attempt per cycle (TryLock) instead of Lock with retries")
	f.fs.IntVar(&o.maxRetry, "max-retry", 0, "Lock's extra attempts (0: the client's default, 3)")
	f.fs.DurationVar(&o.retryInterval, "retry-interval", 0, "Lock's base delay between attempts, jittered (0: the client's default, 200ms)")
	f.fs.IntVar(&o.slowMs, "slow-master-ms", 0, "fault: put the first master of each group behind a local toxiproxy adding this many ms of latency")
	f.fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	f.fs.StringVar(&o.plot, "plot", "", "write a latency histogram of the cycles to this PNG file")
	f.fs.BoolVar(&o.quiet, "q", false, "no progress line and no notes on stderr")
	f.fs.StringVar(&o.mode, "mode", "lock", "what a cycle takes: lock (Client.Lock), rw (RWMutex: RLock, or Lock every -write-every cycles), sem (Semaphore Acquire)")
	f.fs.IntVar(&o.writeEvery, "write-every", 10, "-mode rw: every n-th cycle of a goroutine is a writer's Lock, the others RLock (1: writers only)")
	f.fs.IntVar(&o.permits, "permits", 2, "-mode sem: the semaphore's permits")
	f.fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on http://ADDR/metrics while the bench runs (e.g. 127.0.0.1:9090)")
	if err := f.parse(args, stdout); err != nil {
		return f, err
	}
	if f.fs.NArg() > 0 {
		return f, usagef("unexpected argument %q", f.fs.Arg(0))
	}
	set := setFlags(f.fs)
	if o.ops > 0 && !set["duration"] {
		o.duration = maxBenchDuration // bounded by -ops (and, as always, by the 1h cap)
	}
	if err := o.validate(); err != nil {
		return f, err
	}
	if err := o.embeddedFlags.onlyEmbedded(set, o.fleetFlags, getenv); err != nil {
		return f, err
	}
	if o.plot != "" {
		if err := checkWritable(o.plot); err != nil {
			return f, usagef("-plot %s: %v", o.plot, err)
		}
	}
	return f, runBench(ctx, o, stdout, stderr, getenv)
}

func (o *benchOpts) validate() error {
	if err := o.fleetFlags.validate(); err != nil {
		return err
	}
	if err := o.embeddedFlags.validate(); err != nil {
		return err
	}
	switch {
	case o.concurrency < 1 || o.concurrency > 100_000:
		return usagef("-concurrency %d: want 1..100000", o.concurrency)
	case o.resources < 1:
		return usagef("-resources %d: want at least 1", o.resources)
	case o.ttl <= 0:
		return usagef("-ttl %v: must be positive", o.ttl)
	case o.duration < minBenchDuration || o.duration > maxBenchDuration:
		return usagef("-duration %v: want %v to %v", o.duration, minBenchDuration, maxBenchDuration)
	case o.ops < 0:
		return usagef("-ops %d: must not be negative", o.ops)
	case o.hold < 0 || o.hold >= o.ttl:
		return usagef("-hold %v: want 0 ≤ hold < ttl", o.hold)
	case o.maxRetry < 0 || o.retryInterval < 0:
		return usagef("-max-retry and -retry-interval must not be negative")
	case o.slowMs < 0 || o.slowMs > 10_000:
		return usagef("-slow-master-ms %d: want 0..10000", o.slowMs)
	case o.mode != "lock" && o.mode != "rw" && o.mode != "sem":
		return usagef("-mode %q: want lock, rw or sem", o.mode)
	case o.writeEvery < 1:
		return usagef("-write-every %d: want at least 1", o.writeEvery)
	case o.permits < 1:
		return usagef("-permits %d: want at least 1", o.permits)
	}
	return nil
}

// benchResult is what bench prints (and its JSON form).
type benchResult struct {
	Fleet       fleetInfo     `json:"fleet"`
	Concurrency int           `json:"concurrency"`
	Resources   int           `json:"resources"`
	TTLMs       int64         `json:"ttl_ms"`
	Mode        string        `json:"mode"` // "Lock", "TryLock", "RWMutex …", "Semaphore(k) …"
	ElapsedS    float64       `json:"elapsed_s"`
	Ops         int64         `json:"ops"`
	Errors      errorCounts   `json:"errors"`
	Throughput  float64       `json:"throughput_ops_per_s"`
	Cycle       percentiles   `json:"latency_us"`
	Lock        percentiles   `json:"lock_latency_us"`
	Release     percentiles   `json:"release_latency_us"`
	ByKind      []kindLatency `json:"by_kind,omitempty"` // -mode rw: RLock and Lock apart
	Batching    batching      `json:"batching"`
	Masters     []masterBench `json:"masters"`
	Stopped     string        `json:"stopped"` // "duration", "ops" or "interrupted"
}

type fleetInfo struct {
	Groups       int        `json:"groups"`
	Masters      int        `json:"masters"`
	Source       string     `json:"source"`   // "-servers", "-cluster", "REDLOCK_…" or "embedded"
	Embedded     string     `json:"embedded"` // what the embedded fleet runs, if any
	SlowMasterMs int        `json:"slow_master_ms"`
	Addrs        [][]string `json:"addrs"`
}

// kindLatency is the acquire latency of one kind of cycle.
type kindLatency struct {
	Kind string      `json:"kind"` // "RLock", "Lock (RW)", "Acquire"…
	Ops  int64       `json:"ops"`
	Lock percentiles `json:"lock_latency_us"`
}

// errorCounts counts failed cycles. not_obtained splits as the lock's
// *redlock.QuorumError says: busy (held by another goroutine), no_quorum
// (masters failed or did not answer within -node-timeout) and
// validity_ran_out (the attempt took longer than the TTL allows).
type errorCounts struct {
	NotObtained    int64  `json:"not_obtained"`
	Busy           int64  `json:"busy"`
	NoQuorum       int64  `json:"no_quorum"`
	ValidityRanOut int64  `json:"validity_ran_out"`
	Other          int64  `json:"other"`
	FirstOther     string `json:"first_other,omitempty"`
	FirstNoQuorum  string `json:"first_no_quorum,omitempty"`
}

type percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type batching struct {
	Commands             int64   `json:"commands"`
	Pipelines            int64   `json:"pipelines"`
	CommandsPerPipeline  float64 `json:"commands_per_pipeline"`
	PoolAcquireWaitMsSum float64 `json:"pool_acquire_wait_ms"`
}

type masterBench struct {
	Addr                string  `json:"addr"`
	Group               int     `json:"group"`
	Up                  bool    `json:"up"`
	Commands            int64   `json:"commands"`
	Pipelines           int64   `json:"pipelines"`
	CommandsPerPipeline float64 `json:"commands_per_pipeline"`
	Failures            int64   `json:"failures"`
}

func toPercentiles(h *latency.Histogram) percentiles {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return percentiles{
		P50: us(h.Quantile(0.50)), P90: us(h.Quantile(0.90)), P99: us(h.Quantile(0.99)),
		P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: us(h.Mean()),
	}
}

func runBench(ctx context.Context, o benchOpts, stdout, stderr io.Writer, getenv env) error {
	note := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	fl, err := o.resolve(getenv)
	if err != nil {
		return err
	}
	info := fleetInfo{SlowMasterMs: o.slowMs}
	var groups [][]string
	if fl != nil {
		groups, info.Source = fl.groups, fl.source
	} else {
		e, eerr := startEmbedded(o.embeddedFlags)
		if eerr != nil {
			return eerr
		}
		defer e.stop()
		groups, info.Source, info.Embedded = e.groups, "embedded", e.kind
		note("redlock bench: no servers given: %s", e)
		if e.mini {
			fmt.Fprintf(stderr, "redlock bench: warning: %s\n", miniredisWarning)
			if o.nodeTimeout == 0 {
				o.nodeTimeout = miniredisNodeTimeout
				note("redlock bench: -node-timeout %v for miniredis (give -node-timeout to change it)", miniredisNodeTimeout)
			}
		}
	}
	info.Groups = len(groups)
	for _, g := range groups {
		info.Masters += len(g)
	}
	if o.slowMs > 0 {
		slow, stop, serr := slowMasters(groups, o.slowMs)
		if serr != nil {
			return serr
		}
		defer stop()
		groups = slow
		note("redlock bench: the first master of each group answers %d ms late (toxiproxy on 127.0.0.1)", o.slowMs)
	}
	info.Addrs = groups

	cfg := o.config(groups, stderr)
	cfg.MaxRetry, cfg.RetryInterval = o.maxRetry, o.retryInterval
	var ms *metricsServer
	if o.metrics != "" {
		if ms, err = startMetrics(o.metrics); err != nil {
			return err
		}
		defer func() {
			if serr := ms.stop(); serr != nil {
				note("redlock bench: metrics server: %v", serr)
			}
		}()
		cfg.Observer = ms.col
		note("redlock bench: metrics on %s", ms.url())
	}
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if ms != nil {
		ms.attach(c)
	}
	if err = checkQuorums(ctx, c); err != nil {
		return err
	}

	// Stop early (and still report) on Ctrl-C.
	sctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	names := make([]string, o.resources)
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for i := range names {
		names[i] = "redlock-bench:" + run + ":" + strconv.Itoa(i)
	}
	// Warm-up: dial the pools, load the scripts (not measured). A TTL the
	// client refuses (consumed by the drift allowance) is refused here,
	// before the run, as run refuses it.
	if l, werr := c.TryLock(sctx, names[0], o.ttl); werr == nil {
		_ = l.Release(context.WithoutCancel(sctx))
	} else if ie := (*redlock.InputError)(nil); errors.As(werr, &ie) {
		return usagef("-ttl %v: %s", o.ttl, ie.Reason)
	} else if qe := (*redlock.QuorumError)(nil); errors.As(werr, &qe) && qe.ValidityRanOut {
		fmt.Fprintf(stderr, "redlock bench: warning: -ttl %v is too short for this fleet: a lock+unlock took %v, leaving no validity; expect \"validity ran out\" errors\n",
			o.ttl, qe.Took.Round(time.Microsecond))
	}
	acquire, kinds, err := o.acquirer(c, names)
	if err != nil {
		return err
	}
	for _, i := range []int{0, o.writeEvery - 1} {
		if l, _, err := acquire(sctx, 0, i); err == nil {
			_ = l.Release(context.WithoutCancel(sctx))
		}
	}

	before := c.MasterStats()
	res := benchResult{Fleet: info, Concurrency: o.concurrency, Resources: o.resources, TTLMs: o.ttl.Milliseconds()}
	res.Mode = o.modeName()
	kindH := make([]latency.Histogram, len(kinds))
	var cycle, lockH, relH latency.Histogram
	var claimed, okOps, notObtained, busy, noQuorum, ranOut, other atomic.Int64
	var firstOther, firstNoQuorum atomic.Pointer[string]
	countOther := func(err error) {
		other.Add(1)
		s := oneLine(err.Error())
		firstOther.CompareAndSwap(nil, &s)
	}

	rctx, cancel := context.WithTimeout(sctx, o.duration)
	defer cancel()
	start := time.Now()
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if !o.quiet {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			progress(stderr, start, o.duration, &okOps, &notObtained, &other, progressDone)
		}()
	}

	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := resourcesOf(w, o.concurrency, o.resources)
			var hold *time.Timer
			for i := 0; ; i++ {
				if rctx.Err() != nil {
					return
				}
				if o.ops > 0 && claimed.Add(1) > o.ops {
					return
				}
				t0 := time.Now()
				l, kind, err := acquire(rctx, mine[i%len(mine)], i)
				t1 := time.Now()
				if err != nil {
					if rctx.Err() != nil {
						return // cut by the end of the run: not counted
					}
					if errors.Is(err, redlock.ErrNotObtained) {
						notObtained.Add(1)
						var qe *redlock.QuorumError
						switch {
						case !errors.As(err, &qe):
						case qe.ValidityRanOut:
							ranOut.Add(1)
						case qe.Unavailable():
							noQuorum.Add(1)
							s := oneLine(err.Error())
							firstNoQuorum.CompareAndSwap(nil, &s)
						case qe.Busy():
							busy.Add(1)
						}
					} else {
						countOther(err)
					}
					continue
				}
				if o.hold > 0 {
					if hold == nil {
						hold = time.NewTimer(o.hold)
					} else {
						hold.Reset(o.hold)
					}
					select {
					case <-hold.C:
					case <-rctx.Done():
					}
				}
				t2 := time.Now()
				err = l.Release(context.WithoutCancel(rctx))
				t3 := time.Now()
				if err != nil {
					countOther(fmt.Errorf("release: %w", err))
					continue
				}
				lockH.Record(t1.Sub(t0))
				kindH[kind].Record(t1.Sub(t0))
				relH.Record(t3.Sub(t2))
				cycle.Record(t1.Sub(t0) + t3.Sub(t2))
				okOps.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	progressWG.Wait()

	switch {
	case sctx.Err() != nil:
		res.Stopped = "interrupted"
	case o.ops > 0 && claimed.Load() >= o.ops:
		res.Stopped = "ops"
	default:
		res.Stopped = "duration"
	}
	res.ElapsedS = elapsed.Seconds()
	res.Ops = okOps.Load()
	res.Errors = errorCounts{NotObtained: notObtained.Load(), Busy: busy.Load(), NoQuorum: noQuorum.Load(), ValidityRanOut: ranOut.Load(), Other: other.Load()}
	if p := firstOther.Load(); p != nil {
		res.Errors.FirstOther = *p
	}
	if p := firstNoQuorum.Load(); p != nil {
		res.Errors.FirstNoQuorum = *p
	}
	res.Throughput = float64(res.Ops) / elapsed.Seconds()
	res.Cycle, res.Lock, res.Release = toPercentiles(&cycle), toPercentiles(&lockH), toPercentiles(&relH)
	if len(kinds) > 1 {
		for k, name := range kinds {
			res.ByKind = append(res.ByKind, kindLatency{Kind: name, Ops: int64(kindH[k].Count()), Lock: toPercentiles(&kindH[k])})
		}
	}
	after := c.MasterStats()
	for i, a := range after {
		m := masterBench{Addr: a.Addr, Group: a.Group, Up: a.Up, Commands: a.Commands, Pipelines: a.Pipelines, Failures: a.Failures}
		if i < len(before) {
			m.Commands -= before[i].Commands
			m.Pipelines -= before[i].Pipelines
			m.Failures -= before[i].Failures
			res.Batching.PoolAcquireWaitMsSum += float64(a.Pool.AcquireWait-before[i].Pool.AcquireWait) / 1e6
		}
		if m.Pipelines > 0 {
			m.CommandsPerPipeline = float64(m.Commands) / float64(m.Pipelines)
		}
		res.Batching.Commands += m.Commands
		res.Batching.Pipelines += m.Pipelines
		res.Masters = append(res.Masters, m)
	}
	if res.Batching.Pipelines > 0 {
		res.Batching.CommandsPerPipeline = float64(res.Batching.Commands) / float64(res.Batching.Pipelines)
	}

	// The results first: a plot that cannot be written loses nothing.
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBench(stdout, res)
	}
	if o.plot != "" {
		if err := writeHistogram(o.plot, &cycle, res); err != nil {
			return fmt.Errorf("-plot: %w (the results are above)", err)
		}
		note("redlock bench: latency histogram written to %s", o.plot)
	}
	if res.Ops == 0 && res.Errors.NotObtained+res.Errors.Other > 0 {
		return fmt.Errorf("no cycle succeeded")
	}
	return nil
}

// acquirer returns what a cycle calls to take resource names[idx] (cycle i
// of its goroutine), with the kinds it reports (an index into kinds).
func (o *benchOpts) acquirer(c *redlock.Client, names []string) (func(ctx context.Context, idx, i int) (*redlock.Lock, int, error), []string, error) {
	switch o.mode {
	case "rw":
		ms := make([]*redlock.RWMutex, len(names))
		for i, n := range names {
			ms[i] = c.RWMutex(n)
		}
		return func(ctx context.Context, idx, i int) (*redlock.Lock, int, error) {
			m := ms[idx]
			var l *redlock.Lock
			var err error
			switch {
			case i%o.writeEvery == o.writeEvery-1 && o.try:
				l, err = m.TryLock(ctx, o.ttl)
			case i%o.writeEvery == o.writeEvery-1:
				l, err = m.Lock(ctx, o.ttl)
			case o.try:
				l, err = m.TryRLock(ctx, o.ttl)
			default:
				l, err = m.RLock(ctx, o.ttl)
			}
			if i%o.writeEvery == o.writeEvery-1 {
				return l, 1, err
			}
			return l, 0, err
		}, []string{"RLock", "Lock (RW)"}, nil
	case "sem":
		ss := make([]*redlock.Semaphore, len(names))
		for i, n := range names {
			s, err := c.Semaphore(n, o.permits)
			if err != nil {
				return nil, nil, err
			}
			ss[i] = s
		}
		return func(ctx context.Context, idx, _ int) (*redlock.Lock, int, error) {
			if o.try {
				l, err := ss[idx].TryAcquire(ctx, o.ttl)
				return l, 0, err
			}
			l, err := ss[idx].Acquire(ctx, o.ttl)
			return l, 0, err
		}, []string{"Acquire"}, nil
	}
	return func(ctx context.Context, idx, _ int) (*redlock.Lock, int, error) {
		if o.try {
			l, err := c.TryLock(ctx, names[idx], o.ttl)
			return l, 0, err
		}
		l, err := c.Lock(ctx, names[idx], o.ttl)
		return l, 0, err
	}, []string{"Lock"}, nil
}

// modeName describes what the cycles take.
func (o *benchOpts) modeName() string {
	try := map[bool]string{true: "Try", false: ""}[o.try]
	switch o.mode {
	case "rw":
		if o.writeEvery == 1 {
			return "RWMutex " + try + "Lock"
		}
		return fmt.Sprintf("RWMutex %sRLock, %sLock every %d", try, try, o.writeEvery)
	case "sem":
		return fmt.Sprintf("Semaphore(%d) %sAcquire", o.permits, try)
	}
	return try + "Lock"
}

// checkWritable checks, before a run, that path can be written: an existing
// file is opened for writing (not truncated), a new one is tried as a
// temporary file beside it (and removed).
func checkWritable(path string) error {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return errors.New("is a directory")
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".redlock-plot-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// resourcesOf returns the indexes of the resources goroutine w cycles
// through: w, w+n, w+2n… so that no two goroutines share a resource when
// there are at least as many resources as goroutines.
func resourcesOf(w, n, resources int) []int {
	if resources <= n {
		return []int{w % resources}
	}
	var out []int
	for r := w; r < resources; r += n {
		out = append(out, r)
	}
	return out
}

// checkQuorums fails when some group has no quorum of masters answering.
func checkQuorums(ctx context.Context, c *redlock.Client) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pings := c.Ping(pctx)
	up := make(map[int]int)
	var firstErr = make(map[int]error)
	for _, p := range pings {
		if p.Err == nil {
			up[p.Group]++
		} else if firstErr[p.Group] == nil {
			firstErr[p.Group] = p.Err
		}
	}
	for gi, g := range c.Groups() {
		if up[gi] < g.Quorum {
			return fmt.Errorf("fleet unreachable: group %d has %d of %d masters answering, %d needed (%w)",
				gi, up[gi], len(g.Masters), g.Quorum, firstErr[gi])
		}
	}
	return nil
}

// progress prints one updating line on stderr every 500 ms until done:
// in place on a terminal, one line per second otherwise.
func progress(w io.Writer, start time.Time, total time.Duration, ok, notObtained, other *atomic.Int64, done <-chan struct{}) {
	tty := isTerminal(w)
	every := 500 * time.Millisecond
	if !tty {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprint(w, "\r\x1b[K")
			}
			return
		case now := <-t.C:
			n := ok.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			line := fmt.Sprintf("[%5.1fs/%v] ops %d  ops/s %.0f  errors %d", now.Sub(start).Seconds(), total, n, rate, notObtained.Load()+other.Load())
			if tty {
				fmt.Fprintf(w, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintln(w, line)
			}
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printBench(w io.Writer, r benchResult) {
	fleet := describe(r.Fleet.Addrs)
	switch {
	case r.Fleet.Embedded != "":
		fleet += " (embedded: " + r.Fleet.Embedded + ")"
	default:
		fleet += " (" + r.Fleet.Source + ")"
	}
	if r.Fleet.SlowMasterMs > 0 {
		fleet += fmt.Sprintf(", first master of each group +%d ms", r.Fleet.SlowMasterMs)
	}
	fmt.Fprintf(w, "fleet        %s\n", fleet)
	fmt.Fprintf(w, "load         %s, %s, ttl %v, %s, %.2fs (stopped by %s)\n\n",
		plural(r.Concurrency, "goroutine"), plural(r.Resources, "resource"), time.Duration(r.TTLMs)*time.Millisecond, r.Mode, r.ElapsedS, r.Stopped)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tcycle (lock+unlock)\tlock\tunlock\t\n")
	row := func(name string, get func(percentiles) float64) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, fmtUs(get(r.Cycle)), fmtUs(get(r.Lock)), fmtUs(get(r.Release)))
	}
	row("latency p50", func(p percentiles) float64 { return p.P50 })
	row("p90", func(p percentiles) float64 { return p.P90 })
	row("p99", func(p percentiles) float64 { return p.P99 })
	row("p99.9", func(p percentiles) float64 { return p.P999 })
	row("max", func(p percentiles) float64 { return p.Max })
	row("mean", func(p percentiles) float64 { return p.Mean })
	_ = tw.Flush()
	fmt.Fprintln(w)
	if len(r.ByKind) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "acquire by kind	ops	p50	p90	p99	mean	\n")
		for _, k := range r.ByKind {
			fmt.Fprintf(tw, "%s	%d	%s	%s	%s	%s	\n", k.Kind, k.Ops, fmtUs(k.Lock.P50), fmtUs(k.Lock.P90), fmtUs(k.Lock.P99), fmtUs(k.Lock.Mean))
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ops\t%d lock+unlock cycles\n", r.Ops)
	fmt.Fprintf(tw, "errors\t%d (not obtained %d: busy %d, no quorum %d, validity ran out %d; other %d)\n", r.Errors.NotObtained+r.Errors.Other,
		r.Errors.NotObtained, r.Errors.Busy, r.Errors.NoQuorum, r.Errors.ValidityRanOut, r.Errors.Other)
	if r.Errors.FirstNoQuorum != "" {
		fmt.Fprintf(tw, "first no quorum\t%s\n", r.Errors.FirstNoQuorum)
	}
	if r.Errors.FirstOther != "" {
		fmt.Fprintf(tw, "first other error\t%s\n", r.Errors.FirstOther)
	}
	fmt.Fprintf(tw, "throughput\t%.0f ops/s\n", r.Throughput)
	fmt.Fprintf(tw, "batching\t%.2f commands/pipeline (%d commands in %d pipelines)\n", r.Batching.CommandsPerPipeline, r.Batching.Commands, r.Batching.Pipelines)
	_ = tw.Flush()

	if len(r.Masters) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "GROUP\tMASTER\tUP\tCOMMANDS\tPIPELINES\tCMDS/PIPELINE\tFAILURES\n")
		for _, m := range r.Masters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%.2f\t%d\n", m.Group, m.Addr, yesNo(m.Up), m.Commands, m.Pipelines, m.CommandsPerPipeline, m.Failures)
		}
		_ = tw.Flush()
	}
}

// plural is "1 resource" or "n resources".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// fmtUs prints microseconds with 3 significant digits and a unit.
func fmtUs(us float64) string {
	return fmtDur(time.Duration(us * 1e3))
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', sigDecimals(float64(d)/1e3), 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', sigDecimals(float64(d)/1e6), 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', sigDecimals(d.Seconds()), 64) + "s"
}

// sigDecimals is the number of decimals that leaves 3 significant digits.
func sigDecimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}
