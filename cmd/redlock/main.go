// Command redlock measures, runs commands under, and inspects Redlock locks
// on a fleet of independent Redis masters (package redlock).
//
//	redlock bench  [flags]                      lock+unlock cycles: throughput and latency
//	redlock run    -resource R -ttl T [-wait D] [flags] -- command [args...]
//	redlock status [flags]                      health, latency and pools of every master
//	redlock plan   -from FLEET -to FLEET        what a ring change moves (Config.Previous)
//
// Every command targets -servers "a,b,c" (one quorum group) or -cluster
// "a,b,c;d,e,f" (several groups), or REDLOCK_SERVERS / REDLOCK_CLUSTER when
// no flag is given. Without any of them, bench and status start an embedded
// fleet of redis-server processes on 127.0.0.1 (in-process miniredis servers
// when redis-server is not installed); run refuses: a lock on a private
// fleet guards nothing.
//
// Exit codes: 0 success; 1 error (e.g. an unreachable fleet); 2 usage;
// run: 75 lock not obtained, 76 lock lost while the command ran (it is then
// sent SIGTERM), 126/127 the command cannot be run / is not found, and
// otherwise the command's own exit code (128+N when it died of signal N).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNotObtained = 75 // EX_TEMPFAIL: try again later
	exitLost        = 76
	exitCannotRun   = 126
	exitNotFound    = 127
)

const usage = `redlock: Redlock distributed locks on a fleet of independent Redis masters

Usage:
  redlock bench  [flags]                 measure lock+unlock cycles (throughput, latency, batching)
  redlock run    -resource R -ttl T [-wait D] [flags] -- command [args...]
                                         run a command while holding a lock (like flock(1))
  redlock status [flags]                 health, latency and pools of every master; each group's share
  redlock plan   -from FLEET -to FLEET   what a ring change moves: share of resources, from which group to which
  redlock help [command]                 this text, or a command's flags
  redlock version                        the tool's version (also --version, -version)

The fleet (every command):
  -servers "a,b,c"          one quorum group: host:port, redis://[user:pass@]host:port[/db], rediss://...
  -cluster "a,b,c;d,e,f"    several quorum groups, separated by ';'
  REDLOCK_SERVERS, REDLOCK_CLUSTER (same syntax) are used when neither flag is given.
  Without a fleet, bench and status start an embedded one on 127.0.0.1; run refuses.

Exit codes: 0 ok, 1 error, 2 usage, 75 lock not obtained, 76 lock lost while the
command ran, otherwise the command's own exit code.
`

// env reads an environment variable (os.Getenv, or a map in tests).
type env func(string) string

// usageError is a bad command line: exit code 2, with the command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// codeError carries an exit code other than 1.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func main() {
	os.Exit(cli(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// cli runs one command line and returns the exit code.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	var err error
	var fs flagSet
	switch name {
	case "bench":
		fs, err = benchCmd(ctx, rest, stdout, stderr, getenv)
	case "run":
		fs, err = runCmd(ctx, rest, stdout, stderr, getenv)
	case "status":
		fs, err = statusCmd(ctx, rest, stdout, stderr, getenv)
	case "plan":
		fs, err = planCmd(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return cli(ctx, []string{rest[0], "-h"}, stdout, stderr, getenv)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "redlock: unknown command %q\nusage: redlock bench|run|status|plan [flags]; run 'redlock help' for details\n", name)
		return exitUsage
	}
	return report(name, fs, err, stderr)
}

// version is "redlock <module version> (<go version>[, <vcs revision>[ modified]])"
// from the build information: the module's version for a binary built by
// go install …@version, "(devel)" for one built in a checkout.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "redlock (unknown version: built without module support)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	extra := []string{bi.GoVersion}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " modified"
			}
		}
	}
	if rev != "" {
		extra = append(extra, "revision "+rev[:min(12, len(rev))]+modified)
	}
	return "redlock " + v + " (" + strings.Join(extra, ", ") + ")"
}

// report turns a command's error into a message and an exit code.
func report(name string, fs flagSet, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "redlock %s: %s\n", name, oneLine(ue.msg))
		if fs != nil {
			fs.shortUsage(stderr)
		}
		return exitUsage
	}
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.err != nil && ce.err.Error() != "" {
			fmt.Fprintf(stderr, "redlock %s: %s\n", name, oneLine(ce.err.Error()))
		}
		return ce.code
	}
	fmt.Fprintf(stderr, "redlock %s: %s\n", name, oneLine(err.Error()))
	return exitError
}

// oneLine folds a multi-line error (errors.Join) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
