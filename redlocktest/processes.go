package redlocktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// ProcessFleet is a Fleet of redis-server child processes on 127.0.0.1, one
// per master, each on its own free port and in its own temporary directory.
// It needs the redis-server binary (apt-get install -y redis-server) but no
// Docker, and starts in milliseconds.
//
// The faults, process by process:
//
//   - Stop: SIGKILL. Start: the same binary on the same port, empty.
//   - Pause/Unpause: SIGSTOP/SIGCONT. The kernel still accepts connections
//     into the listen backlog, so a client connects and then times out.
//   - Disconnect: the master stops listening ("CONFIG SET port 0") and closes
//     every client connection ("CLIENT KILL TYPE normal|pubsub"), keeping one
//     private control connection: new connections are refused, established
//     ones see EOF, data is kept. This is what a Docker network disconnect
//     looks like from the host (see the package documentation). Reconnect
//     listens on the same port again ("CONFIG SET port <port>") through the
//     control connection. If another program grabbed the port meanwhile,
//     Reconnect fails with an error naming it.
//   - Restart(persist): see Master.
type ProcessFleet struct {
	fleet
	servers   []*redisproc.Server
	closeOnce sync.Once
	closeErr  error
}

var _ Fleet = (*ProcessFleet)(nil)

// StartProcesses starts groups × masters redis-server processes in parallel
// and waits until each answers PING. On error, those already started are
// stopped. Call Close when done (StartProcessesT does it for a test).
func StartProcesses(ctx context.Context, groups, masters int, opts ...Option) (*ProcessFleet, error) {
	if err := checkShape(groups, masters); err != nil {
		return nil, err
	}
	if !redisproc.Available() {
		return nil, fmt.Errorf("redlocktest: %w", redisproc.ErrNotInstalled)
	}
	o := buildOptions(opts, 5*time.Second)
	f := &ProcessFleet{servers: make([]*redisproc.Server, groups*masters)}
	errs := make([]error, len(f.servers))
	var wg sync.WaitGroup
	for n := range f.servers {
		wg.Go(func() {
			if err := ctx.Err(); err != nil {
				errs[n] = err
				return
			}
			f.servers[n], errs[n] = redisproc.Start(redisproc.Options{StartTimeout: o.startTimeout})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = f.closeServers()
		return nil, fmt.Errorf("redlocktest: start %d redis-server processes: %w", len(f.servers), err)
	}
	f.masters = make([][]*master, groups)
	for g := range f.masters {
		f.masters[g] = make([]*master, masters)
		for i := range f.masters[g] {
			srv := f.servers[g*masters+i]
			f.masters[g][i] = &master{name: masterName(g, i), b: &process{srv: srv}, timeout: o.startTimeout}
		}
	}
	return f, nil
}

// StartProcessesT is StartProcesses for a test: it fails the test when the
// fleet cannot start (a missing redis-server is a failure, never a skip) and
// closes the fleet in t.Cleanup, so it is also cleaned up when the test fails.
func StartProcessesT(tb testing.TB, groups, masters int, opts ...Option) *ProcessFleet {
	tb.Helper()
	f, err := StartProcesses(tb.Context(), groups, masters, opts...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return f
}

// Close kills every process (ending any partition first) and removes their
// directories. Later calls return the first call's result.
func (f *ProcessFleet) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.closeServers() })
	return f.closeErr
}

func (f *ProcessFleet) closeServers() error {
	var errs []error
	for _, group := range f.masters {
		for _, m := range group {
			errs = append(errs, m.Stop(context.Background()))
		}
	}
	var started []*redisproc.Server
	for _, s := range f.servers {
		if s != nil {
			started = append(started, s)
		}
	}
	redisproc.StopAll(started)
	return errors.Join(errs...)
}

// process is the backend of one redis-server child process.
type process struct {
	srv *redisproc.Server
	// While disconnected: the client whose single connection survives the
	// CLIENT KILL and can tell the server to listen again.
	ctl     *redis.Client
	ctlConn *redis.Conn
	// frozen: SIGSTOPped. healOnThaw: a Reconnect came while frozen; a
	// stopped process cannot run CONFIG SET, so thaw finishes it.
	frozen, healOnThaw bool
}

func (p *process) addr() string { return p.srv.Addr() }
func (p *process) kill(context.Context) error {
	if p.healOnThaw { // the reconnection that was waiting for thaw is moot
		_ = p.ctlConn.Close()
		_ = p.ctl.Close()
		p.ctl, p.ctlConn = nil, nil
	}
	p.frozen, p.healOnThaw = false, false
	return p.srv.Kill()
}
func (p *process) start(context.Context) error { return p.srv.Restart() }
func (p *process) freeze(context.Context) error {
	if err := p.srv.Pause(); err != nil {
		return err
	}
	p.frozen = true
	return nil
}
func (p *process) thaw(ctx context.Context) error {
	if err := p.srv.Resume(); err != nil {
		return err
	}
	p.frozen = false
	if p.healOnThaw {
		p.healOnThaw = false
		return p.heal(ctx, true)
	}
	return nil
}

func (p *process) wipe(context.Context) error {
	err := os.Remove(filepath.Join(p.srv.Dir(), "dump.rdb"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (p *process) cut(ctx context.Context) error {
	ctl, err := dial(ctx, p.addr())
	if err != nil {
		return err
	}
	conn := ctl.Conn()
	steps := [][]any{
		{"CONFIG", "SET", "port", "0"}, // close the listening socket
		{"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"},
		{"CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes"},
	}
	for i, args := range steps {
		if err := conn.Do(ctx, args...).Err(); err != nil {
			if i > 0 { // listening stopped: try to listen again before giving up
				_ = conn.Do(context.WithoutCancel(ctx), "CONFIG", "SET", "port", strconv.Itoa(p.srv.Port())).Err()
			}
			_ = conn.Close()
			_ = ctl.Close()
			return fmt.Errorf("%v: %w", args, err)
		}
	}
	p.ctl, p.ctlConn = ctl, conn
	return nil
}

func (p *process) heal(ctx context.Context, running bool) error {
	if p.ctl == nil {
		return nil
	}
	if running && p.frozen {
		p.healOnThaw = true
		return nil
	}
	if running {
		if err := p.ctlConn.Do(ctx, "CONFIG", "SET", "port", strconv.Itoa(p.srv.Port())).Err(); err != nil {
			// Still partitioned; the control connection stays for a retry.
			return fmt.Errorf("listen on port %d again: %w", p.srv.Port(), err)
		}
	}
	_ = p.ctlConn.Close()
	_ = p.ctl.Close()
	p.ctl, p.ctlConn = nil, nil
	return nil
}
