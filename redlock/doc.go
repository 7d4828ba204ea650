// Package redlock provides distributed locks over independent Redis masters:
// the Redlock algorithm, for one group of masters or for a fleet of many
// groups (cluster mode).
//
// A lock on a resource is held when a majority (the quorum) of its group's
// masters accepted it, within a validity that accounts for the time the
// acquisition took and for clock drift. With several groups (Config.Cluster),
// every resource is routed by consistent hashing to exactly one group, so the
// fleet scales out while each lock still needs only its own group's majority.
//
// # Quick start
//
//	client, err := redlock.New(redlock.Config{
//		Servers: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
//	})
//	if err != nil {
//		return err // a *ConfigError naming the bad field
//	}
//	defer client.Close()
//
//	err = client.Do(ctx, "invoice:42", 10*time.Second, func(ctx context.Context) error {
//		return charge(ctx) // ctx is cancelled (cause ErrLockLost) if the lock is lost
//	})
//	if errors.Is(err, redlock.ErrNotObtained) {
//		// busy, or no quorum of masters: see the *QuorumError
//	}
//
// [Client.Do] is the simplest way to hold a lock: it acquires, runs the
// function, and always releases — on return, on error and on panic. For
// explicit handles, [Client.Lock] (retries with jitter) and [Client.TryLock]
// (one attempt) return a [*Lock] with [Lock.Extend], [Lock.Release] and
// [Lock.Until].
//
// # Configuration
//
// [Config] is the documentation of every setting: each field states its
// default and unit, and the zero value selects the default. [New] rejects a
// bad Config with a [*ConfigError]. [Client.Settings] prints what a client
// really runs with. By default New succeeds with masters down and reconnects
// them in the background; set Config.StrictStart to fail fast on a
// misconfiguration (see [IsPermanent]).
//
// # Errors
//
// Every error is one line that names the operation and the resource once.
// [ErrNotObtained] (Lock, TryLock, Do) and [ErrNotHeld] (Release, Extend)
// work with errors.Is, as does the caller's context error when it ended an
// operation. A [*QuorumError] (errors.As) carries each master's vote and
// the verdict: [QuorumError.Busy] (someone else holds it: try later),
// [QuorumError.Unavailable] (too many masters failed: look at the fleet) or
// QuorumError.ValidityRanOut (the TTL is too short for the round trips). Bad
// arguments are a [*InputError], never ErrNotObtained.
//
// # What it guarantees
//
// While a lock's validity lasts ([Lock.Until]), no other client can acquire
// the same resource from the same masters, as long as the masters keep
// their data and their clocks. Acquisition sends SET NX PX to every master
// of the group in parallel and returns at the first majority (or as soon as
// one is impossible). A failed attempt is released on every master, also
// those that timed out; release and extend are compare-and-set Lua scripts,
// so only the holder of the token can touch the key, and an extension never
// re-creates an expired key.
//
// # What it cannot guarantee
//
// These limits belong to the setting, not to the client; design for them:
//
//   - Persistence. A master restarted without "appendfsync always" may forget
//     a lock and grant it again. Use AOF with appendfsync always, or keep a
//     crashed master down for at least the longest TTL before it rejoins.
//   - Clocks. TTLs run on the masters' wall clocks. DriftFactor covers clocks
//     that run at slightly different rates, not clocks that jump.
//   - Pauses. A process paused after acquiring (GC, swap, SIGSTOP, a slow
//     VM) can resume after its validity ran out while believing it holds the
//     lock. Check Until before side effects, use the context Do passes (it
//     ends at Until), and make the protected resource reject stale writers.
//   - Fencing. The lock's token is random, not ordered. Where correctness
//     matters, set [Config.Fencing] and pass [Lock.Fence] with every write:
//     a number greater than the fence of every earlier acquisition of the
//     resource, so the resource can refuse a write whose fence is lower than
//     the highest it has seen (a holder paused past its validity). Every
//     lock kind has fences: RWMutex and Semaphore locks ([Lock.Fence]) and
//     LockAll ([MultiLock.Fence]). [Config.RestartQuarantine] keeps a master
//     restarted without its data from voting for new locks until the locks
//     it forgot have expired.
//
// # Operating it
//
// [Client.MasterStats], [Client.Groups] and [Client.Ping] report each
// master's health, counters and connection pool, and each group's share of
// resources; the redlock command (cmd/redlock) prints them and benchmarks a
// fleet.
package redlock
