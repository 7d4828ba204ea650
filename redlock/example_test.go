package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// The examples lock on real Redis masters: in your program, servers and
// cluster are the addresses of your independent masters, e.g.
//
//	servers := []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}
//
// (Here TestMain starts them as redis-server processes on loopback.)
var (
	servers []string   // one quorum group of 3 masters
	cluster [][]string // two quorum groups of 3 masters
)

// One quorum group of three masters (Elixir redlock: the servers option,
// "single node mode").
func Example_servers() {
	// servers: [[host: "redis1.example.com", port: 6379], ...]
	client, err := redlock.New(redlock.Config{Servers: servers})
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
	client, err := redlock.New(redlock.Config{Cluster: cluster})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	route := client.Route("cluster_key:42")
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

	lock, err := client.Lock(ctx, "cluster_key:42", 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer lock.Release(ctx)
	// Only the routed group holds the key: a client of that group alone sees
	// it locked, a client of the other group does not.
	for _, group := range cluster {
		one, err := redlock.New(redlock.Config{Servers: group})
		if err != nil {
			panic(err)
		}
		locked, _ := one.IsLocked(ctx, "cluster_key:42")
		fmt.Println("routed group:", slices.Equal(group, route), "locked there:", locked)
		one.Close()
	}
	// Unordered output:
	// masters in the route: 3
	// route is a configured group: true
	// order-independent routing: true
	// routed group: true locked there: true
	// routed group: false locked there: false
}

// Run a function under a lock: the Elixir Redlock.transaction/3. Do returns
// the function's error, releases the lock whatever happens, and does not run
// the function when the lock is not obtained ({:error, :lock_failure}).
func ExampleClient_Do() {
	client, err := redlock.New(redlock.Config{Servers: servers})
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
	client, err := redlock.New(redlock.Config{Servers: servers})
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
	client, err := redlock.New(redlock.Config{Servers: servers})
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

// One attempt on a busy resource: ErrNotObtained, with each master's vote
// and the verdict — busy (someone holds it: try later) or unavailable (too
// many masters failed: look at the fleet).
func ExampleClient_TryLock() {
	client, err := redlock.New(redlock.Config{Servers: servers})
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
		fmt.Println("busy:", qe.Busy(), "unavailable:", qe.Unavailable())
	}
	// Output:
	// not obtained: true
	// op: lock masters: 3 needed: 2
	// busy: true unavailable: false
}

// Fail fast at start on a misconfiguration. By default New succeeds with
// masters down and reconnects them in the background (a service can start
// while part of its fleet is away); StrictStart makes New fail instead when
// a master refuses the configuration or a group has no quorum reachable,
// and IsPermanent tells a configuration to fix from an outage to wait out.
func ExampleIsPermanent() {
	// A database index the servers do not have (they have 16).
	bad := make([]string, len(servers))
	for i, s := range servers {
		bad[i] = "redis://" + s + "/99"
	}
	_, err := redlock.New(redlock.Config{Servers: bad, StrictStart: true})
	fmt.Println("New failed:", err != nil, "permanent:", redlock.IsPermanent(err))

	// Without StrictStart, the same check is a Ping away.
	client, err := redlock.New(redlock.Config{Servers: bad})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	for _, p := range client.Ping(context.Background()) {
		if redlock.IsPermanent(p.Err) {
			fmt.Println("misconfigured master, group", p.Group)
		}
	}
	// Output:
	// New failed: true permanent: true
	// misconfigured master, group 0
	// misconfigured master, group 0
	// misconfigured master, group 0
}

// The settings a client runs with: every default filled in, passwords
// redacted. MaxRetry NoRetries turns retries off (0 selects the default 3).
func ExampleClient_Settings() {
	client, err := redlock.New(redlock.Config{Servers: servers, MaxRetry: redlock.NoRetries})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	s := client.Settings()
	fmt.Println("PoolSize:", s.PoolSize, "NodeTimeout:", s.NodeTimeout, "RetryInterval:", s.RetryInterval)
	fmt.Println("no retries:", s.MaxRetry == redlock.NoRetries)

	defaults, err := redlock.New(redlock.Config{Servers: servers})
	if err != nil {
		panic(err)
	}
	defer defaults.Close()
	fmt.Println("MaxRetry:", defaults.Settings().MaxRetry)
	// Output:
	// PoolSize: 2 NodeTimeout: 100ms RetryInterval: 200ms
	// no retries: true
	// MaxRetry: 3
}

// The Elixir redlock options, one to one: pool_size → PoolSize,
// drift_factor → DriftFactor, max_retry → MaxRetry, retry_interval_base →
// RetryInterval (or, with retry_interval_max, an ExponentialBackoff
// RetryStrategy), reconnection_interval_base → ReconnectInterval, servers →
// Servers, cluster → Cluster. A group needs an odd number of masters.
func ExampleConfig() {
	client, err := redlock.New(redlock.Config{
		PoolSize:          2,                      // pool_size: 2
		DriftFactor:       0.01,                   // drift_factor: 0.01
		MaxRetry:          3,                      // max_retry: 3
		RetryInterval:     300 * time.Millisecond, // retry_interval_base: 300
		ReconnectInterval: 500 * time.Millisecond, // reconnection_interval_base: 500
		Servers:           servers,                // servers: [...] (an odd number)
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	g := client.Groups()[0]
	fmt.Println("masters:", len(g.Masters), "quorum:", g.Quorum)

	// retry_interval_base: 300, retry_interval_max: 3_000 as a growing backoff.
	backoff, err := redlock.New(redlock.Config{
		Servers:       servers,
		RetryStrategy: redlock.ExponentialBackoff(3, 300*time.Millisecond, 3*time.Second),
	})
	if err != nil {
		panic(err)
	}
	defer backoff.Close()

	// An even group is refused ("you must set odd number of server").
	_, err = redlock.New(redlock.Config{Servers: servers[:2]})
	var ce *redlock.ConfigError
	fmt.Println("even group refused:", errors.As(err, &ce), ce.Field)
	// Output:
	// masters: 3 quorum: 2
	// even group refused: true Servers
}

// Await waits for a busy resource without polling: it is woken by the
// holder's release.
func ExampleClient_Await() {
	client, err := redlock.New(redlock.Config{Servers: servers})
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
	client, err := redlock.New(redlock.Config{Cluster: cluster})
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
	client, err := redlock.New(redlock.Config{Servers: servers})
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
	client, err := redlock.New(redlock.Config{Servers: servers})
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

// fencedStore is a resource that checks fencing tokens: it refuses a write
// whose fence is lower than the highest it has seen. (A database does the
// same with a conditional update: UPDATE … WHERE fence <= $fence.)
type fencedStore struct {
	highest int64 // the highest fence of a write (a writer's)
	read    int64 // the highest fence of a read (a reader's)
	value   string
}

// Write is a writer's write: refused below the highest fence of any access,
// reads included (a writer below a reader's fence is stale, and would write
// under a live reader).
func (s *fencedStore) Write(fence int64, value string) error {
	if top := max(s.highest, s.read); fence < top {
		return fmt.Errorf("refused: fence %d is below %d", fence, top)
	}
	s.highest, s.value = fence, value
	return nil
}

// Read is a reader's read: refused below the highest fence a writer used
// (the reader took its share before that writer got the lock: it is stale),
// never for being below another reader's — readers that share hold fences
// in no particular order.
func (s *fencedStore) Read(fence int64) (string, error) {
	if fence < s.highest {
		return "", fmt.Errorf("refused: fence %d is below the last writer's %d", fence, s.highest)
	}
	s.read = max(s.read, fence)
	return s.value, nil
}

// With Config.Fencing, every lock carries a fence that is higher than the
// fence of every lock of the resource obtained before it. A holder that was
// paused past its validity (GC, swap, a stopped VM) still believes it holds
// the lock; the store it writes to stops it by the fence.
func Example_fencing() {
	client, err := redlock.New(redlock.Config{Servers: servers, Fencing: true})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()
	store := &fencedStore{}

	// Holder A takes the lock, then stalls past its validity.
	a, err := client.Lock(ctx, "invoice:7", 200*time.Millisecond)
	if err != nil {
		panic(err)
	}
	time.Sleep(time.Until(a.Until()) + 200*time.Millisecond)

	// Meanwhile the lock expired and holder B took it, with a higher fence.
	b, err := client.Lock(ctx, "invoice:7", 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("B's fence is higher:", b.Fence() > a.Fence())
	fmt.Println("B writes:", store.Write(b.Fence(), "paid by B") == nil)

	// A wakes up and writes: the store refuses the stale fence.
	err = store.Write(a.Fence(), "paid by A")
	fmt.Println("A writes:", err == nil)
	fmt.Println("value:", store.value)
	_ = b.Release(ctx)
	// Output:
	// B's fence is higher: true
	// B writes: true
	// A writes: false
	// value: paid by B
}

// With Config.Fencing, an RWMutex's readers and writers carry fences from
// the resource's one counter: a writer's fence is above every earlier
// reader's. The store refuses a reader below the highest fence a writer
// used (that reader took its share before the writer got the lock, and was
// paused past its validity since), and a writer below the highest fence of
// any access.
func ExampleRWMutex_fencing() {
	client, err := redlock.New(redlock.Config{Servers: servers, Fencing: true})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()
	store := &fencedStore{}
	m := client.RWMutex("catalog:fenced")

	// Reader R takes its share, then stalls past its validity.
	r, err := m.RLock(ctx, 200*time.Millisecond)
	if err != nil {
		panic(err)
	}
	time.Sleep(time.Until(r.Until()) + 200*time.Millisecond)

	// The share expired; writer W takes the lock, with a higher fence.
	w, err := m.Lock(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("W's fence is higher:", w.Fence() > r.Fence())
	fmt.Println("W writes:", store.Write(w.Fence(), "v2") == nil)
	_ = w.Release(ctx)

	// R wakes up and reads: refused. A new reader reads v2.
	_, err = store.Read(r.Fence())
	fmt.Println("R reads:", err == nil)
	r2, err := m.RLock(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	v, err := store.Read(r2.Fence())
	fmt.Println("a new reader reads:", v, err == nil)
	_ = r2.Release(ctx)
	// Output:
	// W's fence is higher: true
	// W writes: true
	// R reads: false
	// a new reader reads: v2 true
}
