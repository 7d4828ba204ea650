package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/quorumlock/quorumlock/internal/redisproc"
	"github.com/quorumlock/quorumlock/redlock"
)

// binary is the redlock command built once for the tests that need a real
// process (signals, exit codes of run).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "redlock-cmd-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// go test puts the go command of this toolchain first in PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "build the redlock binary:", err)
			return 1
		}
		binary = filepath.Join(dir, "redlock")
		out, err := exec.Command(goTool, "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			os.Stderr.Write(out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// call runs a command line in-process.
func call(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code = cli(context.Background(), args, &out, &errb, getenv)
	return code, out.String(), errb.String()
}

func noStackTrace(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "goroutine ") || strings.Contains(s, "panic") {
		t.Fatalf("output has a stack trace:\n%s", s)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"bench", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"bench", "-concurrency", "0"}, "-concurrency 0"},
		{[]string{"bench", "-duration", "2h"}, "-duration 2h0m0s"},
		{[]string{"bench", "-ttl", "abc"}, `invalid value "abc" for flag -ttl`},
		{[]string{"bench", "-masters", "4"}, "odd number of masters"},
		{[]string{"bench", "-servers", "127.0.0.1:1,127.0.0.1:2"}, "invalid -servers (2 masters)"},
		{[]string{"bench", "-servers", "a:1", "-cluster", "b:1"}, "not both"},
		{[]string{"bench", "extra"}, `unexpected argument "extra"`},
		{[]string{"bench", "-mode", "mutex"}, `-mode "mutex": want lock, rw or sem`},
		{[]string{"bench", "-mode", "sem", "-permits", "0"}, "-permits 0"},
		{[]string{"bench", "-mode", "rw", "-write-every", "0"}, "-write-every 0"},
		{[]string{"status", "-servers", "127.0.0.1:1,127.0.0.1:1,127.0.0.1:3"}, "duplicate master"},
		{[]string{"run", "-servers", "127.0.0.1:1", "--", "true"}, "-resource is required"},
		{[]string{"run", "-servers", "127.0.0.1:1", "-resource", "r"}, "no command given"},
		{[]string{"run", "-resource", "r", "--", "true"}, "no servers: give -servers or -cluster"},
		{[]string{"run", "-servers", "127.0.0.1:1", "-resource", "r", "-ttl", "-1s", "--", "true"}, "-ttl -1s"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := call(t, nil, tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if len(tc.args) > 0 && !strings.Contains(stderr, "usage: redlock") {
				t.Fatalf("stderr lacks a usage line:\n%s", stderr)
			}
			noStackTrace(t, stderr)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"help", "bench"}, {"bench", "-h"}, {"run", "-h"}, {"status", "-help"}} {
		code, stdout, stderr := call(t, nil, args...)
		if code != exitOK || !strings.Contains(stdout, "Usage") {
			t.Errorf("%v: exit %d, stdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
	}
}

func TestBenchEmbeddedTable(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-duration", "300ms", "-concurrency", "4")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"fleet", "1 group × 5 masters", "redis-server", "latency p50", "p99.9", "max", "ops", "errors", "not obtained", "throughput", "ops/s", "batching", "commands/pipeline"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "no servers given: embedded fleet of 1 group × 5 masters: redis-server") {
		t.Errorf("stderr does not say which fleet was used:\n%s", stderr)
	}
}

func TestBenchJSONAndPlot(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "lat.png")
	code, stdout, stderr := call(t, nil, "bench", "-duration", "400ms", "-concurrency", "8", "-json", "-plot", plot, "-q")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, stdout)
	}
	if r.Ops <= 0 || r.Cycle.P50 <= 0 || r.Cycle.Max < r.Cycle.P99 || r.Batching.Commands <= 0 || r.Batching.CommandsPerPipeline < 1 {
		t.Fatalf("implausible result: %+v", r)
	}
	if r.Fleet.Source != "embedded" || r.Fleet.Masters != 5 || len(r.Masters) != 5 || r.Stopped != "duration" {
		t.Fatalf("fleet/masters/stopped: %+v", r)
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("PNG does not decode: %v", err)
	}
	if img.Bounds().Dx() < 400 || img.Bounds().Dy() < 300 {
		t.Fatalf("PNG is %v", img.Bounds())
	}
	if stderr != "" {
		t.Errorf("-q still printed:\n%s", stderr)
	}
}

// TestBenchModes: -mode rw reports RLock and Lock (RW) apart, in the
// proportion -write-every asks; -mode sem runs Semaphore permits, several
// goroutines on one semaphore.
func TestBenchModes(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-mode", "rw", "-write-every", "4", "-duration", "400ms", "-concurrency", "4", "-json", "-q")
	if code != exitOK {
		t.Fatalf("rw: exit %d; stderr:\n%s", code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, stdout)
	}
	if len(r.ByKind) != 2 || r.ByKind[0].Kind != "RLock" || r.ByKind[1].Kind != "Lock (RW)" || r.ByKind[0].Ops == 0 || r.ByKind[1].Ops == 0 {
		t.Fatalf("rw by kind: %+v", r.ByKind)
	}
	if r.ByKind[0].Ops+r.ByKind[1].Ops != r.Ops || r.ByKind[0].Ops < r.ByKind[1].Ops || r.Mode != "RWMutex RLock, Lock every 4" {
		t.Fatalf("rw: %d ops, by kind %+v, mode %q", r.Ops, r.ByKind, r.Mode)
	}
	code, stdout, stderr = call(t, nil, "bench", "-mode", "sem", "-permits", "2", "-resources", "1", "-duration", "400ms", "-concurrency", "4")
	if code != exitOK {
		t.Fatalf("sem: exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "Semaphore(2) Acquire") || !strings.Contains(stdout, "lock+unlock cycles") {
		t.Fatalf("sem output:\n%s", stdout)
	}
}

func TestBenchOpsCapContendedAndMiniredis(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-embedded", "miniredis", "-masters", "3", "-groups", "2",
		"-resources", "1", "-concurrency", "4", "-try", "-ops", "60", "-duration", "10s", "-json", "-q",
		"-node-timeout", "2s") // miniredis under -race on a busy machine is slow: no timeouts here
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, stdout)
	}
	if !strings.Contains(r.Fleet.Embedded, "miniredis") || r.Fleet.Groups != 2 || r.Fleet.Masters != 6 {
		t.Fatalf("fleet: %+v", r.Fleet)
	}
	if total := r.Ops + r.Errors.NotObtained + r.Errors.Other; total > 60 || r.Stopped != "ops" {
		t.Fatalf("ops cap: %d ops + %d errors, stopped by %s", r.Ops, r.Errors.NotObtained+r.Errors.Other, r.Stopped)
	}
	if r.Errors.Other != 0 {
		t.Fatalf("other errors: %+v", r.Errors)
	}
	if r.Mode != "TryLock" || r.Resources != 1 {
		t.Fatalf("mode %q resources %d", r.Mode, r.Resources)
	}
}

func TestBenchSlowMaster(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-slow-master-ms", "2", "-duration", "300ms", "-concurrency", "2", "-json", "-node-timeout", "2s")
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, stdout)
	}
	if r.Fleet.SlowMasterMs != 2 || r.Ops == 0 || r.Errors.Other != 0 {
		t.Fatalf("result: %+v", r)
	}
	if !strings.Contains(stderr, "2 ms late") {
		t.Errorf("stderr does not mention the slow master:\n%s", stderr)
	}
}

func TestBenchUnreachable(t *testing.T) {
	code, _, stderr := call(t, nil, "bench", "-servers", "127.0.0.1:1", "-dial-timeout", "200ms")
	if code != exitError || !strings.Contains(stderr, "fleet unreachable") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
		t.Fatalf("want one line, got:\n%s", stderr)
	}
	noStackTrace(t, stderr)
}

func TestStatus(t *testing.T) {
	servers := redisproc.StartT(t, 5, redisproc.Options{})
	list := strings.Join(redisproc.Addrs(servers), ",")

	code, stdout, stderr := call(t, nil, "status", "-servers", list)
	if code != exitOK || !strings.Contains(stdout, "5 of 5 masters up") || !strings.Contains(stdout, "100.0%") {
		t.Fatalf("all up: exit %d\n%s\n%s", code, stdout, stderr)
	}

	if err := servers[2].Kill(); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = call(t, nil, "status", "-servers", list)
	if code != exitError {
		t.Fatalf("one down: exit %d, want %d\n%s\n%s", code, exitError, stdout, stderr)
	}
	var downRow string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, servers[2].Addr()) {
			downRow = line
		}
	}
	if !strings.Contains(downRow, "DOWN") || !strings.Contains(downRow, "connection refused") {
		t.Fatalf("the killed master's row does not show it down: %q\n%s", downRow, stdout)
	}
	if !strings.Contains(stdout, "4 of 5 masters up") || !strings.Contains(stdout, "degraded") || !strings.Contains(stderr, "every group still has a quorum") {
		t.Fatalf("summary:\n%s\n%s", stdout, stderr)
	}

	// The same through the environment, as JSON, with a cluster of 2 groups.
	env := map[string]string{"REDLOCK_CLUSTER": strings.Join(redisproc.Addrs(servers[:3]), ",") + ";" + strings.Join(redisproc.Addrs(servers[3:4]), ",")}
	code, stdout, _ = call(t, env, "status", "-json")
	var rep statusReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("invalid JSON (exit %d): %v\n%s", code, err, stdout)
	}
	if code != exitError || rep.Source != "REDLOCK_CLUSTER" || len(rep.Groups) != 2 || rep.Up != 3 || rep.Total != 4 || rep.Masters[2].Up {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
	if s := rep.Groups[0].Share + rep.Groups[1].Share; s < 0.999 || s > 1.001 {
		t.Fatalf("shares add up to %v", s)
	}
}

func TestStatusEmbeddedDemo(t *testing.T) {
	code, stdout, stderr := call(t, nil, "status", "-masters", "3")
	if code != exitOK || !strings.Contains(stderr, "demo") || !strings.Contains(stdout, "3 of 3 masters up") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// runBinary runs the built redlock binary and returns its exit code.
func runBinary(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("redlock %v did not finish:\n%s", args, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// runPatient runs "redlock run" with timeouts a loaded machine meets (the
// default 100 ms NodeTimeout is missed under -race beside a CPU hog: every
// master then counts as failed and the command is not run).
func runPatient(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	return runBinary(t, env, append([]string{"run", "-node-timeout", "1s", "-dial-timeout", "5s"}, args...)...)
}

func testClient(t *testing.T, addrs []string) *redlock.Client {
	t.Helper()
	c, err := redlock.New(redlock.Config{Servers: addrs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFile waits (bounded) for a file to appear and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	for i := 0; i < 400; i++ {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
	return ""
}

// child is a shell script that writes its token to $1/started, then waits
// (at most 15 s) for $1/go; on SIGTERM it writes $1/term and exits 42.
const child = `trap 'echo term > "$1/term"; exit 42' TERM
echo "$REDLOCK_TOKEN" > "$1/started"
i=0
while [ ! -e "$1/go" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done`

func TestRun(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	addrs := redisproc.Addrs(servers)
	list := strings.Join(addrs, ",")
	ctx := context.Background()

	t.Run("exit code passthrough", func(t *testing.T) {
		code, out := runPatient(t, nil, "-servers", list, "-resource", "pass", "--", "sh", "-c", "exit 3")
		if code != 3 {
			t.Fatalf("exit %d, want 3\n%s", code, out)
		}
		code, out = runPatient(t, []string{"REDLOCK_SERVERS=" + list}, "-resource", "pass", "--", "true")
		if code != 0 {
			t.Fatalf("REDLOCK_SERVERS: exit %d\n%s", code, out)
		}
	})

	t.Run("fence in the environment", func(t *testing.T) {
		fences := make([]int64, 2)
		for i := range fences {
			code, out := runPatient(t, nil, "-servers", list, "-fencing", "-resource", "fenced", "--", "sh", "-c", `echo "fence=$REDLOCK_FENCE"`)
			_, after, ok := strings.Cut(out, "fence=")
			if code != 0 || !ok {
				t.Fatalf("exit %d\n%s", code, out)
			}
			n, err := strconv.ParseInt(strings.Fields(after)[0], 10, 64)
			if err != nil || n <= 0 {
				t.Fatalf("REDLOCK_FENCE %q: %v", after, err)
			}
			fences[i] = n
		}
		if fences[1] <= fences[0] {
			t.Fatalf("fences %v do not increase", fences)
		}
	})

	t.Run("not found", func(t *testing.T) {
		code, out := runPatient(t, nil, "-servers", list, "-resource", "nf", "--", "/nonexistent/cmd")
		if code != exitNotFound || !strings.Contains(out, "cannot run") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})

	t.Run("not obtained", func(t *testing.T) {
		c := testClient(t, addrs)
		l, err := c.Lock(ctx, "busy", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Release(ctx) }()
		code, out := runPatient(t, nil, "-servers", list, "-resource", "busy", "--", "true")
		if code != exitNotObtained || !strings.Contains(out, `lock "busy" not obtained: it is held by someone else`) {
			t.Fatalf("exit %d, want %d\n%s", code, exitNotObtained, out)
		}
		code, out = runPatient(t, nil, "-servers", list, "-resource", "busy", "-wait", "300ms", "-retry-interval", "50ms", "--", "true")
		if code != exitNotObtained || !strings.Contains(out, "within 300ms") {
			t.Fatalf("-wait: exit %d\n%s", code, out)
		}
	})

	t.Run("key held while the command runs", func(t *testing.T) {
		dir := t.TempDir()
		type res struct {
			code int
			out  string
		}
		done := make(chan res, 1)
		go func() {
			code, out := runPatient(t, nil, "-servers", list, "-resource", "held", "-ttl", "2s", "--", "sh", "-c", child, "sh", dir)
			done <- res{code, out}
		}()
		token := waitFile(t, filepath.Join(dir, "started"))
		// Past one extension (ttl/3): the key is still there, still ours.
		time.Sleep(800 * time.Millisecond)
		for _, s := range servers {
			got, err := s.Do(ctx, "GET", "held")
			if err != nil || got != "$"+token {
				t.Errorf("%s: GET held = %q, %v; want the token %q", s.Addr(), got, err, token)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "go"), []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.out)
		}
		for _, s := range servers {
			if got, _ := s.Do(ctx, "GET", "held"); got != "$-1" {
				t.Errorf("%s: key still there after the command exited: %q", s.Addr(), got)
			}
		}
	})

	t.Run("lost while running", func(t *testing.T) {
		dir := t.TempDir()
		done := make(chan int, 1)
		var out string
		go func() {
			code, o := runPatient(t, nil, "-servers", list, "-resource", "lost", "-ttl", "900ms", "-grace", "5s", "--", "sh", "-c", child, "sh", dir)
			out = o
			done <- code
		}()
		waitFile(t, filepath.Join(dir, "started"))
		for _, s := range servers {
			if _, err := s.Do(ctx, "DEL", "lost"); err != nil {
				t.Fatal(err)
			}
		}
		code := <-done
		if code != exitLost || !strings.Contains(out, `lock "lost" lost while the command ran`) {
			t.Fatalf("exit %d, want %d\n%s", code, exitLost, out)
		}
		if waitFile(t, filepath.Join(dir, "term")) != "term" {
			t.Fatal("the command was not sent SIGTERM")
		}
	})

	t.Run("signals are forwarded", func(t *testing.T) {
		dir := t.TempDir()
		cmd := exec.Command(binary, "run", "-servers", list, "-resource", "sig", "--", "sh", "-c", child, "sh", dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, filepath.Join(dir, "started"))
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 42 {
			t.Fatalf("redlock exited with %v, want the command's 42\n%s", err, out.String())
		}
		if got, _ := servers[0].Do(ctx, "GET", "sig"); got != "$-1" {
			t.Fatalf("key left behind: %q", got)
		}
	})
}

var _ = io.Discard

func TestVersion(t *testing.T) {
	re := regexp.MustCompile(`^redlock \S+ \(go[0-9][^)]*\)\n$`)
	for _, arg := range []string{"--version", "-version", "version"} {
		code, stdout, stderr := call(t, nil, arg)
		if code != exitOK || !re.MatchString(stdout) || stderr != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, stdout, stderr)
		}
	}
	// The built binary reads its own build information.
	code, out := runBinary(t, nil, "--version")
	if code != exitOK || !re.MatchString(out) || !strings.Contains(out, runtime.Version()) {
		t.Errorf("binary --version: exit %d, %q", code, out)
	}
	if code, stdout, _ := call(t, nil, "help"); code != exitOK || !strings.Contains(stdout, "--version") {
		t.Errorf("help does not mention --version:\n%s", stdout)
	}
}

// callCtx is call with a context that bounds a command that would spin.
func callCtx(t *testing.T, d time.Duration, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb bytes.Buffer
	code = cli(ctx, args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// TestBenchRefusesBeforeRunning: what would make a run useless is refused
// before it starts (exit 2, one clear line), never after.
func TestBenchRefusesBeforeRunning(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	list := strings.Join(redisproc.Addrs(servers), ",")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-plot", "/etc/hostname/lat.png"}, "-plot /etc/hostname/lat.png: "},
		{[]string{"-plot", t.TempDir()}, "is a directory"},
		{[]string{"-servers", list, "-ttl", "1ms", "-duration", "10m"}, "-ttl 1ms: 1ms is consumed by the clock-drift allowance"},
		{[]string{"-duration", "1ns"}, "-duration 1ns: want 100ms to 1h0m0s"},
		{[]string{"-servers", list, "-masters", "3"}, "-masters sizes the embedded fleet only, and the fleet is given by -servers: drop -masters"},
		{[]string{"-servers", list, "-embedded", "miniredis"}, "-embedded sizes the embedded fleet only"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// A run that spins would be cut by this context and exit 0 or 1.
			code, stdout, stderr := callCtx(t, 60*time.Second, nil, append([]string{"bench"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr:\n%s", code, exitUsage, stdout, stderr)
			}
			noStackTrace(t, stderr)
		})
	}
	// The same rule for status and the environment.
	code, _, stderr := call(t, map[string]string{"REDLOCK_SERVERS": list}, "status", "-groups", "2")
	if code != exitUsage || !strings.Contains(stderr, "-groups sizes the embedded fleet only, and the fleet is given by REDLOCK_SERVERS") {
		t.Fatalf("status -groups with REDLOCK_SERVERS: exit %d\n%s", code, stderr)
	}
}

// TestBenchPlotWriteFailsAfterRun: a plot that cannot be written at the end
// (a full device) still leaves the results on stdout.
func TestBenchPlotWriteFailsAfterRun(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	code, stdout, stderr := call(t, nil, "bench", "-ops", "20", "-concurrency", "2", "-json", "-q", "-plot", "/dev/full")
	if code != exitError || !strings.Contains(stderr, "-plot: ") || !strings.Contains(stderr, "the results are above") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Ops+r.Errors.NotObtained+r.Errors.Other != 20 {
		t.Fatalf("results lost (%v): %s", err, stdout)
	}
}

// TestBenchOpsWithoutDuration: -ops alone bounds the run by ops (not by the
// default 5 s), and the table says 1 goroutine, 1 resource.
func TestBenchOpsWithoutDuration(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-ops", "40", "-concurrency", "1", "-resources", "1", "-q")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`load +1 goroutine, 1 resource, ttl 10s, Lock, .*\(stopped by ops\)`).MatchString(stdout) ||
		!regexp.MustCompile(`\nops +40 lock\+unlock cycles\n`).MatchString(stdout) {
		t.Fatalf("table:\n%s", stdout)
	}
	code, stdout, _ = call(t, nil, "bench", "-ops", "30", "-concurrency", "3", "-json", "-q")
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v: %s", code, err, stdout)
	}
	if r.Stopped != "ops" || r.Ops+r.Errors.NotObtained+r.Errors.Other != 30 {
		t.Fatalf("stopped by %s after %d ops and %+v", r.Stopped, r.Ops, r.Errors)
	}
}

// TestBenchMiniredisWarns: the miniredis fallback says what it measures and
// runs with a NodeTimeout it can meet: no master counts as failed.
func TestBenchMiniredisWarns(t *testing.T) {
	code, stdout, stderr := call(t, nil, "bench", "-embedded", "miniredis", "-masters", "3", "-ops", "60", "-concurrency", "4", "-json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "warning: miniredis (an in-process Go server) is about 18× slower than redis-server") ||
		!strings.Contains(stderr, "-node-timeout 1s for miniredis") {
		t.Errorf("stderr:\n%s", stderr)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Errors.NoQuorum != 0 || r.Errors.Other != 0 || r.Ops == 0 {
		t.Errorf("errors with miniredis: %+v (%d ops)", r.Errors, r.Ops)
	}
}

// TestStatusJSONNaming: one naming scheme (snake_case keys, durations in
// float milliseconds under *_ms keys) and null for a down master's ping.
func TestStatusJSONNaming(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	if err := servers[1].Kill(); err != nil {
		t.Fatal(err)
	}
	_, stdout, stderr := call(t, nil, "status", "-json", "-servers", strings.Join(redisproc.Addrs(servers), ","))
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout, stderr)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !snake.MatchString(k) {
					t.Errorf("key %s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("", doc)
	masters := doc["masters"].([]any)
	for i, m := range masters {
		m := m.(map[string]any)
		ping, present := m["ping_ms"]
		if !present {
			t.Fatalf("master %d has no ping_ms: %v", i, m)
		}
		if i == 1 {
			if ping != nil || m["up"] != false {
				t.Errorf("the killed master: ping_ms %v up %v, want null and false", ping, m["up"])
			}
			continue
		}
		if p, ok := ping.(float64); !ok || p <= 0 || p > 10_000 {
			t.Errorf("master %d: ping_ms %v, want milliseconds", i, ping)
		}
		pool := m["pool"].(map[string]any)
		if _, ok := pool["acquire_wait_ms"].(float64); !ok {
			t.Errorf("master %d: pool %v lacks acquire_wait_ms", i, pool)
		}
	}
}

// TestRunValidityRanOut: a TTL too short for the fleet's round trips is
// not "held by someone else": run says what happened and what to do.
func TestRunValidityRanOut(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	tox := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var addrs []string
	for i, s := range servers {
		p := toxiproxy.NewProxy(tox, fmt.Sprint("slow", i), "127.0.0.1:0", s.Addr())
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":20}}`)); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, p.Listen)
	}
	code, out := runBinary(t, nil, "run", "-servers", strings.Join(addrs, ","), "-resource", "r", "-ttl", "5ms",
		"-node-timeout", "5s", "-dial-timeout", "5s", "--", "true")
	if code != exitNotObtained || !strings.Contains(out, `lock "r" not obtained: a quorum said yes, but the attempt took`) ||
		!strings.Contains(out, "use a longer -ttl") || strings.Contains(out, "someone else") {
		t.Fatalf("exit %d (want %d):\n%s", code, exitNotObtained, out)
	}
	// run's retry interval is the library's.
	if _, stdout, _ := call(t, nil, "run", "-h"); !strings.Contains(stdout, "(default "+redlock.DefaultRetryInterval.String()+")") {
		t.Errorf("run -h: -retry-interval default is not the library's %v:\n%s", redlock.DefaultRetryInterval, stdout)
	}
}

// TestStatusMisconfigured: a master that refuses the configuration is shown
// as misconfigured (redlock.IsPermanent), not merely down.
func TestStatusMisconfigured(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	list := servers[0].Addr() + "," + servers[1].Addr() + ",redis://" + servers[2].Addr() + "/99"
	code, stdout, stderr := call(t, nil, "status", "-servers", list)
	if code != exitError {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var row string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, servers[2].Addr()) && strings.Contains(line, "/99") {
			row = line
		}
	}
	if !strings.Contains(row, "MISCONFIGURED") || !strings.Contains(row, "DB index is out of range") {
		t.Fatalf("the misconfigured master's row: %q\n%s", row, stdout)
	}
	_, stdout, _ = call(t, nil, "status", "-json", "-servers", list)
	var rep statusReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Masters[2].Permanent || rep.Masters[0].Permanent || rep.Masters[2].PingMs != nil {
		t.Fatalf("permanent flags / ping: %+v", rep.Masters)
	}
}

// TestStatusQuarantine: with -restart-quarantine, masters that started less
// than that long ago show as QUARANTINED with the time left, and a group
// without a quorum of voting masters says so (exit 1).
func TestStatusQuarantine(t *testing.T) {
	servers := redisproc.StartT(t, 3, redisproc.Options{})
	list := strings.Join(redisproc.Addrs(servers), ",")
	code, stdout, stderr := call(t, nil, "status", "-servers", list, "-restart-quarantine", "1h")
	if code != exitError || strings.Count(stdout, "QUARANTINED (") != 3 || !strings.Contains(stdout, "NO QUORUM FOR LOCKS") ||
		!strings.Contains(stderr, "restart quarantine") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = call(t, nil, "status", "-servers", list, "-restart-quarantine", "1h", "-json")
	var rep statusReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("invalid JSON (exit %d): %v\n%s", code, err, stdout)
	}
	for _, m := range rep.Masters {
		if m.QuarantineMs < 3500e3 || m.QuarantineMs > 3600e3 || m.RunID == "" {
			t.Errorf("%s: quarantine_ms %v, run_id %q; want about 3600e3 ms and a run_id", m.Addr, m.QuarantineMs, m.RunID)
		}
	}
	if code, _, stderr := call(t, nil, "status", "-servers", list, "-restart-quarantine", "-1s"); code == exitOK || !strings.Contains(stderr, "-restart-quarantine") {
		t.Errorf("negative -restart-quarantine: exit %d, %s", code, stderr)
	}
}
