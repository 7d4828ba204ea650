package safety

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/quorumlock/quorumlock/redlocktest"
)

// Config is the setup shared by the scenarios of one fleet.
type Config struct {
	Fleet    redlocktest.Fleet
	Client   ClientSpec // Cluster is taken from Fleet when empty
	Register string     // "host:port" of the register server (not part of the fleet)

	// ResourcesPerGroup resources are picked for each group (by routing), so
	// every group's faults matter. Default 1.
	ResourcesPerGroup int
	TTL               time.Duration // default 1 s
	Goroutines        int           // holders in this process; default 3
	Children          int           // holder processes; default 2; negative: none
	ChildGoroutines   int           // holders per child process; default 3
	MaxOps            int           // attempts per holder per scenario; default 2000
	MaxHold           time.Duration // default 3 ms
	MaxPause          time.Duration // default 8 ms
	Margin            time.Duration // default 50 ms
	// Mode and Permits choose what the holders take (HolderSpec.Mode):
	// plain locks by default, ModeRW readers and writers, ModeSemaphore
	// permits of a Permits-permit semaphore.
	Mode    string
	Permits int

	// ChildRun is the -test.run pattern that selects the test calling
	// RunChild in a child process, or "^$" when the test binary's TestMain
	// dispatches to RunChild itself (see the integration package).
	ChildRun string
	// Dir receives the children's record files. Required with Children > 0.
	Dir string
	// Startup is how long children get to start before the holders begin
	// (the same wall-clock instant in every process). Default 1 s.
	Startup time.Duration

	Logf func(format string, args ...any) // default: discard
}

func (c *Config) defaults() {
	if len(c.Client.Cluster) == 0 {
		c.Client.Cluster = c.Fleet.Addrs()
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.ResourcesPerGroup, 1)
	def(&c.Goroutines, 3)
	def(&c.Children, 2)
	def(&c.ChildGoroutines, 3)
	def(&c.MaxOps, 2000)
	defD(&c.TTL, time.Second)
	defD(&c.MaxHold, 3*time.Millisecond)
	defD(&c.MaxPause, 8*time.Millisecond)
	defD(&c.Margin, 50*time.Millisecond)
	defD(&c.Startup, time.Second)
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Scenario is one fault (nil: none) applied to a minority of every group
// while holders contend for Duration.
type Scenario struct {
	Name     string
	Fault    *Fault
	Duration time.Duration
	// Schedule, when set, is the fault schedule instead of Fault's
	// RunMinority (for example RandomFaults.Run): it runs from the holders'
	// start and must return by the deadline it is given.
	Schedule func(ctx context.Context, f redlocktest.Fleet, deadline time.Time) Schedule
	// StallEvery > 0: every holder pauses past its validity on every
	// StallEvery-th hold (HolderSpec.StallEvery).
	StallEvery int
}

// Run runs one scenario: it picks fresh resources, resets their registers,
// starts the child processes and the local holders, runs the fault schedule
// in the same window, heals the fleet, collects every record and checks them.
// The error is for a harness failure (nothing could be checked); problems
// during the run (fault errors, a failed child) are in Report.Problems.
func Run(ctx context.Context, cfg Config, sc Scenario) (Report, error) {
	cfg.defaults()
	if cfg.Children > 0 && (cfg.ChildRun == "" || cfg.Dir == "") {
		return Report{}, errors.New("safety: Config.ChildRun and Config.Dir are required for child processes")
	}
	resources, err := pickResources(cfg, sc.Name)
	if err != nil {
		return Report{}, err
	}
	reg := NewRegister(cfg.Register, 1)
	defer reg.Close()
	if err = reg.Reset(ctx, resources); err != nil {
		return Report{}, fmt.Errorf("safety: reset the registers: %w", err)
	}

	begin := time.Now().Add(cfg.Startup)
	until := begin.Add(sc.Duration)
	holder := func(name string) HolderSpec {
		return HolderSpec{Name: name, Resources: resources, TTL: cfg.TTL, Begin: begin, Until: until,
			MaxOps: cfg.MaxOps, MaxHold: cfg.MaxHold, MaxPause: cfg.MaxPause, Margin: cfg.Margin,
			Mode: cfg.Mode, Permits: cfg.Permits, StallEvery: sc.StallEvery}
	}

	// Children first: they take a moment to start.
	cctx, ccancel := context.WithDeadline(ctx, until.Add(30*time.Second))
	defer ccancel()
	var children []*Child
	var problems []string
	for p := range cfg.Children {
		spec := ChildSpec{Client: cfg.Client, Register: cfg.Register,
			Out: filepath.Join(cfg.Dir, fmt.Sprintf("%s-p%d.jsonl", sanitize(sc.Name), p+1))}
		for g := range cfg.ChildGoroutines {
			spec.Holders = append(spec.Holders, holder(fmt.Sprintf("p%d/h%d", p+1, g)))
		}
		_ = os.Remove(spec.Out)
		ch, cerr := StartChild(cctx, cfg.ChildRun, spec)
		if cerr != nil {
			ccancel()
			for _, c := range children {
				_, _ = c.Wait()
			}
			return Report{}, cerr
		}
		children = append(children, ch)
	}

	type local struct {
		recs []Record
		err  error
	}
	localDone := make(chan local, 1)
	go func() {
		var hs []HolderSpec
		for g := range cfg.Goroutines {
			hs = append(hs, holder(fmt.Sprintf("p0/h%d", g)))
		}
		recs, herr := RunHolders(ctx, cfg.Client, cfg.Register, hs)
		localDone <- local{recs, herr}
	}()

	var sched Schedule
	if sc.Fault != nil || sc.Schedule != nil {
		select {
		case <-time.After(time.Until(begin)):
		case <-ctx.Done():
		}
		if sc.Schedule != nil {
			sched = sc.Schedule(ctx, cfg.Fleet, until)
			cfg.Logf("%s: %d faults over %d groups", sc.Name, len(sched.Windows), cfg.Fleet.Groups())
		} else {
			sched = RunMinority(ctx, cfg.Fleet, *sc.Fault, until)
			cfg.Logf("%s: %d cycles (hold %v, gap %v):%s", sc.Name, len(sched.Cycles), sc.Fault.Hold, sc.Fault.Gap, sched.Log(begin))
		}
		for _, e := range sched.Errors {
			problems = append(problems, e.Error())
		}
	}
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	if err = HealAll(hctx, cfg.Fleet); err != nil {
		problems = append(problems, "heal the fleet: "+err.Error())
	}
	hcancel()

	var records []Record
	l := <-localDone
	if l.err != nil {
		return Report{}, l.err
	}
	records = append(records, l.recs...)
	processes := 1
	for _, ch := range children {
		recs, werr := ch.Wait()
		if werr != nil {
			problems = append(problems, werr.Error())
			continue
		}
		processes++
		records = append(records, recs...)
	}

	final, err := reg.Finals(ctx, resources)
	if err != nil {
		return Report{}, err
	}
	rep := Check(sc.Name, records, final)
	rep.Processes = processes
	rep.Faults = len(sched.Events)
	rep.Problems = append(rep.Problems, problems...)
	rep.Records, rep.Schedule = records, sched
	return rep, nil
}

// pickResources names ResourcesPerGroup resources routed to each group.
func pickResources(cfg Config, prefix string) ([]string, error) {
	r, err := NewRouter(cfg.Client)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	need := make([]int, len(cfg.Client.Cluster))
	for i := range need {
		need[i] = cfg.ResourcesPerGroup
	}
	left := len(need) * cfg.ResourcesPerGroup
	var out []string
	for i := 0; left > 0; i++ {
		if i > 100000 {
			return nil, errors.New("safety: could not route resources to every group")
		}
		res := fmt.Sprintf("%s/r%d", sanitize(prefix), i)
		if g := r.Group(res); need[g] > 0 {
			need[g]--
			left--
			out = append(out, res)
		}
	}
	return out, nil
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}
