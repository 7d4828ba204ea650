//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumlock/quorumlock/redlocktest"
)

// envNoDocker switches the test binary, run again by TestCIFailsWithoutDocker,
// into TestHelperNoDocker's mode.
const envNoDocker = "QUORUMLOCK_INTEGRATION_NO_DOCKER"

// dockerSockets are the default places testcontainers-go looks for a daemon
// when DOCKER_HOST does not answer.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// TestHelperNoDocker is not a test: run by TestCIFailsWithoutDocker in a
// private mount namespace, it hides every Docker socket and starts a
// container fleet.
func TestHelperNoDocker(t *testing.T) {
	if os.Getenv(envNoDocker) == "" {
		t.Skip("helper process of TestCIFailsWithoutDocker; runs only as a child")
	}
	for _, s := range dockerSockets {
		if _, err := os.Stat(s); err == nil {
			if err := syscall.Mount("/dev/null", s, "", syscall.MS_BIND, ""); err != nil {
				t.Fatalf("HIDE-FAILED: bind /dev/null over %s: %v", s, err)
			}
		}
	}
	redlocktest.StartT(t, 1, 1)
	t.Log("STARTED: a fleet started without a Docker daemon")
}

// TestCIFailsWithoutDocker verifies the CI rule of the container suites: with
// no Docker daemon, redlocktest.StartT skips the test normally but FAILS it
// when CI=true. The daemon is hidden from a child process (this binary run
// again) by a private mount namespace: DOCKER_HOST alone cannot do it, since
// testcontainers-go falls back to the default socket when DOCKER_HOST does
// not answer.
func TestCIFailsWithoutDocker(t *testing.T) {
	if os.Getenv(envNoDocker) != "" {
		t.Skip("running as the child")
	}
	if os.Geteuid() != 0 {
		t.Skip("hiding the Docker socket needs a private mount namespace (root)")
	}
	home := t.TempDir()
	for _, ci := range []string{"true", ""} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperNoDocker$", "-test.v", "-test.count=1")
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
			if err == nil || !strings.Contains(o, "--- FAIL: TestHelperNoDocker") {
				t.Fatalf("CI=true without Docker: want a failing test, got exit %v:\n%s", err, o)
			}
		} else if err != nil || !strings.Contains(o, "--- SKIP: TestHelperNoDocker") {
			t.Fatalf("without CI and without Docker: want a skipped test, got exit %v:\n%s", err, o)
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
