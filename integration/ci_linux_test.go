//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlocktest"
)

// envNoDocker switches the test binary, run again by TestCIFailsWithoutDocker,
// into the no-Docker child (TestMain dispatches it: no test runs then).
const envNoDocker = "QUORUMLOCK_INTEGRATION_NO_DOCKER"

// dockerSockets are the default places testcontainers-go looks for a daemon
// when DOCKER_HOST does not answer.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// noDockerChild is the child of TestCIFailsWithoutDocker: when envNoDocker
// is set (ok), it hides every Docker socket (the child runs in a private
// mount namespace), starts a container fleet with redlocktest.StartT, prints
// how StartT ended (CHILD-SKIP, CHILD-FAIL or STARTED) and returns the exit code.
func noDockerChild() (code int, ok bool) {
	if os.Getenv(envNoDocker) == "" {
		return 0, false
	}
	for _, s := range dockerSockets {
		if _, err := os.Stat(s); err == nil {
			if err := syscall.Mount("/dev/null", s, "", syscall.MS_BIND, ""); err != nil {
				fmt.Printf("HIDE-FAILED: bind /dev/null over %s: %v\n", s, err)
				return 3, true
			}
		}
	}
	tb := &childTB{ctx: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redlocktest.StartT(tb, 1, 1)
		fmt.Println("STARTED: a fleet started without a Docker daemon")
	}()
	<-done
	tb.runCleanups()
	switch {
	case tb.failed:
		fmt.Println("CHILD-FAIL")
		return 1, true
	case tb.skipped:
		fmt.Println("CHILD-SKIP")
	}
	return 0, true
}

// childTB is the testing.TB that StartT gets in the no-Docker child, which
// runs outside any test. The embedded TB is nil: only the methods below are
// called (another one would panic, and the child's output would show it).
type childTB struct {
	testing.TB
	ctx             context.Context
	mu              sync.Mutex
	failed, skipped bool
	cleanups        []func()
}

func (*childTB) Helper()                     {}
func (*childTB) Name() string                { return "no-docker-child" }
func (tb *childTB) Context() context.Context { return tb.ctx }
func (*childTB) Log(args ...any)             { fmt.Println(args...) }
func (*childTB) Logf(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

func (tb *childTB) Errorf(format string, args ...any) {
	tb.Logf(format, args...)
	tb.mu.Lock()
	tb.failed = true
	tb.mu.Unlock()
}

func (tb *childTB) Fatalf(format string, args ...any) {
	tb.Errorf(format, args...)
	runtime.Goexit()
}

func (tb *childTB) Skipf(format string, args ...any) {
	tb.Logf(format, args...)
	tb.mu.Lock()
	tb.skipped = true
	tb.mu.Unlock()
	runtime.Goexit()
}

func (tb *childTB) Cleanup(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, f)
}

func (tb *childTB) runCleanups() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}

// TestCIFailsWithoutDocker verifies the CI rule of the container suites: with
// no Docker daemon, redlocktest.StartT skips the test normally but FAILS it
// when CI=true. The daemon is hidden from a child process (this binary run
// again) by a private mount namespace: DOCKER_HOST alone cannot do it, since
// testcontainers-go falls back to the default socket when DOCKER_HOST does
// not answer.
func TestCIFailsWithoutDocker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hiding the Docker socket needs a private mount namespace (root)")
	}
	home := t.TempDir()
	for _, ci := range []string{"true", ""} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), envNoDocker+"=1", "CI="+ci,
			"DOCKER_HOST=unix://"+home+"/no-docker.sock", "HOME="+home, "XDG_RUNTIME_DIR="+home,
			"TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1", "TESTCONTAINERS_RYUK_DISABLED=true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil && errors.Is(err, syscall.EPERM) || strings.Contains(out.String(), "HIDE-FAILED") {
			t.Skipf("cannot hide the Docker socket here: %v\n%s", err, out.String())
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Skipf("cannot run the child in a private mount namespace: %v", err)
		}
		o := out.String()
		if strings.Contains(o, "STARTED") {
			t.Fatalf("CI=%q: a fleet started although the Docker socket was hidden:\n%s", ci, o)
		}
		if !strings.Contains(o, "Docker daemon not available") {
			t.Fatalf("CI=%q: the child did not report a missing Docker daemon:\n%s", ci, o)
		}
		if ci == "true" {
			if err == nil || !strings.Contains(o, "CHILD-FAIL") {
				t.Fatalf("CI=true without Docker: want StartT to fail the test, got exit %v:\n%s", err, o)
			}
		} else if err != nil || !strings.Contains(o, "CHILD-SKIP") {
			t.Fatalf("without CI and without Docker: want StartT to skip the test, got exit %v:\n%s", err, o)
		}
		t.Logf("CI=%q without Docker: %s", ci, lastLines(o, 3))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
