package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// TestFindReportsALeak: a goroutine started after the snapshot and still
// blocked is reported with its stack; once it returns, Find is clean.
func TestFindReportsALeak(t *testing.T) {
	old := Wait
	Wait = 200 * time.Millisecond
	defer func() { Wait = old }()

	before := Current()
	stop := make(chan struct{})
	done := make(chan struct{})
	go blockedUntil(stop, done)

	err := Find(before)
	if err == nil {
		t.Fatal("a blocked goroutine started after the snapshot was not reported")
	}
	if !strings.Contains(err.Error(), "blockedUntil") || !strings.Contains(err.Error(), "1 goroutine(s) leaked") {
		t.Fatalf("the report does not name the leaked goroutine's function: %v", err)
	}
	close(stop)
	<-done
	if err := Find(before); err != nil {
		t.Fatalf("after the goroutine returned: %v", err)
	}
}

// TestFindWaitsForGoroutinesOnTheirWayOut: a goroutine that returns shortly
// after Find starts is not reported.
func TestFindWaitsForGoroutinesOnTheirWayOut(t *testing.T) {
	before := Current()
	stop := make(chan struct{})
	done := make(chan struct{})
	go blockedUntil(stop, done)
	time.AfterFunc(50*time.Millisecond, func() { close(stop) })
	if err := Find(before); err != nil {
		t.Fatal(err)
	}
	<-done
}

// TestSnapshotIgnores: goroutines running at the snapshot are not reported.
func TestSnapshotIgnores(t *testing.T) {
	old := Wait
	Wait = 100 * time.Millisecond
	defer func() { Wait = old }()
	stop := make(chan struct{})
	done := make(chan struct{})
	go blockedUntil(stop, done)
	if err := Find(Current()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
}

func blockedUntil(stop <-chan struct{}, done chan<- struct{}) {
	<-stop
	close(done)
}

// TestStacksKeepsWhatTheFilterKeeps: Stacks lists the caller first and a
// blocked goroutine by its function; the filter keeps only what it accepts.
func TestStacksKeepsWhatTheFilterKeeps(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go blockedUntil(stop, done)
	defer func() { close(stop); <-done }()
	byName := func(stack string) bool { return strings.Contains(stack, "leakcheck.blockedUntil") }
	var blocked []string
	for deadline := time.Now().Add(10 * time.Second); len(blocked) == 0 && time.Now().Before(deadline); {
		blocked = Stacks(byName)
		time.Sleep(time.Millisecond)
	}
	if len(blocked) != 1 || !strings.HasPrefix(blocked[0], "goroutine ") {
		t.Fatalf("Stacks(blockedUntil) = %q, want the one blocked goroutine's stack", blocked)
	}
	all := Stacks(nil)
	if len(all) < 2 || !strings.Contains(all[0], "TestStacksKeepsWhatTheFilterKeeps") {
		t.Fatalf("Stacks(nil): %d stacks, the first not the caller's: %q", len(all), all)
	}
}
