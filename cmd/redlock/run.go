package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

const runSynopsis = `Usage: redlock run -resource R [-ttl T] [-wait D] [flags] -- command [args...]

Runs command while holding the lock on resource R, like flock(1) for a fleet
of Redis masters. The lock is extended by its TTL every TTL/3 while the
command runs and released when it exits; redlock exits with the command's
exit code. The command gets REDLOCK_RESOURCE, REDLOCK_TOKEN (the lock
key's value) and REDLOCK_FENCE (with -fencing, the lock's fencing token, to
pass to the resource it writes to; 0 otherwise) in its environment.

SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to redlock are forwarded to the
command (run in its own process group; when stdin is a terminal it stays in
redlock's, and the terminal's Ctrl-C reaches it directly).

Exit codes: 75 the lock was not obtained (busy, or no quorum of masters
answered) within -wait; 76 the lock was lost while the command ran (an
extension found it gone, or its validity ran out): the command is sent
SIGTERM, then SIGKILL after -grace; 126/127 the command cannot be run / was
not found; 2 usage; otherwise the command's own (128+N for signal N).

There is no embedded fleet for run: give -servers or -cluster, or set
REDLOCK_SERVERS / REDLOCK_CLUSTER.

Example:
  redlock run -servers "10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379" -resource nightly-report -ttl 30s -wait 1m -- ./report.sh`

type runOpts struct {
	fleetFlags
	resource      string
	ttl           time.Duration
	wait          time.Duration
	retryInterval time.Duration
	grace         time.Duration
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) (flagSet, error) {
	f := newFlags("run", runSynopsis)
	var o runOpts
	o.fleetFlags.register(f.fs)
	f.fs.StringVar(&o.resource, "resource", "", "the resource to lock (required); its Redis key, unless -key-prefix is set")
	f.fs.DurationVar(&o.ttl, "ttl", 30*time.Second, "lock TTL; the lock is extended every TTL/3 while the command runs")
	f.fs.DurationVar(&o.wait, "wait", 0, "how long to keep trying when the resource is busy (0: one attempt)")
	f.fs.DurationVar(&o.retryInterval, "retry-interval", redlock.DefaultRetryInterval, "base delay between attempts while waiting (jittered ±50%; the library's default)")
	f.fs.DurationVar(&o.grace, "grace", 10*time.Second, "after the lock is lost: time between SIGTERM and SIGKILL to the command")
	if err := f.parse(args, stdout); err != nil {
		return f, err
	}
	argv := f.fs.Args()
	switch {
	case o.resource == "":
		return f, usagef("-resource is required")
	case len(argv) == 0:
		return f, usagef("no command given: redlock run -resource R -- command [args...]")
	case o.ttl <= 0:
		return f, usagef("-ttl %v: must be positive", o.ttl)
	case o.wait < 0:
		return f, usagef("-wait %v: must not be negative", o.wait)
	case o.retryInterval <= 0:
		return f, usagef("-retry-interval %v: must be positive", o.retryInterval)
	case o.grace <= 0:
		return f, usagef("-grace %v: must be positive", o.grace)
	}
	if err := o.fleetFlags.validate(); err != nil {
		return f, err
	}
	fl, err := o.resolve(getenv)
	if err != nil {
		return f, err
	}
	if fl == nil {
		return f, usagef("no servers: give -servers or -cluster, or set REDLOCK_SERVERS / REDLOCK_CLUSTER (a lock on an embedded fleet would guard nothing)")
	}
	return f, runLocked(ctx, o, fl, argv, stdout, stderr)
}

func runLocked(ctx context.Context, o runOpts, fl *fleet, argv []string, stdout, stderr io.Writer) error {
	if err := runSupported(); err != nil {
		return err
	}
	cfg := o.config(fl.groups, stderr)
	cfg.RetryStrategy = redlock.LinearBackoff(math.MaxInt32, o.retryInterval)
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	// From here on these signals are ours: to give up waiting, then to
	// forward to the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	l, err := acquire(ctx, c, o, sigs)
	if err != nil {
		return err
	}
	verbose := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "redlock run: "+format+"\n", a...)
		}
	}
	verbose("acquired %q (token %s) until %s", o.resource, l.Token(), l.Until().Format(time.RFC3339Nano))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "REDLOCK_RESOURCE="+o.resource, "REDLOCK_TOKEN="+l.Token(), "REDLOCK_FENCE="+strconv.FormatInt(l.Fence(), 10))
	ownGroup := !isTerminal(os.Stdin)
	// The command's own process group (so that a signal reaches its
	// children too); SIGTERM if redlock dies, since the lock will no
	// longer be extended.
	cmd.SysProcAttr = commandAttr(ownGroup)
	if err := cmd.Start(); err != nil {
		releaseQuietly(ctx, c, l)
		code := exitCannotRun
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		return &codeError{code: code, err: fmt.Errorf("cannot run %q: %w", argv[0], err)}
	}
	signalCmd := func(s syscall.Signal) { signalCommand(cmd.Process, ownGroup, s) }
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	extend := time.NewTicker(max(o.ttl/3, time.Millisecond))
	defer extend.Stop()
	lost := l.Done() // closed when the validity ran out or an Extend found the lock gone
	var lostErr error
	var kill <-chan time.Time
	lose := func(why error) {
		lostErr = why
		extend.Stop()
		lost = nil
		fmt.Fprintf(stderr, "redlock run: lock %q lost while the command ran: %s; sending SIGTERM to the command\n", o.resource, oneLine(why.Error()))
		signalCmd(syscall.SIGTERM)
		kill = time.After(o.grace)
	}
loop:
	for {
		select {
		case <-exited:
			break loop
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				// From a terminal, Ctrl-C and Ctrl-\ already reached a
				// command that shares our process group.
				if ownGroup || (sig != syscall.SIGINT && sig != syscall.SIGQUIT) {
					signalCmd(sig)
				}
			}
		case <-extend.C:
			ectx, cancel := context.WithTimeout(ctx, min(max(o.ttl/3, 50*time.Millisecond), 5*time.Second))
			err := l.Extend(ectx, o.ttl)
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, redlock.ErrNotHeld):
				lose(err)
			default:
				fmt.Fprintf(stderr, "redlock run: extending %q failed, will retry: %s\n", o.resource, oneLine(err.Error()))
			}
		case <-lost:
			lose(errors.New("its validity ran out before an extension succeeded"))
		case <-kill:
			fmt.Fprintf(stderr, "redlock run: the command did not exit within %v of SIGTERM; sending SIGKILL\n", o.grace)
			signalCmd(syscall.SIGKILL)
			kill = nil
		}
	}
	code := exitCode(cmd.ProcessState)
	if lostErr != nil {
		releaseQuietly(ctx, c, l)
		return &codeError{code: exitLost, err: nil}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		if errors.Is(err, redlock.ErrNotHeld) {
			return &codeError{code: exitLost, err: fmt.Errorf("lock %q was no longer held when the command exited (code %d): %w", o.resource, code, err)}
		}
		fmt.Fprintf(stderr, "redlock run: releasing %q failed (it expires with its TTL): %s\n", o.resource, oneLine(err.Error()))
	}
	verbose("released %q; the command exited with code %d", o.resource, code)
	if code != 0 {
		return &codeError{code: code}
	}
	return nil
}

// acquire takes the lock: one attempt without -wait, otherwise attempts
// until -wait runs out. A signal while waiting gives up (exit 128+N).
func acquire(ctx context.Context, c *redlock.Client, o runOpts, sigs <-chan os.Signal) (*redlock.Lock, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.wait > 0 {
		lctx, cancel = context.WithTimeout(lctx, o.wait)
		defer cancel()
	}
	type result struct {
		l   *redlock.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if o.wait > 0 {
			r.l, r.err = c.Lock(lctx, o.resource, o.ttl)
		} else {
			r.l, r.err = c.TryLock(lctx, o.resource, o.ttl)
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case s := <-sigs:
		cancel()
		r = <-done
		if r.err == nil {
			releaseQuietly(ctx, c, r.l)
		}
		code := exitError
		if sig, ok := s.(syscall.Signal); ok {
			code = 128 + int(sig)
		}
		return nil, &codeError{code: code, err: fmt.Errorf("interrupted (%v) while waiting for %q", s, o.resource)}
	}
	if r.err == nil {
		return r.l, nil
	}
	var ie *redlock.InputError
	if errors.As(r.err, &ie) {
		return nil, usagef("%s", ie.Error())
	}
	if errors.Is(r.err, redlock.ErrNotObtained) {
		return nil, &codeError{code: exitNotObtained, err: notObtained(o, r.err)}
	}
	return nil, r.err
}

// notObtained explains why: busy, no quorum of masters, or a TTL too short
// for the fleet (the lock's *redlock.QuorumError decides which).
func notObtained(o runOpts, err error) error {
	within := ""
	if o.wait > 0 {
		within = fmt.Sprintf(" within %v", o.wait)
	}
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		return fmt.Errorf("lock %q not obtained%s: %w", o.resource, within, err)
	}
	var msg string
	switch {
	case qe.ValidityRanOut:
		msg = fmt.Sprintf("a quorum said yes, but the attempt took %v and left no validity of the %v TTL: use a longer -ttl",
			qe.Took.Round(time.Microsecond), o.ttl)
	case qe.Unavailable():
		failed := make([]string, 0, len(qe.Votes))
		for _, v := range qe.Failed() {
			failed = append(failed, v.String())
		}
		msg = fmt.Sprintf("no quorum of masters answered (%d of %d failed, %d needed: %s)",
			len(failed), len(qe.Votes), qe.Quorum, strings.Join(failed, ", "))
	case qe.Busy():
		msg = fmt.Sprintf("it is held by someone else (%d of %d masters said yes, %d needed)", qe.Yes(), len(qe.Votes), qe.Quorum)
	default:
		return fmt.Errorf("lock %q not obtained%s: %w", o.resource, within, err)
	}
	return &wrapped{msg: fmt.Sprintf("lock %q not obtained%s: %s", o.resource, within, msg), err: err}
}

// wrapped is an error that says msg and wraps err (which msg already
// summarizes: the text is not repeated).
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

func releaseQuietly(ctx context.Context, _ *redlock.Client, l *redlock.Lock) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = l.Release(rctx)
}

// exitCode is the command's exit code, 128+N when it died of signal N.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return exitError
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
