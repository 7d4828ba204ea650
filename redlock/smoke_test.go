package redlock

import (
	"context"
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	f := fleet(t, 1, 5)
	c := newClient(t, clusterConfig(f))
	ctx := context.Background()
	l, err := c.Lock(ctx, "res", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f[0] {
		if got := keyOn(t, s, "res"); got != l.Token() {
			t.Errorf("%s: key = %q, want token", s.Addr(), got)
		}
	}
	if _, err := c.TryLock(ctx, "res", time.Second); err == nil {
		t.Fatal("second lock obtained")
	} else {
		t.Log(err)
	}
	if err := l.Extend(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err == nil {
		t.Fatal("double release ok")
	} else {
		t.Log(err)
	}
	t.Log(c.MasterStats()[0])
}
