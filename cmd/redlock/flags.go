package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

// errHelp means -h was asked for and the usage was printed.
var errHelp = errors.New("help")

// flagSet is what report needs to print a command's usage.
type flagSet interface {
	usage(w io.Writer)
	shortUsage(w io.Writer)
}

// flags is a command's flag set: errors come back as *usageError (exit 2),
// never as a panic or an os.Exit.
type flags struct {
	fs       *flag.FlagSet
	synopsis string
}

func newFlags(name, synopsis string) *flags {
	fs := flag.NewFlagSet("redlock "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{fs: fs, synopsis: synopsis}
}

func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nFlags:\n", f.synopsis)
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
	f.fs.SetOutput(io.Discard)
}

// shortUsage prints the synopsis line and where to find the rest.
func (f *flags) shortUsage(w io.Writer) {
	first, _, _ := strings.Cut(f.synopsis, "\n")
	fmt.Fprintf(w, "%s\nRun '%s -h' for the flags.\n", strings.Replace(first, "Usage: ", "usage: ", 1), f.fs.Name())
}

// parse parses args; -h prints the usage on stdout and returns errHelp.
func (f *flags) parse(args []string, stdout io.Writer) error {
	err := f.fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.usage(stdout)
		return errHelp
	case err != nil:
		return &usageError{msg: err.Error()}
	}
	return nil
}

// fleetFlags are the flags every command has: which masters, and how to
// talk to them.
type fleetFlags struct {
	servers     string
	cluster     string
	poolSize    int
	nodeTimeout time.Duration
	dialTimeout time.Duration
	keyPrefix   string
	verbose     bool
	fencing     bool
	quarantine  time.Duration
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func (ff *fleetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&ff.servers, "servers", "", "one quorum group: comma-separated masters (host:port or redis://[user:pass@]host:port[/db]); default $REDLOCK_SERVERS")
	fs.StringVar(&ff.cluster, "cluster", "", "several quorum groups: masters comma-separated, groups separated by ';'; default $REDLOCK_CLUSTER")
	fs.IntVar(&ff.poolSize, "pool-size", 0, "connections per master (0: the client's default, 2)")
	fs.DurationVar(&ff.nodeTimeout, "node-timeout", 0, "per-master command timeout (0: the client's default, 100ms)")
	fs.DurationVar(&ff.dialTimeout, "dial-timeout", 0, "per-master dial timeout (0: the client's default, 1s)")
	fs.StringVar(&ff.keyPrefix, "key-prefix", "", "prefix of every lock key (default: the key is the resource)")
	fs.BoolVar(&ff.verbose, "v", false, "log the client's master up/down events on stderr")
	fs.BoolVar(&ff.fencing, "fencing", false, "fencing tokens (Config.Fencing)")
	fs.DurationVar(&ff.quarantine, "restart-quarantine", 0, "a master up for less than this votes no (Config.RestartQuarantine; 0: off)")
}

// fleet is the masters named on the command line or in the environment.
type fleet struct {
	groups [][]string
	source string // "-servers", "-cluster", "REDLOCK_SERVERS", "REDLOCK_CLUSTER"
}

// resolve returns the fleet given by flags or environment, or nil when
// none was given.
func (ff *fleetFlags) resolve(getenv env) (*fleet, error) {
	if ff.servers != "" && ff.cluster != "" {
		return nil, usagef("give either -servers or -cluster, not both")
	}
	servers, cluster := ff.servers, ff.cluster
	srcS, srcC := "-servers", "-cluster"
	if servers == "" && cluster == "" {
		servers, cluster = strings.TrimSpace(getenv("REDLOCK_SERVERS")), strings.TrimSpace(getenv("REDLOCK_CLUSTER"))
		srcS, srcC = "REDLOCK_SERVERS", "REDLOCK_CLUSTER"
		if servers != "" && cluster != "" {
			return nil, usagef("both REDLOCK_SERVERS and REDLOCK_CLUSTER are set: unset one")
		}
	}
	switch {
	case servers != "":
		g := splitList(servers, ",")
		if len(g) == 0 {
			return nil, usagef("%s: no master in %q", srcS, servers)
		}
		return &fleet{groups: [][]string{g}, source: srcS}, nil
	case cluster != "":
		var groups [][]string
		for _, part := range strings.Split(cluster, ";") {
			if g := splitList(part, ","); len(g) > 0 {
				groups = append(groups, g)
			}
		}
		if len(groups) == 0 {
			return nil, usagef("%s: no master in %q", srcC, cluster)
		}
		return &fleet{groups: groups, source: srcC}, nil
	}
	return nil, nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// config builds the client's Config for groups.
func (ff *fleetFlags) config(groups [][]string, stderr io.Writer) redlock.Config {
	cfg := redlock.Config{
		PoolSize:    ff.poolSize,
		NodeTimeout: ff.nodeTimeout,
		DialTimeout: ff.dialTimeout,
		KeyPrefix:   ff.keyPrefix,
		Logger:      slog.New(slog.DiscardHandler),

		Fencing:           ff.fencing,
		RestartQuarantine: ff.quarantine,
	}
	if ff.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if len(groups) == 1 {
		cfg.Servers = groups[0]
	} else {
		cfg.Cluster = groups
	}
	return cfg
}

// newClient builds a client; a bad Config is a usage error.
func newClient(cfg redlock.Config) (*redlock.Client, error) {
	c, err := redlock.New(cfg)
	var ce *redlock.ConfigError
	if errors.As(err, &ce) {
		msg := strings.TrimPrefix(ce.Error(), "redlock: ")
		msg = strings.NewReplacer("Config.Servers", "-servers", "Config.Cluster", "-cluster",
			"Config.PoolSize", "-pool-size", "Config.NodeTimeout", "-node-timeout", "Config.DialTimeout", "-dial-timeout").Replace(msg)
		return nil, usagef("%s", msg)
	}
	return c, err
}

func (ff *fleetFlags) validate() error {
	if ff.poolSize < 0 {
		return usagef("-pool-size %d: must not be negative", ff.poolSize)
	}
	if ff.nodeTimeout < 0 || ff.dialTimeout < 0 {
		return usagef("-node-timeout and -dial-timeout must not be negative")
	}
	if ff.quarantine < 0 {
		return usagef("-restart-quarantine %v: must not be negative", ff.quarantine)
	}
	return nil
}

// describe is "1 group × 5 masters" or "3 groups × 5 masters".
func describe(groups [][]string) string {
	sizes := map[int]bool{}
	total := 0
	for _, g := range groups {
		sizes[len(g)] = true
		total += len(g)
	}
	gs := "group"
	if len(groups) != 1 {
		gs = "groups"
	}
	if len(sizes) == 1 {
		ms := "masters"
		if len(groups[0]) == 1 {
			ms = "master"
		}
		return fmt.Sprintf("%d %s × %d %s", len(groups), gs, len(groups[0]), ms)
	}
	return fmt.Sprintf("%d %s, %d masters", len(groups), gs, total)
}
