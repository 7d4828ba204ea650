package redisproc

import (
	"context"
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
		pid, err := serverPID(s.Addr(), time.Second)
		if err != nil || pid != s.cmd.Process.Pid {
			t.Fatalf("%s answered as pid %d (%v), want its own process %d", s.Addr(), pid, err, s.cmd.Process.Pid)
		}
	}
}
