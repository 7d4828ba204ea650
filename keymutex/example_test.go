package keymutex_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/keymutex"
)

// Lock a key, find it busy for another owner, release it (Elixir:
// Mutex.lock/2, Mutex.lock!/2 and Mutex.release/2).
func Example() {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")

	lock, err := m.TryLock(alice, "user:1")
	fmt.Println(lock, err)

	_, err = m.TryLock(bob, "user:1")
	fmt.Println(err)
	fmt.Println(errors.Is(err, keymutex.ErrBusy))

	if err := m.Release(lock); err != nil {
		fmt.Println(err)
	}
	fmt.Println(m.Release(lock)) // a lock is released once

	lock = m.MustLock(bob, "user:1") // panics if busy
	fmt.Println(lock.Owner().Name(), lock.Keys())
	// Output:
	// key "user:1" of owner "alice" <nil>
	// keymutex: key "user:1" is held by owner "alice": busy
	// true
	// keymutex: release key "user:1": the lock of owner "alice" was already released: lock not held
	// bob [user:1]
}

// Await a key, with the context as the timeout (Elixir: Mutex.await/3).
func ExampleMutex_Await() {
	m := keymutex.New[string]()
	alice, bob := keymutex.NewOwner("alice"), keymutex.NewOwner("bob")
	lock := m.MustLock(alice, "report")

	// The key stays busy: bob gives up after 10 ms.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := m.Await(ctx, bob, "report")
	fmt.Println(err)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))

	// Alice releases the key a little later: bob is woken and gets it.
	go func() {
		time.Sleep(10 * time.Millisecond)
		m.Release(lock)
	}()
	lock, err = m.Await(context.Background(), bob, "report")
	fmt.Println(lock, err)
	m.Release(lock)
	// Output:
	// keymutex: owner "bob" gave up awaiting key "report" (key "report" is held by owner "alice"): busy: context deadline exceeded
	// true
	// key "report" of owner "bob" <nil>
}

// Lock several keys at once, in a deadlock-free order (Elixir:
// Mutex.await_all/2).
func ExampleMutex_AwaitAll() {
	m := keymutex.New[string]()
	owner := keymutex.NewOwner("transfer")
	ctx := context.Background()

	lock, err := m.AwaitAll(ctx, owner, "account:2", "account:1")
	fmt.Println(lock, err)
	fmt.Println(m.Holder("account:1").Name(), m.Holder("account:2").Name())

	// Every key of the lock is released together.
	fmt.Println(m.Release(lock), m.Holder("account:1"), m.Holder("account:2"))

	_, err = m.AwaitAll(ctx, owner, "a", "b", "a")
	fmt.Println(err)
	// Output:
	// keys ["account:1" "account:2"] of owner "transfer" <nil>
	// transfer transfer
	// <nil> <nil> <nil>
	// keymutex: await all: duplicate key "a": invalid argument
}

// Give a lock to another owner, with a gift (Elixir: Mutex.give_away/4 and
// the {:"MUTEX-TRANSFER", from, lock, gift} message).
func ExampleMutex_GiveAway() {
	m := keymutex.New[string]()
	parent, child := keymutex.NewOwner("parent"), keymutex.NewOwner("child")
	lock := m.MustLock(parent, "job:42")

	if err := m.GiveAway(lock, child, "take over job 42"); err != nil {
		fmt.Println(err)
	}
	t := <-m.Transfers(child)
	fmt.Println(t.From.Name(), "gave", t.Lock, "with", t.Gift)
	fmt.Println(m.Holder("job:42").Name())

	fmt.Println(m.Release(lock)) // the giver's lock is no longer held
	fmt.Println(m.Release(t.Lock))
	// Output:
	// parent gave key "job:42" of owner "child" with take over job 42
	// child
	// keymutex: release key "job:42": the lock of owner "parent" was given away to owner "child": lock not held
	// <nil>
}

// Run a function under a lock, released on return, error or panic (Elixir:
// Mutex.under/4 and Mutex.with_lock/3).
func ExampleMutex_WithLock() {
	m := keymutex.New[int]()
	owner := keymutex.NewOwner("worker")
	ctx := context.Background()

	err := m.WithLock(ctx, owner, 7, func() error {
		fmt.Println("7 held by", m.Holder(7).Name())
		return nil
	})
	fmt.Println(err, m.Holder(7))

	err = m.WithLockAll(ctx, owner, []int{3, 1, 2}, func() error {
		return errors.New("failed under lock")
	})
	fmt.Println(err, m.Holder(1), m.Holder(2), m.Holder(3))
	// Output:
	// 7 held by worker
	// <nil> <nil>
	// failed under lock <nil> <nil> <nil>
}

// An owner made from a context frees its keys when the context ends, as the
// Elixir mutex frees the keys of a process that exits.
func ExampleNewOwnerContext() {
	m := keymutex.New[string]()
	ctx, cancel := context.WithCancel(context.Background())
	worker := keymutex.NewOwnerContext(ctx, "worker")
	lock := m.MustLock(worker, "session:9")

	cancel()        // the worker is done
	<-worker.Done() // its goodbye has run
	fmt.Println(m.Holder("session:9"))
	fmt.Println(m.Release(lock))
	// Output:
	// <nil>
	// keymutex: release key "session:9": the lock of owner "worker" was freed when its owner said goodbye: lock not held
}

// Goodbye frees every key of an owner on every Mutex; ReleaseAll frees them
// on one Mutex and the owner lives on (Elixir: Mutex.goodbye/1).
func ExampleOwner_Goodbye() {
	users, orders := keymutex.New[string](), keymutex.New[int]()
	o := keymutex.NewOwner("batch")
	users.MustLock(o, "u1")
	users.MustLock(o, "u2")
	orders.MustLock(o, 100)

	fmt.Println(users.ReleaseAll(o), users.Holder("u1"), orders.Holder(100).Name())
	users.MustLock(o, "u3")

	o.Goodbye()
	fmt.Println(users.Holder("u3"), orders.Holder(100))
	_, err := users.TryLock(o, "u4")
	fmt.Println(err)
	// Output:
	// 2 <nil> batch
	// <nil> <nil>
	// keymutex: lock key "u4": owner "batch": owner gone
}
