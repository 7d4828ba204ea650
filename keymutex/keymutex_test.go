package keymutex_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/keymutex"
)

// liveness bounds every wait in these tests: it is never a performance
// assertion, only "this did not hang".
const liveness = 5 * time.Second

// eventually polls cond until it holds or liveness runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, liveness)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueued waits until n waiters are queued on key.
func waitQueued[K keymutexKey](t *testing.T, m *keymutex.Mutex[K], key K, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d waiters queued on %v", n, key), func() bool { return m.Waiters(key) == n })
}

type keymutexKey interface {
	~string | ~int | ~float64
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkErr checks that err wraps every target and mentions every word.
func checkErr(t *testing.T, err error, targets []error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Errorf("error %q does not wrap %v", err, target)
		}
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func TestTryLock(t *testing.T) {
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	gone := keymutex.NewOwner("ghost")
	gone.Goodbye()

	tests := []struct {
		name    string
		owner   *keymutex.Owner
		key     float64
		targets []error
		words   []string
	}{
		{"free key", bob, 2, nil, nil},
		{"held by another owner", bob, 1, []error{keymutex.ErrBusy}, []string{"key 1", `"alice"`}},
		{"not reentrant", alice, 1, []error{keymutex.ErrBusy}, []string{"key 1", `"alice"`}},
		{"nil owner", nil, 3, []error{keymutex.ErrInvalid}, []string{"nil owner"}},
		{"NaN key", bob, math.NaN(), []error{keymutex.ErrInvalid}, []string{"NaN"}},
		{"owner gone", gone, 4, []error{keymutex.ErrOwnerGone}, []string{"key 4", `"ghost"`}},
	}
	var m keymutex.Mutex[float64] // the zero value is usable
	if _, err := m.TryLock(alice, 1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := m.TryLock(tt.owner, tt.key)
			if tt.targets == nil {
				mustNil(t, err)
				if l.Owner() != tt.owner || l.Key() != tt.key || len(l.Keys()) != 1 {
					t.Fatalf("lock = %v", l)
				}
				mustNil(t, m.Release(l))
				return
			}
			if l != nil {
				t.Fatalf("got lock %v with error %v", l, err)
			}
			checkErr(t, err, tt.targets, tt.words...)
		})
	}
}

func TestMustLock(t *testing.T) {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	l := m.MustLock(alice, "k")
	defer m.Release(l)

	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok {
			t.Fatalf("MustLock panicked with %v, want an error", r)
		}
		checkErr(t, err, []error{keymutex.ErrBusy}, "MustLock", `key "k"`, `owner "alice"`)
	}()
	m.MustLock(bob, "k")
	t.Fatal("MustLock on a busy key did not panic")
}

func TestRelease(t *testing.T) {
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	tests := []struct {
		name    string
		prepare func(m *keymutex.Mutex[string]) *keymutex.Lock[string]
		targets []error
		words   []string
	}{
		{"held", func(m *keymutex.Mutex[string]) *keymutex.Lock[string] {
			return m.MustLock(alice, "k")
		}, nil, nil},
		{"double release", func(m *keymutex.Mutex[string]) *keymutex.Lock[string] {
			l := m.MustLock(alice, "k")
			mustNil(t, m.Release(l))
			return l
		}, []error{keymutex.ErrNotHeld}, []string{`key "k"`, `owner "alice"`, "already released"}},
		{"given away", func(m *keymutex.Mutex[string]) *keymutex.Lock[string] {
			l := m.MustLock(alice, "k")
			mustNil(t, m.GiveAway(l, bob, nil))
			mustNil(t, m.Release((<-m.Transfers(bob)).Lock))
			return l
		}, []error{keymutex.ErrNotHeld}, []string{`key "k"`, `owner "alice"`, `given away to owner "bob"`}},
		{"owner gone", func(m *keymutex.Mutex[string]) *keymutex.Lock[string] {
			carol := keymutex.NewOwner("carol")
			l := m.MustLock(carol, "k")
			carol.Goodbye()
			return l
		}, []error{keymutex.ErrNotHeld}, []string{`key "k"`, `owner "carol"`, "goodbye"}},
		{"released by ReleaseAll", func(m *keymutex.Mutex[string]) *keymutex.Lock[string] {
			l := m.MustLock(alice, "k")
			if n := m.ReleaseAll(alice); n != 1 {
				t.Errorf("ReleaseAll = %d, want 1", n)
			}
			return l
		}, []error{keymutex.ErrNotHeld}, []string{`key "k"`, "already released"}},
		{"another mutex", func(*keymutex.Mutex[string]) *keymutex.Lock[string] {
			other := keymutex.New[string]()
			l := other.MustLock(alice, "k")
			t.Cleanup(func() { other.Release(l) })
			return l
		}, []error{keymutex.ErrInvalid}, []string{`key "k"`, "another Mutex"}},
		{"nil lock", func(*keymutex.Mutex[string]) *keymutex.Lock[string] {
			return nil
		}, []error{keymutex.ErrInvalid}, []string{"nil lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := keymutex.New[string]()
			l := tt.prepare(m)
			err := m.Release(l)
			if tt.targets == nil {
				mustNil(t, err)
			} else {
				checkErr(t, err, tt.targets, tt.words...)
			}
			if h := m.Holder("k"); h != nil {
				t.Errorf("key still held by %v", h)
			}
			if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
				t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
			}
		})
	}
}

func TestReleaseAsyncLogsFailure(t *testing.T) {
	logs := make(chan string, 4)
	logger := slog.New(slog.NewTextHandler(chanWriter(logs), nil))
	m := keymutex.New[string](keymutex.WithLogger(logger))
	alice := keymutex.NewOwner("alice")

	l := m.MustLock(alice, "k")
	m.ReleaseAsync(l)
	if h := m.Holder("k"); h != nil {
		t.Fatalf("key still held by %v", h)
	}
	select {
	case line := <-logs:
		t.Fatalf("successful release logged %q", line)
	default:
	}

	m.ReleaseAsync(l) // double release: logged
	select {
	case line := <-logs:
		for _, w := range []string{"level=ERROR", `key \"k\"`, `owner \"alice\"`, "already released"} {
			if !strings.Contains(line, w) {
				t.Errorf("log line %q does not mention %s", line, w)
			}
		}
	case <-time.After(liveness):
		t.Fatal("failed async release was not logged")
	}
}

type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

func TestAwaitFIFO(t *testing.T) {
	const n = 8
	m := keymutex.New[string]()
	holder := m.MustLock(keymutex.NewOwner("holder"), "k")

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := keymutex.NewOwner(fmt.Sprint("w", i))
			ctx, cancel := context.WithTimeout(context.Background(), liveness)
			defer cancel()
			l, err := m.Await(ctx, o, "k")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := m.Release(l); err != nil {
				t.Error(err)
			}
		}()
		waitQueued(t, m, "k", i+1) // queue them in a known order
	}
	mustNil(t, m.Release(holder))
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("waiters served in order %v, want first come first served", order)
		}
	}
	if len(order) != n {
		t.Fatalf("%d waiters served, want %d", len(order), n)
	}
}

func TestAwaitTimeout(t *testing.T) {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	l := m.MustLock(alice, "k")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := m.Await(ctx, bob, "k")
	checkErr(t, err, []error{keymutex.ErrBusy, context.DeadlineExceeded}, `key "k"`, `owner "bob"`, `owner "alice"`)
	if n := m.Waiters("k"); n != 0 {
		t.Errorf("%d waiters left queued", n)
	}

	// A context already done fails at once, even on a free key.
	mustNil(t, m.Release(l))
	_, err = m.Await(ctx, bob, "k")
	checkErr(t, err, []error{context.DeadlineExceeded}, `key "k"`)
	if h := m.Holder("k"); h != nil {
		t.Errorf("key held by %v", h)
	}
}

func TestAwaitCause(t *testing.T) {
	m := keymutex.New[int]()
	l := m.MustLock(keymutex.NewOwner("alice"), 1)
	defer m.Release(l)
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		waitQueued(t, m, 1, 1)
		cancel(cause)
	}()
	_, err := m.Await(ctx, keymutex.NewOwner("bob"), 1)
	checkErr(t, err, []error{keymutex.ErrBusy, context.Canceled, cause}, "key 1", "shutting down")
}

func TestAwaitWouldDeadlock(t *testing.T) {
	m := keymutex.New[string]()
	alice := keymutex.NewOwner("alice")
	l := m.MustLock(alice, "b")
	defer m.Release(l)
	ctx := context.Background()

	_, err := m.Await(ctx, alice, "b")
	checkErr(t, err, []error{keymutex.ErrWouldDeadlock}, `key "b"`, `owner "alice"`)
	_, err = m.AwaitAll(ctx, alice, "c", "b", "a")
	checkErr(t, err, []error{keymutex.ErrWouldDeadlock}, `key "b"`)
	if h := m.Holder("a"); h != nil {
		t.Errorf("AwaitAll failed but key a is held by %v", h)
	}
}

// Releases racing with waiters' cancellations never lose the key (the exact
// handoff-to-a-quitter case is forced in TestHandoffToQuitter).
func TestAwaitCancelRacesRelease(t *testing.T) {
	m := keymutex.New[string]()
	alice := keymutex.NewOwner("alice")
	for try := range 50 {
		l := m.MustLock(alice, "k")
		ctx, cancel := context.WithCancel(context.Background())
		quit := make(chan error, 1)
		go func() {
			ql, err := m.Await(ctx, keymutex.NewOwner("quitter"), "k")
			if err == nil {
				err = m.Release(ql)
			}
			quit <- err
		}()
		waitQueued(t, m, "k", 1)
		next := make(chan error, 1)
		go func() {
			nctx, ncancel := context.WithTimeout(context.Background(), liveness)
			defer ncancel()
			nl, err := m.Await(nctx, keymutex.NewOwner("next"), "k")
			if err == nil {
				err = m.Release(nl)
			}
			next <- err
		}()
		waitQueued(t, m, "k", 2)
		if try%2 == 0 {
			cancel()
			mustNil(t, m.Release(l))
		} else {
			mustNil(t, m.Release(l))
			cancel()
		}
		if err := <-quit; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		mustNil(t, <-next) // the next waiter always gets the key
		if h := m.Holder("k"); h != nil {
			t.Fatalf("key left held by %v", h)
		}
	}
}

func TestAwaitAllArguments(t *testing.T) {
	m := keymutex.New[string]()
	alice := keymutex.NewOwner("alice")
	ctx := context.Background()
	tests := []struct {
		name  string
		owner *keymutex.Owner
		keys  []string
		words []string
	}{
		{"no keys", alice, nil, []string{"no keys"}},
		{"duplicate", alice, []string{"b", "a", "b"}, []string{`duplicate key "b"`}},
		{"nil owner", nil, []string{"a"}, []string{"nil owner"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.AwaitAll(ctx, tt.owner, tt.keys...)
			checkErr(t, err, []error{keymutex.ErrInvalid}, tt.words...)
		})
	}
	if keys, _ := m.HeldKeys(); keys != 0 {
		t.Errorf("%d keys held after failed AwaitAll", keys)
	}

	l, err := m.AwaitAll(ctx, alice, "c", "a", "b")
	mustNil(t, err)
	if got := fmt.Sprint(l.Keys()); got != "[a b c]" {
		t.Errorf("Keys() = %s, want [a b c]", got)
	}
	if got := l.String(); got != `keys ["a" "b" "c"] of owner "alice"` {
		t.Errorf("String() = %s", got)
	}
	checkErr(t, m.GiveAway(l, keymutex.NewOwner("bob"), nil), []error{keymutex.ErrInvalid}, "multi-key")
	mustNil(t, m.Release(l)) // all keys together
	if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
		t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
	}
}

func TestAwaitAllGivesUpHoldingNothing(t *testing.T) {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	c := m.MustLock(alice, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := m.AwaitAll(ctx, bob, "a", "b", "c", "d")
	checkErr(t, err, []error{keymutex.ErrBusy, context.DeadlineExceeded}, `key "c"`, `owner "alice"`, `owner "bob"`)
	for _, k := range []string{"a", "b", "d"} {
		if h := m.Holder(k); h != nil {
			t.Errorf("key %s held by %v after AwaitAll gave up", k, h)
		}
	}
	mustNil(t, m.Release(c))
}

func TestAwaitAllWaitsForEachKey(t *testing.T) {
	m := keymutex.New[int]()
	a := m.MustLock(keymutex.NewOwner("a"), 1)
	b := m.MustLock(keymutex.NewOwner("b"), 3)
	got := make(chan *keymutex.Lock[int])
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), liveness)
		defer cancel()
		l, err := m.AwaitAll(ctx, keymutex.NewOwner("all"), 3, 2, 1)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitQueued(t, m, 1, 1)
	mustNil(t, m.Release(a))
	waitQueued(t, m, 3, 1) // now holds 1 and 2, waits for 3
	if h := m.Holder(2); h == nil || h.Name() != "all" {
		t.Errorf("key 2 held by %v, want all", h)
	}
	mustNil(t, m.Release(b))
	l := <-got
	if l == nil {
		t.FailNow()
	}
	mustNil(t, m.Release(l))
}

func TestOwnerGoodbye(t *testing.T) {
	strs, ints := keymutex.New[string](), keymutex.New[int]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	ls := strs.MustLock(alice, "s")
	strs.MustLock(alice, "t")
	li := ints.MustLock(alice, 1)
	if n := alice.TrackedMutexes(); n != 2 {
		t.Fatalf("alice tracked on %d mutexes, want 2", n)
	}

	got := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), liveness)
		defer cancel()
		l, err := ints.Await(ctx, bob, 1)
		if err == nil {
			err = ints.Release(l)
		}
		got <- err
	}()
	waitQueued(t, ints, 1, 1)

	alice.Goodbye()
	alice.Goodbye()   // idempotent
	mustNil(t, <-got) // the waiter was handed the key
	if alice.Alive() {
		t.Error("alice still alive")
	}
	select {
	case <-alice.Done():
	default:
		t.Error("Done not closed")
	}
	for _, k := range []string{"s", "t"} {
		if h := strs.Holder(k); h != nil {
			t.Errorf("key %s held by %v", k, h)
		}
	}
	checkErr(t, strs.Release(ls), []error{keymutex.ErrNotHeld}, "goodbye")
	checkErr(t, ints.Release(li), []error{keymutex.ErrNotHeld}, "goodbye")
	_, err := strs.TryLock(alice, "u")
	checkErr(t, err, []error{keymutex.ErrOwnerGone}, `"alice"`)
	_, err = strs.Await(context.Background(), alice, "u")
	checkErr(t, err, []error{keymutex.ErrOwnerGone}, `"alice"`)
	if _, ok := <-strs.Transfers(alice); ok {
		t.Error("transfer channel of a gone owner is open")
	}
	for _, m := range []interface{ HeldKeys() (int, int) }{strs, ints} {
		if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
			t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
		}
	}
}

func TestOwnerGoneWhileAwaiting(t *testing.T) {
	m := keymutex.New[string]()
	l := m.MustLock(keymutex.NewOwner("alice"), "b")
	bob := keymutex.NewOwner("bob")
	got := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), liveness)
		defer cancel()
		_, err := m.AwaitAll(ctx, bob, "a", "b")
		got <- err
	}()
	waitQueued(t, m, "b", 1)
	bob.Goodbye()
	checkErr(t, <-got, []error{keymutex.ErrOwnerGone}, `owner "bob"`)
	if h := m.Holder("a"); h != nil {
		t.Errorf("key a held by %v", h)
	}
	mustNil(t, m.Release(l))
}

func TestNewOwnerContext(t *testing.T) {
	m := keymutex.New[string]()
	ctx, cancel := context.WithCancel(context.Background())
	worker := keymutex.NewOwnerContext(ctx, "worker")
	l := m.MustLock(worker, "job")
	cancel() // the worker "dies": its keys are freed
	eventually(t, "keys freed after the context ended", func() bool { return m.Holder("job") == nil })
	<-worker.Done()
	checkErr(t, m.Release(l), []error{keymutex.ErrNotHeld}, `owner "worker"`)

	// An owner whose context is already done is gone at once.
	dead := keymutex.NewOwnerContext(ctx, "dead")
	<-dead.Done()
	_, err := m.TryLock(dead, "job")
	checkErr(t, err, []error{keymutex.ErrOwnerGone})

	// An explicit Goodbye unregisters the context callback (leakcheck and
	// the race detector check the rest).
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	o := keymutex.NewOwnerContext(ctx2, "early")
	m.MustLock(o, "x")
	o.Goodbye()
	if m.Holder("x") != nil {
		t.Error("key x still held")
	}
}

func TestReleaseAll(t *testing.T) {
	m, other := keymutex.New[string](), keymutex.New[string]()
	alice := keymutex.NewOwner("alice")
	m.MustLock(alice, "a")
	m.MustLock(alice, "b")
	ol := other.MustLock(alice, "a")
	if n := m.ReleaseAll(alice); n != 2 {
		t.Errorf("ReleaseAll = %d, want 2", n)
	}
	if n := m.ReleaseAll(alice); n != 0 {
		t.Errorf("second ReleaseAll = %d, want 0", n)
	}
	if other.Holder("a") != alice {
		t.Error("ReleaseAll released keys of another mutex")
	}
	// The owner lives on.
	l := m.MustLock(alice, "a")
	mustNil(t, m.Release(l))
	mustNil(t, other.Release(ol))
	if n := alice.TrackedMutexes(); n != 0 {
		t.Errorf("alice tracked on %d mutexes, want 0", n)
	}
}

func TestGiveAway(t *testing.T) {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")

	t.Run("with gift", func(t *testing.T) {
		l := m.MustLock(alice, "k")
		mustNil(t, m.GiveAway(l, bob, "the gift"))
		tr := <-m.Transfers(bob)
		if tr.From != alice || tr.Gift != "the gift" || tr.Lock.Owner() != bob || tr.Lock.Key() != "k" {
			t.Fatalf("transfer = %+v", tr)
		}
		if m.Holder("k") != bob {
			t.Errorf("key held by %v, want bob", m.Holder("k"))
		}
		checkErr(t, m.Release(l), []error{keymutex.ErrNotHeld}, `given away to owner "bob"`)
		checkErr(t, m.GiveAway(l, bob, nil), []error{keymutex.ErrNotHeld})
		mustNil(t, m.Release(tr.Lock))
	})
	t.Run("errors", func(t *testing.T) {
		l := m.MustLock(alice, "k")
		defer m.Release(l)
		checkErr(t, m.GiveAway(l, alice, nil), []error{keymutex.ErrInvalid}, `owner "alice"`, "itself")
		checkErr(t, m.GiveAway(l, nil, nil), []error{keymutex.ErrInvalid}, "nil heir")
		checkErr(t, m.GiveAway(nil, bob, nil), []error{keymutex.ErrInvalid}, "nil lock")
		if m.Holder("k") != alice {
			t.Error("a failed GiveAway lost the lock")
		}
	})
	t.Run("gone heir frees the lock", func(t *testing.T) {
		ghost := keymutex.NewOwner("ghost")
		ghost.Goodbye()
		l := m.MustLock(alice, "k")
		mustNil(t, m.GiveAway(l, ghost, nil))
		if h := m.Holder("k"); h != nil {
			t.Errorf("key held by %v", h)
		}
		checkErr(t, m.Release(l), []error{keymutex.ErrNotHeld}, "given away")
	})
	t.Run("full channel", func(t *testing.T) {
		carol := keymutex.NewOwner("carol")
		var given []*keymutex.Lock[string]
		for i := range keymutex.TransferBuffer {
			l := m.MustLock(alice, fmt.Sprint("full", i))
			mustNil(t, m.GiveAway(l, carol, i))
			given = append(given, l)
		}
		l := m.MustLock(alice, "one too many")
		checkErr(t, m.GiveAway(l, carol, nil), []error{keymutex.ErrTransferFull}, `"one too many"`, `owner "alice"`, `owner "carol"`)
		if m.Holder("one too many") != alice {
			t.Error("the giver lost the lock")
		}
		mustNil(t, m.Release(l))

		// Unread transfers belong to the heir: its goodbye frees them,
		// and closes the channel after the buffered transfers.
		carol.Goodbye()
		n := 0
		for tr := range m.Transfers(carol) {
			checkErr(t, m.Release(tr.Lock), []error{keymutex.ErrNotHeld}, "goodbye")
			n++
		}
		if n != len(given) {
			t.Errorf("%d buffered transfers, want %d", n, len(given))
		}
		if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
			t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
		}
	})
	t.Run("waiters keep their place", func(t *testing.T) {
		l := m.MustLock(alice, "k")
		got := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), liveness)
			defer cancel()
			dl, err := m.Await(ctx, keymutex.NewOwner("dave"), "k")
			if err == nil {
				err = m.Release(dl)
			}
			got <- err
		}()
		waitQueued(t, m, "k", 1)
		mustNil(t, m.GiveAway(l, bob, nil))
		mustNil(t, m.Release((<-m.Transfers(bob)).Lock))
		mustNil(t, <-got)
	})
}

func TestWithLock(t *testing.T) {
	m := keymutex.New[string]()
	alice := keymutex.NewOwner("alice")
	ctx := context.Background()
	errFn := errors.New("fn failed")
	tests := []struct {
		name    string
		fn      func() error
		want    error
		panics  bool
		multi   bool
		wantErr bool
	}{
		{name: "returns", fn: func() error { return nil }},
		{name: "fails", fn: func() error { return errFn }, want: errFn, wantErr: true},
		{name: "panics", fn: func() error { panic("boom") }, panics: true},
		{name: "all returns", fn: func() error { return nil }, multi: true},
		{name: "all panics", fn: func() error { panic("boom") }, panics: true, multi: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := false
			fn := func() error {
				ran = true
				for _, k := range []string{"a", "b"} {
					if k == "b" && !tt.multi {
						break
					}
					if m.Holder(k) != alice {
						t.Errorf("fn runs without holding %s", k)
					}
				}
				return tt.fn()
			}
			var err error
			func() {
				defer func() {
					r := recover()
					if (r != nil) != tt.panics {
						t.Errorf("recovered %v, want panic %v", r, tt.panics)
					}
				}()
				if tt.multi {
					err = m.WithLockAll(ctx, alice, []string{"b", "a"}, fn)
				} else {
					err = m.WithLock(ctx, alice, "a", fn)
				}
			}()
			if !ran {
				t.Error("fn did not run")
			}
			if (err != nil) != tt.wantErr || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
				t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
			}
		})
	}

	t.Run("owner gone during fn", func(t *testing.T) {
		bob := keymutex.NewOwner("bob")
		err := m.WithLock(ctx, bob, "a", func() error { bob.Goodbye(); return nil })
		checkErr(t, err, []error{keymutex.ErrNotHeld}, `owner "bob"`)
	})
	t.Run("await fails", func(t *testing.T) {
		l := m.MustLock(alice, "a")
		defer m.Release(l)
		actx, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		err := m.WithLock(actx, keymutex.NewOwner("bob"), "a", func() error {
			t.Error("fn ran without the lock")
			return nil
		})
		checkErr(t, err, []error{keymutex.ErrBusy, context.DeadlineExceeded})
	})
}

// An owner holding several locks releases them in any order.
func TestReleaseOrders(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}, {2, 0, 3, 1}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			m := keymutex.New[int]()
			o := keymutex.NewOwner("o")
			var locks []*keymutex.Lock[int]
			for k := range 4 {
				locks = append(locks, m.MustLock(o, k))
			}
			for i, k := range order {
				mustNil(t, m.Release(locks[k]))
				if got, want := o.TrackedMutexes(), min(1, len(order)-1-i); got != want {
					t.Errorf("after %d releases: tracked on %d mutexes, want %d", i+1, got, want)
				}
				for _, other := range order[i+1:] {
					if m.Holder(other) != o {
						t.Errorf("key %d lost", other)
					}
				}
			}
			if keys, owners := m.HeldKeys(); keys != 0 || owners != 0 {
				t.Errorf("mutex keeps %d keys and %d owners", keys, owners)
			}
		})
	}
}
