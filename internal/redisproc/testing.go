package redisproc

import "testing"

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
