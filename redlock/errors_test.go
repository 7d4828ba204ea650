package redlock

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// slowProxies puts every server behind a loopback proxy that holds each
// chunk of replies for latency, and returns the proxies' addresses.
func slowProxies(t *testing.T, servers []*redisproc.Server, latency time.Duration) []string {
	t.Helper()
	var addrs []string
	for _, s := range servers {
		p := &tcpProxy{upstream: s.Addr(), addr: "127.0.0.1:0", delay: latency}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		addrs = append(addrs, p.Addr())
	}
	return addrs
}

// TestErrorMessages pins the exact text of the errors a user meets: one
// line, the operation and the resource said once, and the sentinels, the
// *QuorumError and the context's error still reachable.
func TestErrorMessages(t *testing.T) {
	srv := redisproc.StartT(t, 1, redisproc.Options{})[0]
	dead := deadAddr(t)
	ctx := context.Background()
	cfg := Config{Servers: []string{srv.Addr()}, NodeTimeout: 2 * time.Second, Logger: quietLogger, MaxRetry: NoRetries}
	holder := newClient(t, cfg)
	other := newClient(t, cfg)
	down := newClient(t, Config{Servers: []string{dead}, NodeTimeout: 2 * time.Second, DialTimeout: 2 * time.Second, Logger: quietLogger})

	held, err := holder.Lock(ctx, "report", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	type want struct {
		msg         string // exact, or a regexp when it starts with ^
		is          []error
		quorumError bool
		busy, unav  bool
	}
	cases := []struct {
		name string
		run  func(t *testing.T) error
		want want
	}{
		{"TryLock of a busy resource", func(*testing.T) error {
			_, err := other.TryLock(ctx, "report", time.Minute)
			return err
		}, want{msg: `redlock: lock "report": not obtained: busy (0 of 1 master said yes, 1 said no, 1 needed)`,
			is: []error{ErrNotObtained}, quorumError: true, busy: true}},
		{"Lock of a busy resource until the context ends", func(*testing.T) error {
			c := newClient(t, Config{Servers: []string{srv.Addr()}, NodeTimeout: 2 * time.Second, Logger: quietLogger,
				RetryStrategy: RetryFunc(func(int) (time.Duration, bool) { return time.Hour, true })})
			dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, err := c.Lock(dctx, "report", time.Minute)
			return err
		}, want{msg: `redlock: lock "report": not obtained: busy (0 of 1 master said yes, 1 said no, 1 needed); context deadline exceeded`,
			is: []error{ErrNotObtained, context.DeadlineExceeded}, quorumError: true, busy: true}},
		{"Lock of a busy resource interrupted by Close", func(*testing.T) error {
			waiting := make(chan struct{}, 1)
			c, err := New(Config{Servers: []string{srv.Addr()}, NodeTimeout: 2 * time.Second, Logger: quietLogger,
				RetryStrategy: RetryFunc(func(int) (time.Duration, bool) {
					waiting <- struct{}{}
					return time.Hour, true
				})})
			if err != nil {
				t.Fatal(err)
			}
			go func() { <-waiting; _ = c.Close() }()
			_, err = c.Lock(ctx, "report", time.Minute)
			return err
		}, want{msg: `redlock: lock "report": not obtained: busy (0 of 1 master said yes, 1 said no, 1 needed); client closed`,
			is: []error{ErrNotObtained, ErrClosed}, quorumError: true, busy: true}},
		{"TryLock with a canceled context", func(*testing.T) error {
			_, err := other.TryLock(canceled, "report", time.Minute)
			return err
		}, want{msg: `redlock: lock "report": not obtained: context canceled`, is: []error{ErrNotObtained, context.Canceled}}},
		{"TryLock with the master down", func(*testing.T) error {
			_, err := down.TryLock(ctx, "report", time.Minute)
			return err
		}, want{msg: `^redlock: lock "report": not obtained: no quorum \(0 of 1 master said yes, 1 needed; failed: ` + regexp.QuoteMeta(dead) + `: master is down \(.*connection refused\)\)$`,
			is: []error{ErrNotObtained}, quorumError: true, unav: true}},
		{"Release by a token that does not hold it", func(*testing.T) error {
			return other.ReleaseToken(ctx, "report", "not-the-token")
		}, want{msg: `redlock: release "report": not held (0 of 1 master said yes, 1 said no, 1 needed)`,
			is: []error{ErrNotHeld}, quorumError: true, busy: true}},
		{"Extend after Release", func(t *testing.T) error {
			l, err := other.Lock(ctx, "extend-after-release", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			return l.Extend(ctx, time.Minute)
		}, want{msg: `redlock: extend "extend-after-release": not held: released`, is: []error{ErrNotHeld}}},
		{"Extend after the validity ran out", func(t *testing.T) error {
			l, err := other.Lock(ctx, "extend-after-expiry", 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			return l.Extend(ctx, time.Minute)
		}, want{msg: `^redlock: extend "extend-after-expiry": not held: its validity ran out \d+ms ago$`, is: []error{ErrNotHeld}}},
		{"Release after the key expired", func(t *testing.T) error {
			l, err := other.Lock(ctx, "release-after-expiry", 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the key expires", func() bool { return keyOn(t, srv, "release-after-expiry") == "" })
			return l.Release(ctx)
		}, want{msg: `redlock: release "release-after-expiry": not held (0 of 1 master said yes, 1 said no, 1 needed)`,
			is: []error{ErrNotHeld}, quorumError: true, busy: true}},
		{"Release with the master down", func(*testing.T) error {
			return down.ReleaseToken(ctx, "report", "some-token")
		}, want{msg: `^redlock: release "report": no quorum \(0 of 1 master said yes, 1 needed; failed: ` + regexp.QuoteMeta(dead) + `: master is down \(.*\)\)$`,
			quorumError: true, unav: true}},
		{"IsLocked with the master down and a canceled context", func(*testing.T) error {
			_, err := down.IsLocked(canceled, "report")
			return err
		}, want{msg: `^redlock: islocked "report": no quorum \(0 of 1 master said yes, 1 needed; failed: ` + regexp.QuoteMeta(dead) + `: .*\); context canceled$`,
			is: []error{context.Canceled}, quorumError: true, unav: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error spans several lines:\n%s", msg)
			}
			if strings.HasPrefix(tc.want.msg, "^") {
				if !regexp.MustCompile(tc.want.msg).MatchString(msg) {
					t.Errorf("error\n got %s\nwant %s", msg, tc.want.msg)
				}
			} else if msg != tc.want.msg {
				t.Errorf("error\n got %s\nwant %s", msg, tc.want.msg)
			}
			if n := strings.Count(msg, "redlock:"); n != 1 {
				t.Errorf("%q says redlock: %d times", msg, n)
			}
			for _, target := range tc.want.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = false", target)
				}
			}
			for _, target := range []error{ErrNotObtained, ErrNotHeld, ErrClosed, context.Canceled, context.DeadlineExceeded} {
				expected := false
				for _, w := range tc.want.is {
					expected = expected || errors.Is(w, target)
				}
				if !expected && errors.Is(err, target) {
					t.Errorf("errors.Is(err, %v) = true, want false", target)
				}
			}
			var qe *QuorumError
			if got := errors.As(err, &qe); got != tc.want.quorumError {
				t.Fatalf("errors.As(err, *QuorumError) = %v, want %v", got, tc.want.quorumError)
			}
			if qe != nil && (qe.Busy() != tc.want.busy || qe.Unavailable() != tc.want.unav) {
				t.Errorf("Busy() = %v, Unavailable() = %v; want %v, %v", qe.Busy(), qe.Unavailable(), tc.want.busy, tc.want.unav)
			}
		})
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestErrorValidityRanOut: a quorum says yes, but the round trips took longer
// than the TTL allows. The error is ErrNotObtained, neither busy nor
// unavailable, and says so; the key is cleaned up.
func TestErrorValidityRanOut(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	addrs := slowProxies(t, servers, 30*time.Millisecond)
	c := newClient(t, Config{Servers: addrs, NodeTimeout: 5 * time.Second, DialTimeout: 5 * time.Second})
	ctx := context.Background()
	_, err := c.TryLock(ctx, "slow", 10*time.Millisecond) // validity 10ms − 2.1ms − ≥ 30ms
	if err == nil {
		t.Fatal("TryLock with a 10ms TTL through 30ms of latency: obtained")
	}
	re := regexp.MustCompile(`^redlock: lock "slow": not obtained: validity ran out \([23] of 3 masters said yes, but it took \d+(\.\d+)?ms: ttl − elapsed − drift left nothing\)$`)
	if !re.MatchString(err.Error()) {
		t.Errorf("error %q does not match %s", err, re)
	}
	var qe *QuorumError
	if !errors.Is(err, ErrNotObtained) || !errors.As(err, &qe) {
		t.Fatalf("err %v: want ErrNotObtained and a *QuorumError", err)
	}
	if !qe.ValidityRanOut || qe.Busy() || qe.Unavailable() || qe.Took < 30*time.Millisecond {
		t.Errorf("ValidityRanOut %v Busy %v Unavailable %v Took %v; want true, false, false, ≥ 30ms", qe.ValidityRanOut, qe.Busy(), qe.Unavailable(), qe.Took)
	}
	for _, s := range servers {
		eventually(t, 5*time.Second, "the failed attempt's key is gone", func() bool { return keyOn(t, s, "slow") == "" })
	}
}

// TestQuorumErrorClassification decides busy or unavailable from the votes
// of a group of 5, whatever the order they came in.
func TestQuorumErrorClassification(t *testing.T) {
	yes, no := Vote{Answered: true, OK: true}, Vote{Answered: true}
	fail, wait := Vote{Answered: true, Err: errTimeout}, Vote{}
	cases := []struct {
		votes      []Vote
		expired    bool
		busy, unav bool
	}{
		{[]Vote{no, no, no, wait, wait}, false, true, false},
		{[]Vote{yes, yes, no, no, no}, false, true, false},
		{[]Vote{no, no, fail, wait, wait}, false, true, false},   // the no votes were needed to defeat the quorum
		{[]Vote{no, fail, fail, wait, wait}, false, true, false}, // 2 failures leave 3: the no decided
		{[]Vote{fail, fail, fail, wait, wait}, false, false, true},
		{[]Vote{yes, no, fail, fail, fail}, false, false, true},
		{[]Vote{yes, yes, yes, wait, wait}, true, false, false},
	}
	for i, tc := range cases {
		qe := &QuorumError{Op: "lock", Resource: "r", Quorum: 3, Votes: tc.votes, ValidityRanOut: tc.expired, sentinel: ErrNotObtained}
		if qe.Busy() != tc.busy || qe.Unavailable() != tc.unav {
			t.Errorf("case %d (%v): Busy %v Unavailable %v, want %v %v", i, qe, qe.Busy(), qe.Unavailable(), tc.busy, tc.unav)
		}
	}
}

// TestErrorLockLost: the cause of Do's context when an extension finds the
// lock gone is one line, and matches ErrLockLost and ErrNotHeld.
func TestErrorLockLost(t *testing.T) {
	srv := redisproc.StartT(t, 1, redisproc.Options{})[0]
	c := newClient(t, Config{Servers: []string{srv.Addr()}, NodeTimeout: 2 * time.Second})
	// The first extension (after ttl/3 = 1s) finds the key gone, long
	// before the validity (≈ 3s) would run out.
	err := c.DoWith(context.Background(), "lost", 3*time.Second, func(ctx context.Context) error {
		if _, err := srv.Do(context.Background(), "DEL", "lost"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("fn's context outlived the lock")
		}
		return context.Cause(ctx)
	}, WithAutoExtend())
	want := `redlock: lock lost: extend "lost": not held: an extension found it gone`
	if err == nil || !errors.Is(err, ErrLockLost) || !errors.Is(err, ErrNotHeld) {
		t.Fatalf("cause %v: want ErrLockLost and ErrNotHeld", err)
	}
	if err.Error() != want {
		t.Errorf("cause\n got %s\nwant %s", err, want)
	}
}
