package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bench -metrics serves /metrics while it runs: scraped during the run, the
// page counts acquisitions and shows every master up; the server is gone
// once bench returns.
func TestBenchMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli(ctx, []string{"bench", "-metrics", addr, "-duration", "2m", "-concurrency", "4", "-resources", "8", "-masters", "3"},
			&stdout, &stderr, func(string) string { return "" })
	}()

	okRe := regexp.MustCompile(`(?m)^quorumlock_acquires_total\{outcome="ok"\} (\S+)$`)
	upRe := regexp.MustCompile(`(?m)^quorumlock_masters_up (\S+)$`)
	var page string
	deadline := time.Now().Add(90 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no acquisitions on http://%s/metrics within 90s; last page:\n%.2000s\nstderr: %s", addr, page, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		page = string(b)
		m, up := okRe.FindStringSubmatch(page), upRe.FindStringSubmatch(page)
		if m == nil || up == nil {
			continue
		}
		if n, _ := strconv.ParseFloat(m[1], 64); n > 0 && up[1] == "3" {
			break
		}
	}
	for _, want := range []string{"quorumlock_acquire_duration_seconds_bucket", "quorumlock_hold_seconds_count", "quorumlock_batching_factor{", "quorumlock_pool_connections{", "go_goroutines"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bench did not stop after its context ended")
	}
	if !strings.Contains(stderr.String(), "metrics on http://"+addr+"/metrics") {
		t.Errorf("stderr does not announce the metrics URL: %s", stderr.String())
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		_ = resp.Body.Close()
		t.Fatal("the metrics server still answers after bench returned")
	}
}
