package safety

import (
	"strings"
	"testing"
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
