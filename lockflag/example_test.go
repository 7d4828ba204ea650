package lockflag_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/quorumlock/quorumlock/lockflag"
)

// Create a flag, lock it and unlock it (the Elixir module doc).
func Example() {
	lockflag.Create("my_lock")
	fmt.Println(lockflag.Check("my_lock"))

	// Lock it to signal that the resource is busy.
	lockflag.Lock("my_lock")
	fmt.Println(lockflag.Check("my_lock"))

	// Unlock it when done.
	lockflag.Unlock("my_lock")
	fmt.Println(lockflag.Check("my_lock"))
	// Output:
	// unlocked
	// locked
	// unlocked
}

// WithLock unlocks the flag after the function, even if it panics.
func ExampleWithLock() {
	var result string
	err := lockflag.WithLock("auto_lock", func() error {
		// This code runs while the flag is locked.
		fmt.Println("inside:", lockflag.Check("auto_lock"))
		result = "operation result"
		return nil
	})
	fmt.Println(result, err)
	fmt.Println("after:", lockflag.Check("auto_lock"))

	func() {
		defer func() { fmt.Println("recovered:", recover()) }()
		lockflag.WithLock("auto_lock", func() error { panic("boom") })
	}()
	fmt.Println("after a panic:", lockflag.Check("auto_lock"))

	err = lockflag.WithLock("auto_lock", func() error { return errors.New("failed") })
	fmt.Println(err, lockflag.Check("auto_lock"))
	// Output:
	// inside: locked
	// operation result <nil>
	// after: unlocked
	// recovered: boom
	// after a panic: unlocked
	// failed unlocked
}

// Check returns Locked for an unknown flag unless a default is given.
func ExampleCheck() {
	lockflag.Create("check_lock")
	fmt.Println(lockflag.Check("check_lock"))
	lockflag.Lock("check_lock")
	fmt.Println(lockflag.Check("check_lock"))

	fmt.Println(lockflag.Check("bogus"))
	fmt.Println(lockflag.Check("bogus", lockflag.Unlocked))
	// Output:
	// unlocked
	// locked
	// locked
	// unlocked
}

// Delete reports whether the flag existed.
func ExampleDelete() {
	lockflag.Create("temp_lock")
	fmt.Println(lockflag.Delete("temp_lock"))
	fmt.Println(lockflag.Delete("bogus"))
	// Output:
	// true
	// false
}

// CheckWithRetry calls the function once, with the status that ended the
// retries, and returns what it returns.
func ExampleCheckWithRetry() {
	lockflag.Create("retry_example")
	got := lockflag.CheckWithRetry("retry_example", 3, func(s lockflag.Status) string {
		// Called with Unlocked at once: the flag is free.
		return "got status " + s.String()
	})
	fmt.Println(got)
	// Output:
	// got status unlocked
}

// A flag that stays locked: with retries 3, CheckWithRetry waits twice
// (base, then 2×base) and reports Locked. A Registry of its own gets a short
// backoff.
func ExampleRegistry_CheckWithRetry() {
	r := lockflag.NewRegistry(lockflag.WithBackoff(time.Millisecond))
	r.Lock("topology")
	fmt.Println(r.CheckWithRetry("topology", 3))

	// Unlocked meanwhile: reported as soon as it is seen.
	go func() {
		time.Sleep(2 * time.Millisecond)
		r.Unlock("topology")
	}()
	fmt.Println(r.CheckWithRetry("topology", lockflag.Forever))
	fmt.Println(r.Backoff(1), r.Backoff(2), r.Backoff(5), r.Backoff(9))
	// Output:
	// locked
	// unlocked
	// 1ms 2ms 16ms 16ms
}
