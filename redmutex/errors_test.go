package redmutex

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// TestErrorMessages pins the errors a redmutex user meets: one line, the
// key said once, and redlock's sentinels and *QuorumError still reachable.
func TestErrorMessages(t *testing.T) {
	s := server(t)
	ctx := context.Background()
	holder := newMutex(t, s, "job", time.Minute)
	other := newMutex(t, s, "job", time.Minute)
	if _, err := holder.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	down := server(t)
	gone := newMutex(t, down, "job", time.Minute)
	if err := down.Kill(); err != nil {
		t.Fatal(err)
	}
	lk := newLocker(t, s)
	cases := []struct {
		name string
		run  func() error
		want string // exact, or a regexp when it starts with ^
		is   []error
	}{
		{"Acquire of a held key", func() error { _, err := other.Acquire(ctx); return err },
			`redmutex: lock "job": already locked`, []error{ErrAlreadyLocked, redlock.ErrNotObtained}},
		{"Release with a wrong token", func() error { return other.Release(ctx, "wrong-token") },
			`redmutex: release "job": unlock failed: not held (0 of 1 master said yes, 1 said no, 1 needed)`, []error{ErrUnlockFailed, redlock.ErrNotHeld}},
		{"Acquire with the server down", func() error { _, err := gone.Acquire(ctx); return err },
			`^redmutex: acquire "job": not obtained: no quorum \(0 of 1 master said yes, 1 needed; failed: ` + regexp.QuoteMeta(down.Addr()) + `: .+\)$`,
			[]error{redlock.ErrNotObtained}},
		{"Exists with the server down", func() error { _, err := gone.Exists(ctx); return err },
			`^redmutex: exists "job": no quorum \(0 of 1 master said yes, 1 needed; failed: ` + regexp.QuoteMeta(down.Addr()) + `: .+\)$`, nil},
		{"WithLock timeout on a held key", func() error {
			return lk.WithLock(ctx, "job", func(context.Context) error { return nil }, WithTimeout(200*time.Millisecond))
		}, `redmutex: lock "job" not obtained within 200ms: timeout`, []error{ErrTimeout, redlock.ErrNotObtained}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			ok := msg == tc.want
			if strings.HasPrefix(tc.want, "^") {
				ok = regexp.MustCompile(tc.want).MatchString(msg)
			}
			if !ok {
				t.Errorf("error\n got %s\nwant %s", msg, tc.want)
			}
			if strings.Count(msg, `"job"`) != 1 || strings.Contains(msg, "redlock:") || strings.ContainsAny(msg, "\n") {
				t.Errorf("%q: want one line, the key once, no second prefix", msg)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false", target)
				}
			}
		})
	}
}
