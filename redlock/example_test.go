package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

// startMasters starts n throwaway redis-server processes on loopback for an
// example. In an application, these are your independent Redis masters.
func startMasters(n int) ([]*redisproc.Server, []string) {
	servers, err := redisproc.StartN(n, redisproc.Options{})
	if err != nil {
		panic(err)
	}
	return servers, redisproc.Addrs(servers)
}

// One quorum group of three masters (Elixir redlock: the servers option,
// "single node mode").
func Example_servers() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)

	// servers: [[host: "redis1.example.com", port: 6379], ...]
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	lock, err := client.Lock(ctx, "example_key:42", 10*time.Second)
	if err != nil {
		panic(err)
	}
	locked, _ := client.IsLocked(ctx, "example_key:42")
	fmt.Println("locked:", locked)
	fmt.Println("released:", lock.Release(ctx) == nil)
	locked, _ = client.IsLocked(ctx, "example_key:42")
	fmt.Println("locked:", locked)
	// Output:
	// locked: true
	// released: true
	// locked: false
}

// Several quorum groups (Elixir redlock: the cluster option): every resource
// is routed by consistent hashing to one group, and only that group's
// masters hold its key.
func Example_cluster() {
	masters, addrs := startMasters(6)
	defer redisproc.StopAll(masters)

	cluster := [][]string{addrs[:3], addrs[3:]}
	client, err := redlock.New(redlock.Config{Cluster: cluster})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	route := client.Route("example_key:42")
	fmt.Println("masters in the route:", len(route))
	fmt.Println("route is a configured group:", slices.Equal(route, cluster[0]) || slices.Equal(route, cluster[1]))

	// The same fleet listed in another order routes every resource alike.
	reordered, err := redlock.New(redlock.Config{Cluster: [][]string{
		{cluster[1][2], cluster[1][0], cluster[1][1]},
		{cluster[0][1], cluster[0][2], cluster[0][0]},
	}})
	if err != nil {
		panic(err)
	}
	defer reordered.Close()
	same := true
	for i := range 100 {
		res := fmt.Sprint("user:", i)
		a, b := slices.Clone(client.Route(res)), slices.Clone(reordered.Route(res))
		slices.Sort(a)
		slices.Sort(b)
		same = same && slices.Equal(a, b)
	}
	fmt.Println("order-independent routing:", same)

	lock, err := client.Lock(ctx, "example_key:42", 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer lock.Release(ctx)
	onRoute, elsewhere := 0, 0
	for _, m := range masters {
		v, _ := m.Do(ctx, "GET", "example_key:42")
		switch {
		case v == "$"+lock.Token() && slices.Contains(route, m.Addr()):
			onRoute++
		case v != "$-1":
			elsewhere++
		}
	}
	// Lock returns at the first majority: the last master's SET may still be
	// on its way, so count a majority.
	fmt.Println("key on a majority of the routed masters:", onRoute >= 2, "elsewhere:", elsewhere)
	// Output:
	// masters in the route: 3
	// route is a configured group: true
	// order-independent routing: true
	// key on a majority of the routed masters: true elsewhere: 0
}

// Run a function under a lock: the Elixir Redlock.transaction/3. Do returns
// the function's error, releases the lock whatever happens, and does not run
// the function when the lock is not obtained ({:error, :lock_failure}).
func ExampleClient_Do() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	errMy := errors.New("my_error")
	myFunction := func(ctx context.Context) error {
		// do something, and return nil or an error
		return errMy
	}

	err = client.Do(ctx, "example_key:42", 10*time.Second, myFunction)
	fmt.Println("fn's error:", errors.Is(err, errMy))

	// While another holder has the resource, the function does not run.
	holder, _ := client.Lock(ctx, "example_key:42", 10*time.Second)
	err = client.DoWith(ctx, "example_key:42", 10*time.Second, func(ctx context.Context) error {
		fmt.Println("not printed")
		return nil
	}, redlock.WithTryOnce())
	fmt.Println("lock failure:", errors.Is(err, redlock.ErrNotObtained))
	_ = holder.Release(ctx)

	err = client.Do(ctx, "example_key:42", 10*time.Second, func(ctx context.Context) error {
		// ctx is cancelled, with cause redlock.ErrLockLost, if the lock is lost.
		return nil
	})
	fmt.Println("ok:", err == nil)
	// Output:
	// fn's error: true
	// lock failure: true
	// ok: true
}

// Lock, work, unlock: the Elixir Redlock.lock/2 and Redlock.unlock/2.
func ExampleClient_Lock() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	resource := "example_key:42"
	lock, err := client.Lock(ctx, resource, 10*time.Second)
	if err != nil {
		// Elixir: :error -> "failed to lock resource. maybe redis connection got trouble."
		fmt.Println("failed to lock resource:", err)
		return
	}
	fmt.Println("resource:", lock.Resource())
	fmt.Println("valid:", time.Now().Before(lock.Until()))
	// some other code which writes and reads on RDBMS, KVS or other storage
	fmt.Println("unlock:", lock.Release(ctx))
	fmt.Println("unlock again:", errors.Is(lock.Release(ctx), redlock.ErrNotHeld))
	// Output:
	// resource: example_key:42
	// valid: true
	// unlock: <nil>
	// unlock again: true
}

// Extend a held lock (Elixir: Redlock.extend/3); a released lock cannot be
// extended.
func ExampleLock_Extend() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	lock, err := client.Lock(ctx, "report", 2*time.Second)
	if err != nil {
		panic(err)
	}
	before := lock.Until()
	fmt.Println("extend:", lock.Extend(ctx, time.Minute))
	fmt.Println("validity grew:", lock.Until().After(before.Add(30*time.Second)))

	_ = lock.Release(ctx)
	fmt.Println("extend after release:", errors.Is(lock.Extend(ctx, time.Minute), redlock.ErrNotHeld))
	// Output:
	// extend: <nil>
	// validity grew: true
	// extend after release: true
}

// One attempt on a busy resource: ErrNotObtained, with each master's vote.
func ExampleClient_TryLock() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	holder, err := client.TryLock(ctx, "report", 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer holder.Release(ctx)

	_, err = client.TryLock(ctx, "report", 10*time.Second)
	fmt.Println("not obtained:", errors.Is(err, redlock.ErrNotObtained))
	var qe *redlock.QuorumError
	if errors.As(err, &qe) {
		fmt.Println("op:", qe.Op, "masters:", len(qe.Votes), "needed:", qe.Quorum)
	}
	// Output:
	// not obtained: true
	// op: lock masters: 3 needed: 2
}

// The Elixir redlock options, one to one: pool_size → PoolSize,
// drift_factor → DriftFactor, max_retry → MaxRetry, retry_interval_base →
// RetryInterval (or, with retry_interval_max, an ExponentialBackoff
// RetryStrategy), reconnection_interval_base → ReconnectInterval, servers →
// Servers, cluster → Cluster. A group needs an odd number of masters.
func ExampleConfig() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)

	client, err := redlock.New(redlock.Config{
		PoolSize:          2,                      // pool_size: 2
		DriftFactor:       0.01,                   // drift_factor: 0.01
		MaxRetry:          3,                      // max_retry: 3
		RetryInterval:     300 * time.Millisecond, // retry_interval_base: 300
		ReconnectInterval: 500 * time.Millisecond, // reconnection_interval_base: 500
		Servers:           addrs,                  // servers: [...] (an odd number)
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	g := client.Groups()[0]
	fmt.Println("masters:", len(g.Masters), "quorum:", g.Quorum)

	// retry_interval_base: 300, retry_interval_max: 3_000 as a growing backoff.
	backoff, err := redlock.New(redlock.Config{
		Servers:       addrs,
		RetryStrategy: redlock.ExponentialBackoff(3, 300*time.Millisecond, 3*time.Second),
	})
	if err != nil {
		panic(err)
	}
	defer backoff.Close()

	// An even group is refused ("you must set odd number of server").
	_, err = redlock.New(redlock.Config{Servers: addrs[:2]})
	var ce *redlock.ConfigError
	fmt.Println("even group refused:", errors.As(err, &ce), ce.Field)
	// Output:
	// masters: 3 quorum: 2
	// even group refused: true Servers
}

// Await waits for a busy resource without polling: it is woken by the
// holder's release.
func ExampleClient_Await() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	held, err := client.Lock(ctx, "report:daily", time.Minute)
	if err != nil {
		panic(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // work
		_ = held.Release(ctx)              // wakes the waiter at once (not in a minute)
	}()

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lock, err := client.Await(wctx, "report:daily", 10*time.Second)
	if err != nil {
		panic(err) // ErrNotObtained joined with ctx.Err() when wctx ends first
	}
	defer lock.Release(ctx)
	fmt.Println("got it after the holder released:", !held.Valid() && lock.Valid())
	// Output:
	// got it after the holder released: true
}

// LockAll takes several resources, all or nothing, whatever their order
// and whichever groups they are routed to.
func ExampleClient_LockAll() {
	masters, addrs := startMasters(6)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Cluster: [][]string{addrs[:3], addrs[3:]}})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	m, err := client.LockAll(ctx, []string{"account:7", "account:3"}, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("holding", m.Resources())
	// Another caller listing them the other way round gets neither.
	_, err = client.LockAll(ctx, []string{"account:3", "account:7"}, 10*time.Second)
	fmt.Println("second caller:", errors.Is(err, redlock.ErrNotObtained))
	fmt.Println("released:", m.Release(ctx) == nil)

	err = client.DoAll(ctx, []string{"account:3", "account:7"}, 10*time.Second, func(ctx context.Context) error {
		return nil // move money between the two accounts
	})
	fmt.Println("DoAll:", err)
	// Output:
	// holding [account:3 account:7]
	// second caller: true
	// released: true
	// DoAll: <nil>
}

// Done tells a holder that its lock is lost, like etcd's Session.Done.
func ExampleLock_Done() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	lock, err := client.Lock(ctx, "job:9", 300*time.Millisecond)
	if err != nil {
		panic(err)
	}
	select {
	case <-lock.Done(): // nobody extended it: its validity ran out
		fmt.Println("lost; valid:", lock.Valid())
	case <-time.After(30 * time.Second):
		fmt.Println("still held")
	}
	// Output:
	// lost; valid: false
}

// WithMaxHold extends the lock automatically, but never for longer than
// the limit: a stuck section cannot hold the resource forever.
func ExampleWithMaxHold() {
	masters, addrs := startMasters(3)
	defer redisproc.StopAll(masters)
	client, err := redlock.New(redlock.Config{Servers: addrs})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	err = client.DoWith(ctx, "import:batch", time.Second, func(ctx context.Context) error {
		<-ctx.Done() // a section that never finishes on its own
		return context.Cause(ctx)
	}, redlock.WithMaxHold(2*time.Second))
	fmt.Println(errors.Is(err, redlock.ErrLockLost))
	// Output:
	// true
}
