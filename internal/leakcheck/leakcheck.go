// Package leakcheck finds goroutines a test left behind. It is the small
// part of go.uber.org/goleak that this repository's tests use, kept here so
// that the library module's requirement graph (and so the go.sum of every
// program that imports redlock) does not carry a test-only dependency.
//
// A goroutine counts as leaked when it is not the caller, was not running
// when the ignore Snapshot was taken, and is not one the runtime or the
// testing package keeps (signal handling, the test runner's own
// goroutines). Goroutines that are on their way out get time to finish: Find
// looks again, with backoff, for up to Wait before it reports.
package leakcheck

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Wait is how long Find lets goroutines finish before it reports them. It
// is generous: a loaded machine running -race may take seconds to let a
// closed client's goroutines return.
var Wait = 10 * time.Second

// Snapshot is the set of goroutines running at one moment, to be ignored.
type Snapshot map[uint64]bool

// Current returns the goroutines running now (the ones a later Find or
// VerifyNone should not report).
func Current() Snapshot {
	s := Snapshot{}
	for _, g := range goroutines() {
		s[g.id] = true
	}
	return s
}

// Find returns nil once no leaked goroutine remains (waiting up to Wait),
// or an error listing the stacks of those that remain.
func Find(ignore Snapshot) error {
	deadline := time.Now().Add(Wait)
	sleep := time.Millisecond
	for {
		leaked := leakedNow(ignore)
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			fmt.Fprintf(&b, "%d goroutine(s) leaked:", len(leaked))
			for _, g := range leaked {
				b.WriteString("\n\n")
				b.WriteString(g.stack)
			}
			return fmt.Errorf("%s", b.String())
		}
		time.Sleep(sleep)
		if sleep < 100*time.Millisecond {
			sleep *= 2
		}
	}
}

// VerifyNone fails t if goroutines other than those in ignore remain.
func VerifyNone(t testing.TB, ignore Snapshot) {
	t.Helper()
	if err := Find(ignore); err != nil {
		t.Error(err)
	}
}

// VerifyTestMain runs the tests and, when they passed, fails the run if
// goroutines remain. Use it as the whole of a TestMain.
func VerifyTestMain(m *testing.M) {
	os.Exit(Run(m.Run))
}

// Run calls run (a TestMain's m.Run, or a function that wraps it with setup
// and teardown) and returns its exit code, turned into 1 when it was 0 and
// goroutines remain afterwards.
func Run(run func() int) int {
	code := run()
	if code == 0 {
		if err := Find(nil); err != nil {
			fmt.Fprintln(os.Stderr, "leakcheck: the tests passed but", err)
			code = 1
		}
	}
	return code
}

// Stacks returns the stack of every goroutine running now, as
// runtime.Stack prints it (the caller's first), keeping those for which
// keep reports true; with a nil keep, all of them.
func Stacks(keep func(stack string) bool) []string {
	var out []string
	for _, g := range goroutines() {
		if keep == nil || keep(g.stack) {
			out = append(out, g.stack)
		}
	}
	return out
}

type goroutine struct {
	id    uint64
	stack string
}

// leakedNow returns the goroutines that count as leaked at this moment.
func leakedNow(ignore Snapshot) []goroutine {
	all := goroutines()
	var out []goroutine
	for i, g := range all {
		if i == 0 || ignore[g.id] || standard(g.stack) {
			continue // the caller, ignored, or the runtime's and testing's own
		}
		out = append(out, g)
	}
	return out
}

// goroutines parses runtime.Stack's dump of every goroutine; the caller's
// own comes first.
func goroutines() []goroutine {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		s := string(block)
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		idText, _, _ := strings.Cut(rest, " ")
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, goroutine{id: id, stack: s})
	}
	return out
}

// standard reports whether a goroutine belongs to the runtime or to the
// testing package rather than to the code under test.
func standard(stack string) bool {
	lines := strings.Split(stack, "\n")
	if len(lines) < 2 {
		return false
	}
	top := lines[1] // the function the goroutine is in now
	for _, p := range []string{
		"os/signal.signal_recv", "os/signal.loop", "runtime.ensureSigM",
		"testing.(*M).", "testing.runTests", "testing.RunTests", "testing.tRunner",
		"runtime/trace.", "runtime.goexit",
	} {
		if strings.HasPrefix(top, p) {
			return true
		}
	}
	// The test runner's own goroutines (tests, subtests, fuzz workers)
	// are created by the testing package.
	for _, l := range lines {
		if strings.HasPrefix(l, "created by testing.") {
			return true
		}
	}
	return false
}
