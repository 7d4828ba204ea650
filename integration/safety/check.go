// Package safety checks the mutual exclusion that redlock promises, under
// real faults, with many holders in several OS processes.
//
// Each holder loops: TryLock one of a few resources, then a read-modify-write
// on a shared register guarded only by that lock (GET, sleep a little, SET
// v+1 on a Redis server that is not part of the fleet), then Release. Every
// attempt becomes a Record. Holders in different processes record wall-clock
// times (time.Now().UnixNano(): one machine, one clock), so their critical
// sections can be compared.
//
// Check then asserts the two properties a lock exists for:
//
//   - no two holds of one resource overlap within their validity: sorted by
//     start, hold i's [Start, min(End, Until)] must end before hold j starts;
//   - no register update is lost: for each resource the register's final
//     value equals the number of critical sections whose write was
//     acknowledged (writes whose outcome is unknown widen the bound).
//
// Run drives one scenario end to end: holders as goroutines of this process
// and as child processes (the test binary run again, see StartChild), while
// a fault schedule (Kill, Pause, Partition, RestartPersistent) hits a
// minority of every quorum group of a redlocktest.Fleet.
package safety

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Write is what became of a critical section's register write.
type Write string

const (
	// WriteDone: SET v+1 was acknowledged.
	WriteDone Write = "done"
	// WriteUnknown: SET failed with an error; it may or may not have been applied.
	WriteUnknown Write = "unknown"
	// WriteSkipped: no write was sent (the read failed, or too little
	// validity was left to write safely).
	WriteSkipped Write = "skipped"
	// WriteRefused: the fenced register refused the holder's read or write:
	// it had seen a higher fence (a later holder's).
	WriteRefused Write = "refused"
)

// Record is one attempt of one holder. Times are wall-clock UnixNano.
type Record struct {
	Holder   string `json:"holder"`
	Resource string `json:"resource"`
	Attempt  int64  `json:"attempt"` // TryLock called
	Got      bool   `json:"got"`
	// Unavailable: the attempt failed because too few masters answered for
	// a quorum (errors and timeouts), not because the resource was busy.
	Unavailable bool   `json:"unavailable,omitempty"`
	Err         string `json:"err,omitempty"`

	// Set when Got.
	Token      string `json:"token,omitempty"`
	Start      int64  `json:"start,omitempty"` // TryLock returned the lock: the critical section begins
	End        int64  `json:"end,omitempty"`   // the register write returned: the critical section ends (before Release)
	Until      int64  `json:"until,omitempty"` // Lock.Until()
	Read       int64  `json:"read,omitempty"`  // the register value read
	Fence      int64  `json:"fence,omitempty"` // Lock.Fence() (with fencing)
	Stalled    bool   `json:"stalled,omitempty"`
	Write      Write  `json:"write,omitempty"`
	ReleaseErr string `json:"release_err,omitempty"`

	// Kind is what was taken: "" a plain lock, or KindReader, KindWriter
	// (an RWMutex), KindPermit (a semaphore of Permits permits).
	Kind    string `json:"kind,omitempty"`
	Permits int    `json:"permits,omitempty"`
	// A reader reads the register twice; both reads must agree (no writer
	// wrote while it held). ReadTwice: the second read was made.
	ReadAgain int64 `json:"read_again,omitempty"`
	ReadTwice bool  `json:"read_twice,omitempty"`
}

// Record kinds.
const (
	KindReader = "r"
	KindWriter = "w"
	KindPermit = "p"
)

// effectiveEnd is the end of the hold within its validity.
func (r Record) effectiveEnd() int64 { return min(r.End, r.Until) }

// Overlap is two holds of one resource whose validity windows intersect.
//
// For an RWMutex only holds where one is a writer count (readers share);
// for a semaphore of k permits, Second is a hold that began while k others
// held (First is the one of them that started first).
type Overlap struct {
	Resource string
	First    Record        // the earlier hold
	Second   Record        // started before First's effective end
	By       time.Duration // how long they overlapped
}

func (o Overlap) String() string {
	return fmt.Sprintf("%s: %s (token %s, %d..%d until %d) and %s (token %s, from %d) overlap by %v",
		o.Resource, o.First.Holder, o.First.Token, o.First.Start, o.First.End, o.First.Until,
		o.Second.Holder, o.Second.Token, o.Second.Start, o.By)
}

// RegisterCheck is the register of one resource against its critical sections.
type RegisterCheck struct {
	Final    int64 // the register's value after the run
	Done     int64 // acknowledged writes
	Unknown  int64 // writes of unknown outcome
	Lost     int64 // max(0, Done − Final): updates that vanished
	Phantoms int64 // max(0, Final − Done − Unknown): more increments than sections
}

// Report is the outcome of Check for one scenario.
type Report struct {
	Name      string // the scenario (fault)
	Holders   int    // distinct holders
	Processes int    // OS processes that ran holders
	Faults    int    // fault events injected (one per master hit)

	Attempts    int // TryLock calls
	Holds       int // locks obtained
	Unavailable int // attempts that failed for want of a quorum of answers
	Sections    int // acknowledged register writes (successful critical sections)
	Unknown     int // register writes of unknown outcome
	Skipped     int // holds that did not write
	LateWrites  int // writes acknowledged after the hold's Until
	Stalled     int // holds deliberately paused past their validity (HolderSpec.StallEvery)
	// Refused counts the holds whose register access the fenced register
	// refused (a later holder's higher fence was there first);
	// RefusedStalled, those of stalled holders among them.
	Refused, RefusedStalled int
	// FenceInversions counts pairs of holds of one resource where the later
	// one (started after the other's effective end) has the lower fence
	// (with fencing; 0 otherwise).
	FenceInversions int

	Overlaps        []Overlap
	LostUpdates     int64
	Phantoms        int64
	DuplicateTokens int // a token handed out twice (tokens must be fresh)
	// TornReads counts readers whose two reads of the register differ: a
	// writer wrote while they held a reader's share.
	TornReads int
	// Reads, Writes, Permits count the holds of each kind (RWMutex readers
	// and writers, semaphore permits); MaxPermits is the most permit holds
	// seen at once within validity.
	Reads, Writes, Permits, MaxPermits int

	Registers map[string]RegisterCheck

	Problems []string // anything else that went wrong (fault errors, child failures)

	// UnavailableErrors counts the errors of the attempts that failed for
	// want of a quorum of answers, by message (addresses and numbers kept).
	UnavailableErrors map[string]int

	// Records and Schedule are what Run checked: every attempt, and what
	// the fault schedule did (for analyses such as ByGroup).
	Records  []Record
	Schedule Schedule
}

// TopUnavailable returns the n most frequent errors of unavailable attempts.
func (r Report) TopUnavailable(n int) []string {
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	for m, c := range r.UnavailableErrors {
		all = append(all, kv{m, c})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].msg < all[j].msg })
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%d× %s", all[i].n, all[i].msg))
	}
	return out
}

// Availability is the share of attempts that obtained the lock.
func (r Report) Availability() float64 {
	if r.Attempts == 0 {
		return 0
	}
	return float64(r.Holds) / float64(r.Attempts)
}

// Safe reports that no two holds overlapped and no update was lost or invented.
func (r Report) Safe() bool {
	return len(r.Overlaps) == 0 && r.LostUpdates == 0 && r.Phantoms == 0 && r.DuplicateTokens == 0 && r.TornReads == 0
}

// Check checks records against the final register values (resource → value).
// Every resource in final is checked, with or without records.
func Check(name string, records []Record, final map[string]int64) Report {
	rep := Report{Name: name, Registers: make(map[string]RegisterCheck), UnavailableErrors: make(map[string]int)}
	holders := make(map[string]bool)
	tokens := make(map[string]bool)
	byRes := make(map[string][]Record)
	regs := make(map[string]*RegisterCheck)
	reg := func(res string) *RegisterCheck {
		if regs[res] == nil {
			regs[res] = &RegisterCheck{}
		}
		return regs[res]
	}
	for res, v := range final {
		reg(res).Final = v
	}
	for _, r := range records {
		holders[r.Holder] = true
		rep.Attempts++
		if !r.Got {
			if r.Unavailable {
				rep.Unavailable++
				rep.UnavailableErrors[r.Err]++
			}
			continue
		}
		rep.Holds++
		if tokens[r.Token] {
			rep.DuplicateTokens++
		}
		tokens[r.Token] = true
		byRes[r.Resource] = append(byRes[r.Resource], r)
		switch r.Kind {
		case KindReader:
			rep.Reads++
			if r.ReadTwice && r.ReadAgain != r.Read {
				rep.TornReads++
			}
		case KindWriter:
			rep.Writes++
		case KindPermit:
			rep.Permits++
		}
		if r.Stalled {
			rep.Stalled++
		}
		switch r.Write {
		case WriteDone:
			rep.Sections++
			reg(r.Resource).Done++
			if r.End > r.Until {
				rep.LateWrites++
			}
		case WriteUnknown:
			rep.Unknown++
			reg(r.Resource).Unknown++
		case WriteRefused:
			rep.Refused++
			if r.Stalled {
				rep.RefusedStalled++
			}
		default:
			rep.Skipped++
		}
	}
	rep.Holders = len(holders)

	resources := make([]string, 0, len(byRes))
	for res := range byRes {
		resources = append(resources, res)
	}
	sort.Strings(resources)
	for _, res := range resources {
		holds := byRes[res]
		rep.FenceInversions += fenceInversions(holds) // every kind's fences promise the same
		if holds[0].Kind == KindPermit {
			over, most := overPermits(res, holds)
			rep.Overlaps = append(rep.Overlaps, over...)
			rep.MaxPermits = max(rep.MaxPermits, most)
			continue
		}
		rep.Overlaps = append(rep.Overlaps, overlaps(res, holds)...)
	}

	for res, rc := range regs {
		if rc.Final < rc.Done {
			rc.Lost = rc.Done - rc.Final
		}
		if rc.Final > rc.Done+rc.Unknown {
			rc.Phantoms = rc.Final - rc.Done - rc.Unknown
		}
		rep.LostUpdates += rc.Lost
		rep.Phantoms += rc.Phantoms
		rep.Registers[res] = *rc
	}
	return rep
}

// overlaps sweeps the holds of one resource in order of start, comparing each
// with the hold that reaches furthest so far.
//
// Readers (KindReader) share: a reader is compared with the writer that
// reaches furthest, a writer or a plain lock with any hold. A pair that
// overlaps has its later hold compared with a reach at least as far as the
// earlier one's, so every overlapping pair yields an Overlap.
func overlaps(res string, holds []Record) []Overlap {
	sort.Slice(holds, func(i, j int) bool { return holds[i].Start < holds[j].Start })
	var out []Overlap
	var reach, reachExcl *Record // any hold; holds that exclude (not readers)
	for i := range holds {
		h := &holds[i]
		against := reach
		if h.Kind == KindReader {
			against = reachExcl
		}
		if against != nil && h.Start < against.effectiveEnd() {
			out = append(out, Overlap{Resource: res, First: *against, Second: *h,
				By: time.Duration(min(against.effectiveEnd(), h.effectiveEnd()) - h.Start)})
		}
		if reach == nil || h.effectiveEnd() > reach.effectiveEnd() {
			reach = h
		}
		if h.Kind != KindReader && (reachExcl == nil || h.effectiveEnd() > reachExcl.effectiveEnd()) {
			reachExcl = h
		}
	}
	return out
}

// overPermits sweeps the permit holds of one semaphore in order of start:
// a hold that begins while Permits others still hold (within validity) is
// a violation. It also returns the most holds seen at once.
func overPermits(res string, holds []Record) ([]Overlap, int) {
	sort.Slice(holds, func(i, j int) bool { return holds[i].Start < holds[j].Start })
	var out []Overlap
	var active []*Record
	most := 0
	for i := range holds {
		h := &holds[i]
		live := active[:0]
		for _, a := range active {
			if a.effectiveEnd() > h.Start {
				live = append(live, a)
			}
		}
		active = append(live, h)
		most = max(most, len(active))
		if len(active) > h.Permits {
			first := active[0]
			out = append(out, Overlap{Resource: res, First: *first, Second: *h,
				By: time.Duration(min(first.effectiveEnd(), h.effectiveEnd()) - h.Start)})
		}
	}
	return out, most
}

// fenceInversions counts the pairs (a, b) of holds of one resource where a's
// TryLock returned before b's TryLock was called, yet b's fence is not
// higher than a's — what Fencing promises never happens. Holds without a
// fence are ignored.
func fenceInversions(holds []Record) int {
	byDone := append([]Record(nil), holds...)
	sort.Slice(byDone, func(i, j int) bool { return byDone[i].Start < byDone[j].Start })
	byCall := append([]Record(nil), holds...)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].Attempt < byCall[j].Attempt })
	n, j := 0, 0
	var maxFence int64 // the highest fence among holds obtained before the current call
	for _, b := range byCall {
		for j < len(byDone) && byDone[j].Start < b.Attempt {
			maxFence = max(maxFence, byDone[j].Fence)
			j++
		}
		if b.Fence > 0 && b.Fence <= maxFence {
			n++
		}
	}
	return n
}

// Table renders reports as a fixed-width table, one scenario per line.
func Table(reports []Report) string {
	names := make([]string, len(reports))
	w := len("fault")
	for i, r := range reports {
		names[i] = fmt.Sprintf("%s (%d faults)", r.Name, r.Faults)
		w = max(w, len(names[i]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s %5s %7s %8s %6s %8s %8s %5s %7s %5s %5s %7s %7s %6s %6s\n", w,
		"fault", "procs", "holders", "attempts", "holds", "sections", "overlaps", "lost", "phantom", "late", "unkn", "stalled", "refused", "avail", "no-quo")
	for i, r := range reports {
		noq := 0.0
		if r.Attempts > 0 {
			noq = float64(r.Unavailable) / float64(r.Attempts)
		}
		fmt.Fprintf(&b, "%-*s %5d %7d %8d %6d %8d %8d %5d %7d %5d %5d %7d %7d %5.1f%% %5.1f%%\n", w,
			names[i], r.Processes, r.Holders, r.Attempts, r.Holds, r.Sections,
			len(r.Overlaps), r.LostUpdates, r.Phantoms, r.LateWrites, r.Unknown, r.Stalled, r.Refused, 100*r.Availability(), 100*noq)
	}
	b.WriteString("avail: attempts that got the lock (contention included); no-quo: attempts that failed for want of a quorum of answers;\n")
	b.WriteString("stalled: holds paused past their validity on purpose; refused: holds whose register access the fenced register refused\n")
	return b.String()
}

// KindTable renders the holds of RWMutex and Semaphore scenarios by kind,
// one scenario per line: reads, writes, torn reads (a writer wrote while a
// reader held), permits and the most permits held at once.
func KindTable(reports []Report) string {
	w := len("fault")
	for _, r := range reports {
		w = max(w, len(r.Name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s %6s %6s %5s %7s %8s %8s %6s\n", w, "fault", "reads", "writes", "torn", "permits", "at once", "overlaps", "avail")
	for _, r := range reports {
		fmt.Fprintf(&b, "%-*s %6d %6d %5d %7d %8d %8d %5.1f%%\n", w, r.Name, r.Reads, r.Writes, r.TornReads, r.Permits, r.MaxPermits, len(r.Overlaps), 100*r.Availability())
	}
	return b.String()
}
