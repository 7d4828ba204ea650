package redisproc

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := StartT(t, 1, Options{})[0]
	if got, err := s.Do(ctx, "SET", "k", "v"); err != nil || got != "+OK" {
		t.Fatalf("SET = %q, %v", got, err)
	}
	if got, _ := s.Do(ctx, "GET", "k"); got != "$v" {
		t.Fatalf("GET = %q", got)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := s.Do(ctx, "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// No persistence: the key is gone after a restart.
	if got, _ := s.Do(ctx, "GET", "k"); got != "$-1" {
		t.Fatalf("GET after restart = %q, want nil", got)
	}
}

func TestPersistenceSurvivesKill(t *testing.T) {
	ctx := context.Background()
	s := StartT(t, 1, Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})[0]
	if _, err := s.Do(ctx, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Do(ctx, "GET", "k"); got != "$v" {
		t.Fatalf("GET after AOF restart = %q, want $v", got)
	}
}

func TestPause(t *testing.T) {
	s := StartT(t, 1, Options{})[0]
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200e6)
	defer cancel()
	if _, err := s.Do(ctx, "PING"); err == nil {
		t.Fatal("paused server answered")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do(context.Background(), "PING"); err != nil || got != "+PONG" {
		t.Fatalf("PING after resume = %q, %v", got, err)
	}
}

// TestStartNDistinct: servers started in parallel never share a port, and
// each answers as its own process.
func TestStartNDistinct(t *testing.T) {
	servers := StartT(t, 16, Options{})
	seen := map[int]bool{}
	for _, s := range servers {
		if seen[s.Port()] {
			t.Fatalf("port %d handed out twice", s.Port())
		}
		seen[s.Port()] = true
		st, err := serverInfo(s.Addr(), 5*time.Second)
		if err != nil || st.pid != s.cmd.Process.Pid {
			t.Fatalf("%s answered as pid %d (%v), want its own process %d", s.Addr(), st.pid, err, s.cmd.Process.Pid)
		}
	}
}

// TestRestartWaitsForLoading: a restarted server answers INFO while it is
// still loading its dataset and refuses everything else with LOADING; Start
// and Restart return only once it is loaded (INFO persistence loading:0), so
// the first command after Restart succeeds and sees every key.
func TestRestartWaitsForLoading(t *testing.T) {
	const keys = 300_000 // a dataset that takes a while to load
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := StartT(t, 1, Options{Args: []string{"--enable-debug-command", "yes"}})[0]
	if _, err := s.Do(ctx, "DEBUG", "POPULATE", strconv.Itoa(keys), "key", "64"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(ctx, "SAVE"); err != nil { // dump.rdb, loaded at the next start
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"PING"}, {"GET", "key:1"}, {"SET", "after", "restart"}} {
		if got, err := s.Do(ctx, cmd...); err != nil {
			t.Fatalf("%v right after Restart = %q, %v (the server was not done loading)", cmd, got, err)
		}
	}
	if got, err := s.Do(ctx, "DBSIZE"); err != nil || got != ":"+strconv.Itoa(keys+1) {
		t.Fatalf("DBSIZE after Restart = %q, %v; want :%d", got, err, keys+1)
	}
}
