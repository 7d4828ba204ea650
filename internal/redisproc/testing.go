package redisproc

import (
	"context"
	"testing"
	"time"
)

// StartT starts n servers for a test and stops them in t.Cleanup. A missing
// redis-server binary fails the test loudly: the suites assert behaviour
// against real Redis and must never pass by skipping.
func StartT(t testing.TB, n int, opts Options) []*Server {
	t.Helper()
	servers, err := StartN(n, opts)
	if err != nil {
		t.Fatalf("start %d redis-server processes: %v", n, err)
	}
	t.Cleanup(func() { StopAll(servers) })
	return servers
}

// Addrs returns the "127.0.0.1:port" address of each server.
func Addrs(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

// GetT reads key on s with a raw GET ("" when the key is absent), failing
// the test when s does not answer within 2 s: tests inspect a master without
// going through the code under test.
func (s *Server) GetT(t testing.TB, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := s.Do(ctx, "GET", key)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", key, s.Addr(), err)
	}
	if v == "$-1" {
		return ""
	}
	return v[1:]
}
