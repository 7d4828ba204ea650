// Command compare runs quorumlock side by side with the hand-written
// go-redis floor, redsync v4 and bsm/redislock, interleaved in one run on
// the same fleet of redis-server processes it starts on 127.0.0.1, and
// writes bench/RESULTS.md (tables with ratios, targets met or not) and PNG
// charts next to it.
//
//	cd bench/compare && go run . -out ../RESULTS.md     (or: make -C bench results)
//
// Every scenario is bounded in time and in count; the whole run takes a
// few minutes. Only 127.0.0.1 is ever a target.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// plan sizes every scenario.
type plan struct {
	latWarm, latRounds, latPerRound int
	latMax                          time.Duration
	tpRounds                        int
	tpDur                           time.Duration
	tpMaxOps                        int64
	hoRounds                        int
	hoDur                           time.Duration
	hoMaxOps                        int64
	slowRounds, slowPerRound        int
	allocsN                         int
	scaleGroups                     int
	routeSizes                      []int
	scaleLoad                       time.Duration
}

var fullPlan = plan{
	latWarm: 300, latRounds: 40, latPerRound: 100, latMax: 40 * time.Second,
	tpRounds: 3, tpDur: time.Second, tpMaxOps: 2_000_000,
	hoRounds: 2, hoDur: 1500 * time.Millisecond, hoMaxOps: 200_000,
	slowRounds: 20, slowPerRound: 50,
	allocsN:     3000,
	scaleGroups: 100, routeSizes: []int{3, 30, 300, 1000}, scaleLoad: 2 * time.Second,
}

var quickPlan = plan{
	latWarm: 50, latRounds: 6, latPerRound: 50, latMax: 10 * time.Second,
	tpRounds: 1, tpDur: 300 * time.Millisecond, tpMaxOps: 200_000,
	hoRounds: 1, hoDur: 400 * time.Millisecond, hoMaxOps: 20_000,
	slowRounds: 4, slowPerRound: 20,
	allocsN:     300,
	scaleGroups: 10, routeSizes: []int{3, 30}, scaleLoad: 300 * time.Millisecond,
}

type nopLogger struct{}

func (nopLogger) Printf(context.Context, string, ...any) {}

func main() {
	out := flag.String("out", "RESULTS.md", "the Markdown report to write; the PNG charts go next to it")
	quick := flag.Bool("quick", false, "a short run (seconds) to check the program, not for figures")
	scaleGroups := flag.Int("scale-groups", 0, "groups × 5 masters in the scale section (0: 100, or 10 with -quick; -1 skips it)")
	retryBase := flag.Duration("retry", 2*time.Millisecond, "handoff scenario: base retry delay of every implementation (jittered ±50%)")
	waiting := flag.Bool("waiting", false, "run only the waiting scenario (issue 12): two default clients taking turns; writes its Markdown section to -out (\"-\": stdout)")
	only := flag.String("only", "", `"kinds": measure only section 9 (RWMutex and Semaphore vs Lock) and replace it in -out, keeping the rest`)
	flag.Parse()
	if *waiting {
		redis.SetLogger(nopLogger{})
		rounds, dur := 5, 2*time.Second
		if *quick {
			rounds, dur = 1, 500*time.Millisecond
		}
		if err := runWaiting(*out, rounds, dur); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		return
	}

	p := fullPlan
	if *quick {
		p = quickPlan
	}
	if *scaleGroups != 0 {
		p.scaleGroups = *scaleGroups
	}
	redis.SetLogger(nopLogger{}) // go-redis logs pool events on its own
	var err error
	switch *only {
	case "":
		err = run(p, *out, *retryBase)
	case "kinds":
		err = runOnlyKinds(p, *out, *retryBase)
	default:
		err = fmt.Errorf("-only %q: want kinds", *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// runKinds measures section 9: a plain Lock, RWMutex RLock and Lock, and
// Semaphore(2) Acquire on one client over the masters five, interleaved.
func runKinds(p plan, rep *report, five []string, retryBase time.Duration) error {
	progress("kinds: plain Lock, RWMutex RLock and Lock, Semaphore(2) Acquire on 5 masters, interleaved")
	q, err := newQuorumlock(kindNames[0], [][]string{five}, retryBase)
	if err != nil {
		return err
	}
	defer q.Close()
	kinds := []locker{q,
		&qlKindLocker{name: kindNames[1], c: q.c, kind: "rlock"},
		&qlKindLocker{name: kindNames[2], c: q.c, kind: "wlock"},
		&qlKindLocker{name: kindNames[3], c: q.c, kind: "acquire"}}
	rep.KindsLatency = latencyRounds(kinds, p.latWarm, p.latRounds, p.latPerRound, p.latMax, "kinds")
	rep.KindsTP = throughputRounds(kinds, 32, p.tpRounds, p.tpDur, p.tpMaxOps, "kindstp")
	return nil
}

// runOnlyKinds measures section 9 alone on 5 fresh masters and puts it in
// the report at out in place of its previous version (or before Findings),
// leaving every other section as it was.
func runOnlyKinds(p plan, out string, retryBase time.Duration) error {
	if !redisproc.Available() {
		return redisproc.ErrNotInstalled
	}
	old, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	began := time.Now()
	load := loadAvg()
	servers, err := redisproc.StartN(5, redisproc.Options{})
	if err != nil {
		return err
	}
	defer redisproc.StopAll(servers)
	rep := &report{Plan: p}
	if err := runKinds(p, rep, redisproc.Addrs(servers), retryBase); err != nil {
		return err
	}
	rep.KindsNote = fmt.Sprintf("Measured on its own (`go run . -only kinds`) on %s in %v, load average %s at start, %s at the end: compare these rows with each other, not with the sections above.",
		began.UTC().Format("2006-01-02 15:04 MST"), time.Since(began).Round(time.Second), load, loadAvg())
	var b strings.Builder
	rep.kindsMarkdown(func(format string, a ...any) { fmt.Fprintf(&b, format, a...) })
	doc := string(old)
	start := strings.Index(doc, "## 9. ")
	if start < 0 {
		start = strings.Index(doc, "## Findings")
		if start < 0 {
			return fmt.Errorf("%s: no section 9 and no Findings section to put it before", out)
		}
		doc = doc[:start] + b.String() + doc[start:]
	} else {
		end := strings.Index(doc[start+1:], "\n## ")
		if end < 0 {
			doc = doc[:start] + b.String()
		} else {
			doc = doc[:start] + b.String() + doc[start+1+end+1:]
		}
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	progress("wrote section 9 of %s in %v", out, time.Since(began).Round(time.Second))
	return nil
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(p plan, out string, retryBase time.Duration) error {
	if !redisproc.Available() {
		return redisproc.ErrNotInstalled
	}
	began := time.Now()
	rep := &report{Plan: p, RetryBase: retryBase, Machine: describeMachine(), LoadStart: loadAvg()}

	progress("starting 15 redis-server processes on 127.0.0.1")
	servers, err := redisproc.StartN(15, redisproc.Options{})
	if err != nil {
		return err
	}
	defer redisproc.StopAll(servers)
	addrs := redisproc.Addrs(servers)
	five := addrs[:5]
	cluster := [][]string{addrs[0:5], addrs[5:10], addrs[10:15]}

	floor5, err := newFloor("floor", five, retryBase)
	if err != nil {
		return err
	}
	defer floor5.Close()
	ql5, err := newQuorumlock("quorumlock", [][]string{five}, retryBase)
	if err != nil {
		return err
	}
	defer ql5.Close()
	rs5 := newRedsync("redsync", five, false, retryBase)
	defer rs5.Close()
	rsff5 := newRedsync("redsync-failfast", five, true, retryBase)
	defer rsff5.Close()
	five4 := []locker{floor5, ql5, rs5, rsff5}

	// 1. One goroutine's latency.
	progress("1/7 latency, 1 goroutine, 5 masters: %d rounds × %d cycles per implementation, interleaved", p.latRounds, p.latPerRound)
	rep.Latency = latencyRounds(five4, p.latWarm, p.latRounds, p.latPerRound, p.latMax, "lat")

	// 2. Throughput on distinct resources.
	rep.Throughput = map[int]map[string]*stats{}
	for _, conc := range []int{32, 128} {
		progress("2/7 throughput, %d goroutines on distinct resources: %d rounds × %v per implementation", conc, p.tpRounds, p.tpDur)
		rep.Throughput[conc] = throughputRounds(five4, conc, p.tpRounds, p.tpDur, p.tpMaxOps, fmt.Sprintf("tp%d", conc))
	}

	// 3. Handoff on one resource.
	progress("3/7 handoff, 32 goroutines on one resource: %d rounds × %v per implementation", p.hoRounds, p.hoDur)
	rep.Handoff = map[string]*handoffStats{}
	for _, l := range five4 {
		rep.Handoff[l.Name()] = &handoffStats{}
	}
	for r := 0; r < p.hoRounds; r++ {
		for k := range five4 {
			l := five4[(r+k)%len(five4)]
			handoffRun(l, 32, p.hoDur, p.hoMaxOps, fmt.Sprintf("handoff:%s:%d", l.Name(), r), rep.Handoff[l.Name()])
		}
	}

	// 4. One master 2 ms slower.
	progress("4/7 one of 5 masters 2 ms slower (toxiproxy latency), 1 goroutine")
	slowAddrs, stopProxy, err := slowFleet(five, 4, 2)
	if err != nil {
		return err
	}
	rep.SlowAddr = five[4]
	{
		f, serr := newFloor("floor", slowAddrs, retryBase)
		if serr != nil {
			stopProxy()
			return serr
		}
		q, serr := newQuorumlock("quorumlock", [][]string{slowAddrs}, retryBase)
		if serr != nil {
			f.Close()
			stopProxy()
			return serr
		}
		rs := newRedsync("redsync", slowAddrs, false, retryBase)
		rsff := newRedsync("redsync-failfast", slowAddrs, true, retryBase)
		rep.Slow = latencyRounds([]locker{f, q, rs, rsff}, 20, p.slowRounds, p.slowPerRound, p.latMax, "slow")
		for _, l := range []locker{f, q, rs, rsff} {
			l.Close()
		}
	}
	stopProxy()

	// 5. One group of 5 vs 3 groups of 5.
	progress("5/7 quorumlock over 1 group × 5 vs 3 groups × 5")
	ql15, err := newQuorumlock("quorumlock 3×5", cluster, retryBase)
	if err != nil {
		return err
	}
	ql5b, err := newQuorumlock("quorumlock 1×5", [][]string{five}, retryBase)
	if err != nil {
		return err
	}
	groupsImpls := []locker{ql5b, ql15}
	rep.GroupsLatency = latencyRounds(groupsImpls, p.latWarm, p.latRounds/2, p.latPerRound, p.latMax, "grp")
	rep.GroupsTP = throughputRounds(groupsImpls, 32, p.tpRounds, p.tpDur, p.tpMaxOps, "grptp")
	rep.GroupsTP128 = throughputRounds(groupsImpls, 128, p.tpRounds, p.tpDur, p.tpMaxOps, "grptp128")
	ql15.Close()
	ql5b.Close()

	// 6. One master.
	progress("6/7 one master: quorumlock with a one-master group, bsm/redislock, raw SET")
	one := addrs[5:6] // a master that the 5-master scenarios did not load
	ql1, err := newQuorumlock("quorumlock-1", [][]string{one}, retryBase)
	if err != nil {
		return err
	}
	defer ql1.Close()
	bsm := newBSM("bsm/redislock", one[0], retryBase)
	defer bsm.Close()
	raw1, err := newFloor("raw SET", one, retryBase)
	if err != nil {
		return err
	}
	defer raw1.Close()
	oneImpls := []locker{raw1, ql1, bsm}
	rep.OneLatency = latencyRounds(oneImpls, p.latWarm, p.latRounds, p.latPerRound, p.latMax, "one")
	rep.OneTP = throughputRounds(oneImpls, 32, p.tpRounds, p.tpDur, p.tpMaxOps, "onetp")

	// 7. Allocations.
	progress("7/7 allocations per lock+unlock cycle, %d sequential cycles each", p.allocsN)
	rep.Allocs = map[string][3]float64{}
	for _, l := range append(append([]locker(nil), five4...), oneImpls...) {
		a, b, e := allocsPerCycle(l, p.allocsN, "allocs")
		rep.Allocs[l.Name()] = [3]float64{a, b, float64(e)}
	}

	// RWMutex and Semaphore vs a plain lock, on one client.
	if err := runKinds(p, rep, five, retryBase); err != nil {
		return err
	}

	// Scale.
	if p.scaleGroups > 0 {
		rep.Scale = runScale(p.scaleGroups, p.routeSizes, p.scaleLoad, progress)
	}

	rep.LoadEnd = loadAvg()
	rep.Took = time.Since(began)
	dir := filepath.Dir(out)
	rep.Charts = []string{"results-latency-cdf.png", "results-throughput.png"}
	if err := rep.writeCharts(dir); err != nil {
		return err
	}
	doc := rep.markdown()
	if old, err := os.ReadFile(out); err == nil {
		doc = keepOtherSections(string(old), doc)
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	progress("wrote %s and %s in %v", out, strings.Join(rep.Charts, ", "), rep.Took.Round(time.Second))
	return nil
}

// slowFleet puts master i behind an in-process toxiproxy on 127.0.0.1 that
// delays its replies by ms milliseconds.
func slowFleet(addrs []string, i, ms int) ([]string, func(), error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "slow", "127.0.0.1:0", addrs[i])
	if err := p.Start(); err != nil {
		return nil, nil, err
	}
	toxic := fmt.Sprintf(`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":%d}}`, ms)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		p.Stop()
		return nil, nil, err
	}
	out := append([]string(nil), addrs...)
	out[i] = p.Listen
	return out, p.Stop, nil
}

// keepOtherSections appends to the generated report the sections ("## "
// headings) of the previous file that this program does not write — the
// figures other benchmarks and tests record there (fencing, waiting, the
// fleet simulation…) — in their order, so that regenerating the peer
// comparison does not erase them.
func keepOtherSections(old, generated string) string {
	ours := map[string]bool{}
	for _, sec := range sections(generated) {
		ours[sec.heading] = true
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(generated, "\n"))
	b.WriteString("\n")
	for _, sec := range sections(old) {
		if sec.heading != "" && !ours[sec.heading] {
			b.WriteString("\n")
			b.WriteString(strings.TrimRight(sec.text, "\n"))
			b.WriteString("\n")
		}
	}
	return b.String()
}

type section struct{ heading, text string }

// sections splits a Markdown document at its "## " headings; the text
// before the first one has an empty heading. A heading is its line up to
// the first parenthesis or colon, so that a section whose title carries
// figures that change keeps its identity.
func sections(doc string) []section {
	var out []section
	cur := section{}
	for _, line := range strings.SplitAfter(doc, "\n") {
		if strings.HasPrefix(line, "## ") {
			out = append(out, cur)
			cur = section{heading: headingKey(line)}
		}
		cur.text += line
	}
	return append(out, cur)
}

func headingKey(line string) string {
	h := strings.TrimSpace(strings.TrimPrefix(line, "## "))
	if i := strings.IndexAny(h, "(:"); i > 0 {
		h = h[:i]
	}
	return strings.TrimSpace(h)
}
