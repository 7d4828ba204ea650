package redlock_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/quorumlock/quorumlock/internal/leakcheck"
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

	os.Exit(leakcheck.Run(func() int {
		defer redisproc.StopAll(procs)
		return m.Run()
	}))
}
