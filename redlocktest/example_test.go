package redlocktest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
	"github.com/quorumlock/quorumlock/redlocktest"
)

// A lock on a fleet of three redis-server processes survives the crash of one
// master: two of three still form a majority. The same code runs on
// containers with redlocktest.Start (or StartT in a test).
func Example() {
	ctx := context.Background()
	fleet, err := redlocktest.StartProcesses(ctx, 1, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fleet.Close()

	client, err := redlock.New(fleet.Config())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	lock, err := client.TryLock(ctx, "orders/42", 10*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The key holds the lock's token on a majority of the group's masters
	// (TryLock returns at quorum: the last master may still be applying it).
	holders := 0
	for i := 0; i < fleet.MastersPerGroup(); i++ {
		if v, _ := fleet.Master(0, i).Do(ctx, "GET", "orders/42"); v == lock.Token() {
			holders++
		}
	}
	fmt.Println("a majority holds the token:", holders >= 2)

	_ = fleet.Master(0, 0).Stop(ctx) // a crash
	fmt.Println("released with one master down:", lock.Release(ctx) == nil)
	// Output:
	// a majority holds the token: true
	// released with one master down: true
}

// Faults on one master, on the process twin; a container fleet behaves the
// same way (see the package documentation for what each fault looks like).
func ExampleMaster() {
	ctx := context.Background()
	fleet, err := redlocktest.StartProcesses(ctx, 1, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fleet.Close()
	m := fleet.Master(0, 1)
	pingErr := func() error {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := m.Do(pctx, "PING")
		return err
	}

	_, _ = m.Do(ctx, "SET", "k", "v")
	_ = m.Pause(ctx)
	fmt.Println("paused, PING fails:", pingErr() != nil)
	_ = m.Unpause(ctx)

	_ = m.Disconnect(ctx)
	fmt.Println("disconnected, PING fails:", pingErr() != nil)
	_ = m.Reconnect(ctx)
	v, _ := m.Do(ctx, "GET", "k")
	fmt.Println("reconnected, k =", v)

	_ = m.Restart(ctx, true)
	v, _ = m.Do(ctx, "GET", "k")
	fmt.Println("after a persisted restart, k =", v)

	_ = m.Restart(ctx, false)
	v, _ = m.Do(ctx, "GET", "k")
	fmt.Println("after a restart without persistence, k =", v)
	// Output:
	// paused, PING fails: true
	// disconnected, PING fails: true
	// reconnected, k = v
	// after a persisted restart, k = v
	// after a restart without persistence, k = <nil>
}

// A container fleet: three groups of five masters. This example needs a
// Docker daemon, so it is compiled but not run by go test.
func ExampleStart() {
	ctx := context.Background()
	fleet, err := redlocktest.Start(ctx, 3, 5)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fleet.Close()

	client, err := redlock.New(fleet.Config()) // Cluster: 3 groups of 5
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	// Partition two masters of the group that owns "orders/42": three of
	// five remain, still a majority.
	for _, addr := range client.Route("orders/42")[:2] {
		_ = fleet.ByAddr(addr).Disconnect(ctx)
	}
	lock, err := client.TryLock(ctx, "orders/42", 10*time.Second)
	fmt.Println(err == nil)
	if err == nil {
		_ = lock.Release(ctx)
	}
}
