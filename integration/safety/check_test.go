package safety

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func hold(holder, res, token string, start, end, until int64) Record {
	return Record{Holder: holder, Resource: res, Got: true, Token: token, Start: start, End: end, Until: until, Write: WriteDone}
}

func TestCheckSequentialHoldsAreSafe(t *testing.T) {
	recs := []Record{
		hold("a", "r", "t1", 100, 200, 1000),
		hold("b", "r", "t2", 200, 300, 1100), // starts exactly when a ended
		hold("a", "s", "t3", 150, 250, 1000), // another resource: may overlap r's holds
		{Holder: "c", Resource: "r", Unavailable: true},
		{Holder: "c", Resource: "r"},
	}
	rep := Check("seq", recs, map[string]int64{"r": 2, "s": 1})
	if !rep.Safe() || len(rep.Overlaps) != 0 || rep.LostUpdates != 0 {
		t.Fatalf("want safe, got %+v", rep)
	}
	if rep.Attempts != 5 || rep.Holds != 3 || rep.Sections != 3 || rep.Unavailable != 1 || rep.Holders != 3 {
		t.Fatalf("counts: %+v", rep)
	}
	if got := rep.Availability(); got != 0.6 {
		t.Fatalf("availability %v, want 0.6", got)
	}
}

func TestCheckFindsOverlapWithinValidity(t *testing.T) {
	recs := []Record{
		hold("a", "r", "t1", 100, 500, 1000),
		hold("b", "r", "t2", 300, 400, 1000), // inside a's section
		hold("c", "r", "t3", 450, 600, 1000), // still inside a's section
	}
	rep := Check("overlap", recs, map[string]int64{"r": 3})
	if len(rep.Overlaps) != 2 || rep.Safe() {
		t.Fatalf("want 2 overlaps, got %d: %+v", len(rep.Overlaps), rep.Overlaps)
	}
	if rep.Overlaps[0].First.Token != "t1" || rep.Overlaps[0].Second.Token != "t2" || rep.Overlaps[0].By != 100 {
		t.Fatalf("first overlap: %v", rep.Overlaps[0])
	}
	if !strings.Contains(rep.Overlaps[1].String(), "t3") {
		t.Fatalf("second overlap: %v", rep.Overlaps[1])
	}
}

func TestCheckIgnoresTimePastValidity(t *testing.T) {
	// a's section ran past its Until: after Until it no longer held the lock,
	// so b starting after a's Until is not an overlap of the lock.
	recs := []Record{
		hold("a", "r", "t1", 100, 900, 500),
		hold("b", "r", "t2", 600, 700, 1500),
	}
	rep := Check("late", recs, map[string]int64{"r": 2})
	if len(rep.Overlaps) != 0 {
		t.Fatalf("overlaps: %v", rep.Overlaps)
	}
	if rep.LateWrites != 1 {
		t.Fatalf("late writes: %d, want 1", rep.LateWrites)
	}
}

func TestCheckLostAndPhantomUpdates(t *testing.T) {
	recs := []Record{
		hold("a", "r", "t1", 100, 200, 1000),
		hold("b", "r", "t2", 300, 400, 1000),
		hold("c", "r", "t3", 500, 600, 1000),
		hold("a", "s", "t4", 100, 200, 1000),
	}
	recs[2].Write = WriteUnknown
	rep := Check("lost", recs, map[string]int64{"r": 1, "s": 3})
	if rep.LostUpdates != 1 || rep.Registers["r"].Lost != 1 {
		t.Fatalf("lost: %+v", rep.Registers)
	}
	if rep.Phantoms != 2 || rep.Registers["s"].Phantoms != 2 {
		t.Fatalf("phantoms: %+v", rep.Registers)
	}
	// An unknown write may or may not count.
	if rep := Check("unknown", recs[:3], map[string]int64{"r": 3}); rep.LostUpdates != 0 || rep.Phantoms != 0 {
		t.Fatalf("unknown write counted wrong: %+v", rep.Registers)
	}
}

func TestCheckDuplicateTokens(t *testing.T) {
	recs := []Record{hold("a", "r", "t", 100, 200, 1000), hold("b", "r", "t", 300, 400, 1000)}
	if rep := Check("dup", recs, map[string]int64{"r": 2}); rep.DuplicateTokens != 1 || rep.Safe() {
		t.Fatalf("duplicate tokens not found: %+v", rep)
	}
}

func TestTable(t *testing.T) {
	out := Table([]Report{Check("none", []Record{hold("a", "r", "t", 1, 2, 3)}, map[string]int64{"r": 1})})
	for _, want := range []string{"fault", "overlaps", "lost", "avail", "none (0 faults)", "100.0%"} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
}

func kindHold(kind, holder, token string, start, end, until int64) Record {
	r := hold(holder, "r", token, start, end, until)
	r.Kind = kind
	if kind != KindWriter {
		r.Write = WriteSkipped
	}
	return r
}

func TestCheckReadersShareWritersExclude(t *testing.T) {
	recs := []Record{
		kindHold(KindReader, "a", "t1", 100, 500, 1000),
		kindHold(KindReader, "b", "t2", 200, 600, 1000), // readers share: fine
		kindHold(KindWriter, "c", "t3", 700, 800, 1000), // after both: fine
		kindHold(KindReader, "d", "t4", 750, 900, 1000), // inside the writer: overlap
		kindHold(KindWriter, "e", "t5", 850, 950, 1000), // inside reader d: overlap
	}
	rep := Check("rw", recs, map[string]int64{"r": 2})
	if len(rep.Overlaps) != 2 || rep.Safe() {
		t.Fatalf("want 2 overlaps, got %v", rep.Overlaps)
	}
	if rep.Overlaps[0].First.Token != "t3" || rep.Overlaps[0].Second.Token != "t4" || rep.Overlaps[1].Second.Token != "t5" {
		t.Fatalf("overlaps: %v", rep.Overlaps)
	}
	if rep.Reads != 3 || rep.Writes != 2 {
		t.Fatalf("reads %d writes %d", rep.Reads, rep.Writes)
	}
	// A long reader that reaches past a later writer's start is caught even
	// when a shorter reader sits between them.
	recs = []Record{
		kindHold(KindReader, "a", "t1", 100, 900, 1000),
		kindHold(KindReader, "b", "t2", 200, 300, 1000),
		kindHold(KindWriter, "c", "t3", 400, 500, 1000),
	}
	if rep := Check("rw2", recs, map[string]int64{"r": 1}); len(rep.Overlaps) != 1 || rep.Overlaps[0].First.Token != "t1" {
		t.Fatalf("want the writer inside the long reader, got %v", rep.Overlaps)
	}
}

func TestCheckTornReads(t *testing.T) {
	r := kindHold(KindReader, "a", "t1", 100, 500, 1000)
	r.Read, r.ReadAgain, r.ReadTwice = 3, 4, true
	rep := Check("torn", []Record{r}, map[string]int64{"r": 0})
	if rep.TornReads != 1 || rep.Safe() {
		t.Fatalf("torn read not reported: %+v", rep)
	}
}

func TestCheckPermits(t *testing.T) {
	p := func(token string, start, end, until int64) Record {
		r := kindHold(KindPermit, "h"+token, token, start, end, until)
		r.Permits = 2
		return r
	}
	recs := []Record{
		p("t1", 100, 500, 1000),
		p("t2", 200, 600, 1000),
		p("t3", 550, 700, 1000),  // t1 ended: 2 hold (t2, t3): fine
		p("t4", 580, 900, 1000),  // t2 and t3 still hold: a third
		p("t5", 950, 2000, 1000), // after every other (and past its own Until)
	}
	rep := Check("sem", recs, map[string]int64{"r": 0})
	if len(rep.Overlaps) != 1 || rep.Overlaps[0].Second.Token != "t4" || rep.MaxPermits != 3 {
		t.Fatalf("want one excess holder t4 (3 at once), got %v, max %d", rep.Overlaps, rep.MaxPermits)
	}
	recs[3] = p("t4", 600, 900, 1000) // t2 ended at 600: 2 hold
	if rep := Check("sem-ok", recs, map[string]int64{"r": 0}); len(rep.Overlaps) != 0 || rep.MaxPermits != 2 || rep.Permits != 5 {
		t.Fatalf("want no excess, got %v, max %d, permits %d", rep.Overlaps, rep.MaxPermits, rep.Permits)
	}
}

func TestCheckFences(t *testing.T) {
	f := func(h hold2) Record {
		r := hold(h.holder, "r", h.token, h.start, h.end, h.until)
		r.Attempt, r.Fence, r.Write, r.Stalled = h.attempt, h.fence, h.write, h.stalled
		return r
	}
	recs := []Record{
		f(hold2{"a", "t1", 90, 100, 200, 300, 5, WriteDone, false}),
		f(hold2{"b", "t2", 150, 310, 400, 900, 7, WriteDone, false}),  // called after a's TryLock returned: 7 > 5
		f(hold2{"c", "t3", 95, 420, 500, 900, 6, WriteRefused, true}), // called before a returned: no promise; stalled and refused
		f(hold2{"d", "t4", 450, 520, 600, 900, 4, WriteDone, false}),  // called after b (fence 7) returned: inversion
	}
	rep := Check("fences", recs, map[string]int64{"r": 3})
	if rep.FenceInversions != 1 {
		t.Errorf("FenceInversions = %d; want 1 (d after b)", rep.FenceInversions)
	}
	if rep.Refused != 1 || rep.RefusedStalled != 1 || rep.Stalled != 1 {
		t.Errorf("Refused %d, RefusedStalled %d, Stalled %d; want 1, 1, 1", rep.Refused, rep.RefusedStalled, rep.Stalled)
	}
	if rep.LostUpdates != 0 || rep.Sections != 3 {
		t.Errorf("a refused write is not a section: lost %d, sections %d", rep.LostUpdates, rep.Sections)
	}
	if !strings.Contains(Table([]Report{rep}), "refused") {
		t.Error("the table has no refused column")
	}
}

type hold2 struct {
	holder, token                     string
	attempt, start, end, until, fence int64
	write                             Write
	stalled                           bool
}

func TestByGroupClassifiesAttemptsByFault(t *testing.T) {
	t0 := time.Unix(100, 0)
	at := func(ms int) int64 { return t0.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	windows := []Window{
		{Group: 1, Fault: "pause", From: t0.Add(100 * time.Millisecond), To: t0.Add(200 * time.Millisecond)},
		{Group: 0, Fault: "kill", From: t0.Add(50 * time.Millisecond), To: t0.Add(150 * time.Millisecond)},
		{Group: 1, Fault: "kill", From: t0.Add(300 * time.Millisecond), To: t0.Add(400 * time.Millisecond)},
	}
	recs := []Record{
		{Resource: "a", Attempt: at(10), Got: true},         // group 0, healthy
		{Resource: "a", Attempt: at(60), Unavailable: true}, // group 0, kill
		{Resource: "a", Attempt: at(150)},                   // group 0: the kill ended at 150 → healthy, busy
		{Resource: "b", Attempt: at(100), Got: true},        // group 1, pause (From is inside)
		{Resource: "b", Attempt: at(250), Got: true},        // group 1, healthy between its faults
		{Resource: "b", Attempt: at(399)},                   // group 1, kill
	}
	by := ByGroup(recs, windows, 2, func(res string) int { return map[string]int{"a": 0, "b": 1}[res] })
	want := map[string][]GroupStats{
		NoFault: {{Attempts: 2, Holds: 1, Busy: 1}, {Attempts: 1, Holds: 1}},
		"kill":  {{Attempts: 1, Unavailable: 1}, {Attempts: 1, Busy: 1}},
		"pause": {{}, {Attempts: 1, Holds: 1}},
	}
	if !reflect.DeepEqual(by, want) {
		t.Fatalf("ByGroup = %+v, want %+v", by, want)
	}
	if a := by["kill"][0].Availability(); a != 0 {
		t.Errorf("availability of group 0 in a kill = %v, want 0", a)
	}
	table := GroupTable(by, windows)
	for _, s := range []string{"| none | – | – | 2 | 3 | 2 | 1 | 0 |", "| kill | 2 | 100ms | 2 | 2 | 0 | 1 | 1 | 0.0% / 100.0% / 100.0% |", "min 1, median 2, max 2"} {
		if !strings.Contains(table, s) {
			t.Errorf("the table lacks %q:\n%s", s, table)
		}
	}
}
