package redlock_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// TestMain starts the masters the examples lock on (redis-server processes
// on loopback, removed at the end), runs every test and example of the
// package, and then checks that no goroutine was left behind.
func TestMain(m *testing.M) {
	procs, err := redisproc.StartN(6, redisproc.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "redlock tests: start the examples' masters:", err)
		os.Exit(1)
	}
	addrs := redisproc.Addrs(procs)
	servers = addrs[:3]
	cluster = [][]string{addrs[:3], addrs[3:]}

	code := m.Run()
	redisproc.StopAll(procs)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: errors on successful test run:", err)
			code = 1
		}
	}
	os.Exit(code)
}
