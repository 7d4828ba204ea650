package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	old := "10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379;10.0.0.4:6379,10.0.0.5:6379,10.0.0.6:6379"
	added := old + ";redis://u:sekrit@10.0.0.7:6379,10.0.0.8:6379,10.0.0.9:6379"
	code, out, errOut := call(t, nil, "plan", "-from", old, "-to", added)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "ring change: 2 groups → 3 groups") || !strings.Contains(out, "moved: ") ||
		strings.Contains(out, "sekrit") || !strings.Contains(out, "u:xxxxx@10.0.0.7") {
		t.Fatalf("output:\n%s", out)
	}
	code, out, _ = call(t, nil, "plan", "-from", old, "-to", added, "-json")
	var rep planReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	sum := 0.0
	for _, m := range rep.Moves {
		sum += m.Share
	}
	if rep.Moved < 0.2 || rep.Moved > 0.45 || sum < rep.Moved-1e-9 || sum > rep.Moved+1e-9 || !rep.Exact {
		t.Fatalf("plan: %+v", rep)
	}
	// The same fleet, reordered: nothing moves.
	reordered := "10.0.0.6:6379,10.0.0.4:6379,10.0.0.5:6379;10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"
	if code, out, _ = call(t, nil, "plan", "-from", old, "-to", reordered); code != 0 || !strings.Contains(out, "moved: 0.00%") {
		t.Fatalf("reordered: exit %d\n%s", code, out)
	}
	// Bad input names the flag.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "-to", old}, "-from: no master"},
		{[]string{"plan", "-from", old, "-to", "10.0.0.1:6379,10.0.0.2:6379"}, "-to[0]"},
		{[]string{"plan", "-from", "bad host", "-to", old}, "-from[0][0]"},
	} {
		code, _, errOut := call(t, nil, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q (want %q)", tc.args, code, errOut, tc.want)
		}
	}
}
