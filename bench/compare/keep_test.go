package main

import (
	"strings"
	"testing"
)

// TestKeepOtherSections: regenerating the report replaces the sections it
// writes (matched by heading, whatever figures the title carries) and keeps
// the others, in their order, after it.
func TestKeepOtherSections(t *testing.T) {
	old := "# Results\n\nold intro\n\n## 1. Latency: old\n\nold latency\n\n## 10. Fencing (by hand)\n\nfence figures\n\n## Method\n\nold method\n\n## Waiting\n\nwait figures\n"
	gen := "# Results\n\nnew intro\n\n## 1. Latency: new\n\nnew latency\n\n## Method\n\nnew method\n"
	got := keepOtherSections(old, gen)
	for _, want := range []string{"new intro", "new latency", "new method", "## 10. Fencing (by hand)\n\nfence figures", "## Waiting\n\nwait figures"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, gone := range []string{"old intro", "old latency", "old method"} {
		if strings.Contains(got, gone) {
			t.Errorf("kept %q, which the new report replaces:\n%s", gone, got)
		}
	}
	if strings.Index(got, "## 10. Fencing") > strings.Index(got, "## Waiting") {
		t.Errorf("the kept sections lost their order:\n%s", got)
	}
}
