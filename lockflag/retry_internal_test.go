package lockflag

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestCheckWithRetrySchedule checks the exact waits and result of
// CheckWithRetry with a recording clock: no real sleeping, no timing.
func TestCheckWithRetrySchedule(t *testing.T) {
	const b = time.Millisecond
	tests := []struct {
		name      string
		start     *Status // nil: the flag does not exist
		retries   int
		unlockAt  int // unlock the flag during this wait (1-based); 0: never
		wantWaits []time.Duration
		want      Status
	}{
		{"unlocked at once", ptr(Unlocked), 5, 0, nil, Unlocked},
		{"retries 0 waits once", ptr(Locked), 0, 0, []time.Duration{b}, Locked},
		{"retries 1 waits once", ptr(Locked), 1, 0, []time.Duration{b}, Locked},
		{"retries 2 waits once", ptr(Locked), 2, 0, []time.Duration{b}, Locked},
		{"retries 3 waits twice", ptr(Locked), 3, 0, []time.Duration{b, 2 * b}, Locked},
		{"retries 7 caps at 16x", ptr(Locked), 7, 0, []time.Duration{b, 2 * b, 4 * b, 8 * b, 16 * b, 16 * b}, Locked},
		{"unknown flag counts as locked", nil, 3, 0, []time.Duration{b, 2 * b}, Locked},
		{"unlocked during the 2nd wait", ptr(Locked), 6, 2, []time.Duration{b, 2 * b}, Unlocked},
		// The Elixir original would report Locked here without looking again.
		{"unlocked during the last wait", ptr(Locked), 3, 2, []time.Duration{b, 2 * b}, Unlocked},
		{"forever until unlocked", ptr(Locked), Forever, 8,
			[]time.Duration{b, 2 * b, 4 * b, 8 * b, 16 * b, 16 * b, 16 * b, 16 * b}, Unlocked},
		{"created during a wait", nil, 3, 1, []time.Duration{b}, Unlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry(WithBackoff(b))
			if tt.start != nil {
				r.set("f", *tt.start)
			}
			var waits []time.Duration
			r.sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				if len(waits) == tt.unlockAt {
					r.Create("f")
				}
				if len(waits) > 100 {
					return errors.New("runaway retries")
				}
				return nil
			}
			got := r.CheckWithRetry("f", tt.retries)
			if got != tt.want {
				t.Errorf("status = %v, want %v", got, tt.want)
			}
			if !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
		})
	}
}

func TestBackoffDefault(t *testing.T) {
	var r Registry
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := r.Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := r.Backoff(0); got != want[0] {
		t.Errorf("Backoff(0) = %v, want %v", got, want[0])
	}
}

func TestCheckWithRetryFuncCalledOnce(t *testing.T) {
	std.sleep = func(context.Context, time.Duration) error { return nil }
	defer func() { std.sleep = nil }()
	Lock("internal-once")
	defer Delete("internal-once")
	calls := 0
	got := CheckWithRetry("internal-once", 4, func(s Status) string {
		calls++
		return fmt.Sprint("got ", s)
	})
	if got != "got locked" || calls != 1 {
		t.Errorf("CheckWithRetry = %q after %d calls of fn, want %q after 1", got, calls, "got locked")
	}
}

func ptr[T any](v T) *T { return &v }
