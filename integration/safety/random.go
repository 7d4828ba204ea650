package safety

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// RandomFaults is a fault schedule for a large fleet: every group, on its
// own, waits a random healthy gap, then loses a random minority of its
// masters (1 to Minority(n), chosen at random) to the next fault of Faults,
// for that fault's Hold, heals them, and starts over. Each group takes the
// kinds in turn from its own starting point (group g starts at g mod
// len(Faults)), so that a short run exercises every kind once enough groups
// have had a fault; which masters, when and for how long stay random.
// Groups are independent: at any moment some are healthy and others are in
// different faults, as in a real fleet. Every fault becomes a Window.
type RandomFaults struct {
	Faults []Fault
	// GapMin and GapMax bound a group's healthy time between two of its
	// faults (uniform). Defaults 300 ms and 2 s.
	GapMin, GapMax time.Duration
	// Settle, when set, is called on every master a fault hit once the fault
	// healed (for example to apply CONFIG SET again to a master that was
	// restarted). Its error is recorded like a fault's.
	Settle func(ctx context.Context, m redlocktest.Master) error
	// Seed makes the choices reproducible (0: random).
	Seed uint64
}

// Window is one fault of one group: which masters it hit, what it was, and
// when — from the start of the injection to the end of the heal.
type Window struct {
	Group    int
	Fault    string
	Masters  []string
	From, To time.Time
}

// Run runs the schedule on f until deadline (a fault starts only if it can
// heal before the deadline, allowing for the time fault operations take) or
// until ctx ends; what is faulted then is healed. It is a Scenario.Schedule.
func (rf RandomFaults) Run(ctx context.Context, f redlocktest.Fleet, deadline time.Time) Schedule {
	gapMin, gapMax := rf.GapMin, rf.GapMax
	if gapMin <= 0 {
		gapMin = 300 * time.Millisecond
	}
	if gapMax < gapMin {
		gapMax = max(gapMin, 2*time.Second)
	}
	seed := rf.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	var s Schedule
	if len(rf.Faults) == 0 {
		return s
	}
	var mu sync.Mutex
	record := func(err error, format string, args ...any) {
		if err != nil {
			mu.Lock()
			s.Errors = append(s.Errors, fmt.Errorf(format+": %w", append(args, err)...))
			mu.Unlock()
		}
	}
	per, k := f.MastersPerGroup(), Minority(f.MastersPerGroup())
	if k == 0 {
		return s
	}
	const opBudget = 800 * time.Millisecond // as in RunMinority
	var wg sync.WaitGroup
	for g := range f.Groups() {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for n := g; ctx.Err() == nil; n++ {
				gap := gapMin + time.Duration(rng.Int64N(int64(gapMax-gapMin)+1))
				select {
				case <-time.After(gap):
				case <-ctx.Done():
					return
				}
				fault := rf.Faults[n%len(rf.Faults)]
				if time.Now().Add(fault.Hold + opBudget).After(deadline) {
					return
				}
				var hit []redlocktest.Master
				w := Window{Group: g, Fault: fault.Name, From: time.Now()}
				for _, i := range rng.Perm(per)[:1+rng.IntN(k)] {
					m := f.Master(g, i)
					hit = append(hit, m)
					w.Masters = append(w.Masters, m.Name())
				}
				each(hit, func(m redlocktest.Master) {
					err := fault.Inject(context.WithoutCancel(ctx), m)
					mu.Lock()
					s.Events = append(s.Events, Event{At: w.From, Master: m.Name(), Err: err})
					mu.Unlock()
					record(err, "%s %s", fault.Name, m.Name())
				})
				if fault.Heal != nil {
					select {
					case <-time.After(fault.Hold):
					case <-ctx.Done():
					}
					each(hit, func(m redlocktest.Master) {
						record(fault.Heal(context.WithoutCancel(ctx), m), "heal %s after %s", m.Name(), fault.Name)
					})
				}
				if rf.Settle != nil {
					each(hit, func(m redlocktest.Master) {
						record(rf.Settle(context.WithoutCancel(ctx), m), "settle %s after %s", m.Name(), fault.Name)
					})
				}
				w.To = time.Now()
				mu.Lock()
				s.Windows = append(s.Windows, w)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(s.Windows, func(i, j int) bool { return s.Windows[i].From.Before(s.Windows[j].From) })
	return s
}

// Router tells which group of a fleet a resource is routed to, as every
// redlock client configured with that fleet routes it.
type Router struct {
	c       *redlock.Client
	groupOf map[string]int
}

// NewRouter builds the Router of the client spec's fleet. Close it when done.
func NewRouter(cs ClientSpec) (*Router, error) {
	cfg := cs.Config()
	cfg.Logger = quiet
	c, err := redlock.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("safety: redlock.New: %w", err)
	}
	r := &Router{c: c, groupOf: make(map[string]int)}
	for g, addrs := range cs.Cluster {
		for _, a := range addrs {
			r.groupOf[a] = g
		}
	}
	return r, nil
}

// Group returns the index (in ClientSpec.Cluster) of the group resource is
// routed to.
func (r *Router) Group(resource string) int { return r.groupOf[r.c.Route(resource)[0]] }

// Close closes the router's client.
func (r *Router) Close() error { return r.c.Close() }

// NoFault is the fault name of the attempts made while their group was
// healthy (in no Window).
const NoFault = "none"

// GroupStats is what the attempts on one group's resources met while the
// group was in one kind of fault (or none).
type GroupStats struct {
	Attempts    int
	Holds       int
	Unavailable int // attempts that failed for want of a quorum of answers
	Busy        int // attempts that failed otherwise: someone else held the resource
}

// Availability is the share of attempts that did not fail for want of a
// quorum (1 when there were none): what the fleet, not contention, allowed.
func (s GroupStats) Availability() float64 {
	if s.Attempts == 0 {
		return 1
	}
	return 1 - float64(s.Unavailable)/float64(s.Attempts)
}

// ByGroup classifies every attempt by the group of its resource (group) and
// by the fault that group was in when the attempt began (NoFault outside
// every window): fault → one GroupStats per group, groups entries long.
func ByGroup(records []Record, windows []Window, groups int, group func(resource string) int) map[string][]GroupStats {
	perGroup := make([][]Window, groups)
	for _, w := range windows {
		perGroup[w.Group] = append(perGroup[w.Group], w)
	}
	for _, ws := range perGroup { // a group's windows follow one another
		sort.Slice(ws, func(i, j int) bool { return ws[i].From.Before(ws[j].From) })
	}
	out := make(map[string][]GroupStats)
	gc := make(map[string]int) // resource → group, asked once per resource
	for _, r := range records {
		g, ok := gc[r.Resource]
		if !ok {
			g = group(r.Resource)
			gc[r.Resource] = g
		}
		kind := NoFault
		ws := perGroup[g]
		at := time.Unix(0, r.Attempt)
		// The last window that began at or before the attempt.
		if i := sort.Search(len(ws), func(i int) bool { return ws[i].From.After(at) }) - 1; i >= 0 && at.Before(ws[i].To) {
			kind = ws[i].Fault
		}
		if out[kind] == nil {
			out[kind] = make([]GroupStats, groups)
		}
		st := &out[kind][g]
		st.Attempts++
		switch {
		case r.Got:
			st.Holds++
		case r.Unavailable:
			st.Unavailable++
		default:
			st.Busy++
		}
	}
	return out
}

// spread is the minimum, median and maximum of xs (zeros when empty).
func spread(xs []float64) (lo, med, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// GroupTable renders ByGroup's result as a Markdown table, one fault kind a
// row (NoFault first), with the windows of each kind: availability (attempts
// not refused for want of a quorum) and the share of attempts that got the
// lock, each as minimum / median / maximum over the groups that saw attempts
// in that state; and, last, the holds per group over the whole run.
func GroupTable(by map[string][]GroupStats, windows []Window) string {
	kinds := make([]string, 0, len(by))
	for k := range by {
		if k != NoFault {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	if by[NoFault] != nil {
		kinds = append([]string{NoFault}, kinds...)
	}
	nwin, inFault := make(map[string]int), make(map[string]time.Duration)
	for _, w := range windows {
		nwin[w.Fault]++
		inFault[w.Fault] += w.To.Sub(w.From)
	}
	var b strings.Builder
	b.WriteString("| group state | faults | mean fault length | groups | attempts | holds | busy | no quorum | availability min / median / max | got the lock min / median / max |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	var holds []float64
	for _, k := range kinds {
		var tot GroupStats
		var avail, got []float64
		for g, st := range by[k] {
			if holds == nil {
				holds = make([]float64, len(by[k]))
			}
			holds[g] += float64(st.Holds)
			if st.Attempts == 0 {
				continue
			}
			tot.Attempts += st.Attempts
			tot.Holds += st.Holds
			tot.Busy += st.Busy
			tot.Unavailable += st.Unavailable
			avail = append(avail, 100*st.Availability())
			got = append(got, 100*float64(st.Holds)/float64(st.Attempts))
		}
		mean := "–"
		if nwin[k] > 0 {
			mean = (inFault[k] / time.Duration(nwin[k])).Round(time.Millisecond).String()
		}
		faults := "–"
		if k != NoFault {
			faults = fmt.Sprint(nwin[k])
		}
		al, am, ah := spread(avail)
		gl, gm, gh := spread(got)
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %d | %.1f%% / %.1f%% / %.1f%% | %.1f%% / %.1f%% / %.1f%% |\n",
			k, faults, mean, len(avail), tot.Attempts, tot.Holds, tot.Busy, tot.Unavailable, al, am, ah, gl, gm, gh)
	}
	hl, hm, hh := spread(holds)
	fmt.Fprintf(&b, "\nHolds per group over the run: min %.0f, median %.0f, max %.0f (%d groups).\n", hl, hm, hh, len(holds))
	return b.String()
}
