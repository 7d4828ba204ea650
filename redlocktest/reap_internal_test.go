package redlocktest

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestLeftOver: which fleet objects a starting fleet removes.
func TestLeftOver(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	young, old := now.Add(-time.Minute), now.Add(-ReapAge-time.Minute)
	for _, tc := range []struct {
		name    string
		owner   string
		created time.Time
		want    bool
	}{
		{"this process, old", ownerID, old, false},
		{"a dead process on this host, young", host + "/" + strconv.Itoa(gone.Process.Pid), young, true},
		{"another host, young", "elsewhere.example/1", young, false},
		{"another host, old", "elsewhere.example/1", old, true},
		{"no owner label, young", "", young, false},
		{"no owner label, old", "", old, true},
		{"malformed owner, young", host + "/not-a-pid", young, false},
	} {
		if got := leftOver(tc.owner, tc.created, now); got != tc.want {
			t.Errorf("%s: leftOver(%q) = %v, want %v", tc.name, tc.owner, got, tc.want)
		}
	}
}
