// Package redisproc starts real redis-server processes on loopback for tests,
// benchmarks and the embedded default fleet of the redlock tool.
//
// Each Server is a child process bound to 127.0.0.1 on a free port, with
// persistence off unless asked for. It can be killed, restarted on the same
// port, paused with SIGSTOP (a faithful "paused master") and resumed.
package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned when no redis-server binary can be found.
var ErrNotInstalled = errors.New("redisproc: redis-server not found in PATH (install it: apt-get install -y redis-server)")

// Options configures a Server.
type Options struct {
	// Binary is the redis-server executable. Default: "redis-server" from PATH.
	Binary string
	// Dir is the working directory (for AOF/RDB files). Default: a new temp dir.
	Dir string
	// Args are extra arguments appended to the command line, e.g.
	// []string{"--appendonly", "yes", "--appendfsync", "always"}.
	Args []string
	// Port to bind. Default 0: a free port is picked.
	Port int
	// StartTimeout bounds how long Start and Restart wait for the server to
	// be ready: answering as its own process, with its AOF/RDB loaded
	// (INFO persistence loading:0). Default 30 s (generous: a loaded machine
	// and a large dataset are slow, and a server that cannot start exits at once).
	StartTimeout time.Duration
}

// Server is one redis-server child process on 127.0.0.1.
type Server struct {
	opts   Options
	port   int
	dir    string
	ownDir bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// Available reports whether a redis-server binary can be found.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Start launches a redis-server and waits until it is ready (see
// Options.StartTimeout).
func Start(opts Options) (*Server, error) {
	if opts.Binary == "" {
		opts.Binary = "redis-server"
	}
	if _, err := exec.LookPath(opts.Binary); err != nil {
		if opts.Binary == "redis-server" {
			return nil, ErrNotInstalled
		}
		return nil, fmt.Errorf("redisproc: %q: %w", opts.Binary, err)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	s := &Server{opts: opts, dir: opts.Dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "redisproc-")
		if err != nil {
			return nil, fmt.Errorf("redisproc: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		port := opts.Port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			port = p
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
		if opts.Port != 0 {
			break
		}
	}
	s.cleanupDir()
	return nil, lastErr
}

// StartN starts n servers, a few at a time, each in its own directory; on
// error the ones already started are stopped.
func StartN(n int, opts Options) ([]*Server, error) {
	servers := make([]*Server, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o := opts
			o.Dir = "" // each server its own directory
			servers[i], errs[i] = Start(o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var started []*Server
		for _, s := range servers {
			if s != nil {
				started = append(started, s)
			}
		}
		StopAll(started)
		return nil, err
	}
	return servers, nil
}

// StopAll kills every server and removes their directories.
func StopAll(servers []*Server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
}

// handedOut remembers the ports freePort gave this process, so that two
// servers started at once never get the same one (the kernel may hand a
// port that was just closed to the next listener).
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

func freePort() (int, error) {
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redisproc: pick a port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		taken := handedOut[port]
		handedOut[port] = true
		portsMu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("redisproc: no free port found")
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", "",
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(s.opts.Binary, args...)
	cmd.Dir = s.dir
	var stderr strings.Builder
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	// Own process group: a Ctrl-C to the test does not race our cleanup;
	// on Linux the server also dies with the process that started it.
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start redis-server on port %d: %w", s.port, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(s.opts.StartTimeout)
	for {
		// Answered by our process, not by another server that holds the
		// port (ours then exits: it could not bind), and done loading its
		// AOF/RDB: a loading server answers INFO but refuses PING, GET and
		// SET with LOADING.
		if st, err := serverInfo(s.Addr(), time.Second); err == nil && st.pid == cmd.Process.Pid && !st.loading {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redisproc: redis-server on port %d exited: %s", s.port, strings.TrimSpace(stderr.String()))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redisproc: redis-server on port %d was not ready (answering, its data loaded) within %v", s.port, s.opts.StartTimeout)
		}
	}
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()
	return nil
}

// serverState is what readiness needs from INFO.
type serverState struct {
	pid     int  // process_id (INFO server)
	loading bool // loading:1 (INFO persistence): the dataset is still being loaded
}

// serverInfo asks the server on addr for its process id and whether it is
// still loading its dataset (INFO, whose default sections include both).
func serverInfo(addr string, timeout time.Duration) (serverState, error) {
	var st serverState
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return st, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err = c.Write([]byte("INFO\r\n")); err != nil {
		return st, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return st, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if !strings.HasPrefix(head, "$") || err != nil {
		return st, fmt.Errorf("unexpected reply %q", strings.TrimSpace(head))
	}
	body := make([]byte, n+2)
	if _, err = io.ReadFull(r, body); err != nil {
		return st, err
	}
	var havePID, haveLoading bool
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			if st.pid, err = strconv.Atoi(v); err != nil {
				return st, fmt.Errorf("bad process_id %q", v)
			}
			havePID = true
		}
		if v, ok := strings.CutPrefix(line, "loading:"); ok {
			st.loading, haveLoading = v != "0", true
		}
	}
	switch {
	case !havePID:
		return st, errors.New("no process_id in INFO")
	case !haveLoading:
		return st, errors.New("no loading field in INFO")
	}
	return st, nil
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the TCP port the server listens on (kept across restarts).
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

// Running reports whether the process is alive (paused counts as running).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL (a crash: no shutdown, no final fsync) and waits for exit.
func (s *Server) Kill() error { return s.signalAndWait(os.Kill) }

// Stop sends SIGTERM (a clean shutdown) and waits for exit, up to 5 s, then
// kills. Where SIGTERM does not exist (Windows) it kills at once.
func (s *Server) Stop() error { return s.signalAndWait(syscall.SIGTERM) }

func (s *Server) signalAndWait(sig os.Signal) error {
	s.mu.Lock()
	cmd, exited, paused := s.cmd, s.exited, s.paused
	s.cmd = nil
	s.paused = false
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		// No such signal here (SIGTERM on Windows): kill at once.
		_ = cmd.Process.Kill()
	}
	if paused {
		continueProcess(cmd.Process)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}

// Restart starts the server again on the same port and directory (after Kill
// or Stop). With persistence enabled in Options.Args, the data survives.
func (s *Server) Restart() error {
	if s.Running() {
		return fmt.Errorf("redisproc: %s is still running", s.Addr())
	}
	var err error
	// The port may linger briefly in the kernel; retry for a moment.
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

func (s *Server) signal(sig os.Signal, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redisproc: %s is not running", s.Addr())
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redisproc: signal %v to %s: %w", sig, s.Addr(), err)
	}
	s.paused = paused
	return nil
}

// Do sends one command with a raw RESP exchange and returns the first reply
// line (for example "+OK", ":1", "$-1"); bulk string payloads are returned as
// "$<payload>". It is a tiny helper for tests that must inspect a master
// without going through the code under test.
func (s *Server) Do(ctx context.Context, args ...string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err = c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") && line != "$-1" {
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return "$" + string(buf[:n]), nil
	}
	if strings.HasPrefix(line, "-") {
		return line, errors.New(line[1:])
	}
	return line, nil
}

// Close kills the process and removes the directory it created.
func (s *Server) Close() error {
	err := s.Kill()
	s.cleanupDir()
	return err
}

func (s *Server) cleanupDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}
