package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/quorumlock/quorumlock/redlock"
)

const statusSynopsis = `Usage: redlock status [flags]

Pings every master (up or down), and prints each one's health, round trip,
connection pool and counters, then each quorum group's quorum and share of
the ring (the share of all resources routed to it). Exit code 0 when every
master answers, 1 otherwise.

With -restart-quarantine, masters that restarted less than that long ago
show as QUARANTINED with the time left (they vote no on new locks), and a
group whose masters out of quarantine are fewer than its quorum shows
NO QUORUM FOR LOCKS.

Without -servers/-cluster (or REDLOCK_SERVERS/REDLOCK_CLUSTER) it starts an
embedded demo fleet on 127.0.0.1 and shows that.`

type statusOpts struct {
	fleetFlags
	embeddedFlags
	timeout time.Duration
	json    bool
}

func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) (flagSet, error) {
	f := newFlags("status", statusSynopsis)
	var o statusOpts
	o.fleetFlags.register(f.fs)
	o.embeddedFlags.register(f.fs)
	f.fs.DurationVar(&o.timeout, "timeout", 3*time.Second, "bound of the whole check")
	f.fs.BoolVar(&o.json, "json", false, "print the status as JSON on stdout")
	if err := f.parse(args, stdout); err != nil {
		return f, err
	}
	if f.fs.NArg() > 0 {
		return f, usagef("unexpected argument %q", f.fs.Arg(0))
	}
	if err := o.fleetFlags.validate(); err != nil {
		return f, err
	}
	if err := o.embeddedFlags.onlyEmbedded(setFlags(f.fs), o.fleetFlags, getenv); err != nil {
		return f, err
	}
	if err := o.embeddedFlags.validate(); err != nil {
		return f, err
	}
	if o.timeout <= 0 {
		return f, usagef("-timeout %v: must be positive", o.timeout)
	}
	return f, runStatus(ctx, o, stdout, stderr, getenv)
}

type statusReport struct {
	Fleet   string         `json:"fleet"`
	Source  string         `json:"source"`
	Masters []masterStatus `json:"masters"`
	Groups  []groupStatus  `json:"groups"`
	Up      int            `json:"up"`
	Total   int            `json:"total"`
}

// masterStatus is one master's row. Durations are float milliseconds
// (names end in _ms); ping_ms is null for a master that did not answer,
// quarantine_ms is omitted for a master not in restart quarantine.
type masterStatus struct {
	Group     int        `json:"group"`
	Addr      string     `json:"addr"`
	Up        bool       `json:"up"`
	PingMs    *float64   `json:"ping_ms"`
	Error     string     `json:"error,omitempty"`
	Permanent bool       `json:"permanent,omitempty"` // the error is a misconfiguration (redlock.IsPermanent)
	Pool      poolStatus `json:"pool"`
	Commands  int64      `json:"commands"`
	Pipelines int64      `json:"pipelines"`
	Failures  int64      `json:"failures"`
	Downs     int64      `json:"downs"`
	// QuarantineMs is the restart quarantine left (0, omitted: none).
	QuarantineMs float64 `json:"quarantine_ms,omitempty"`
	RunID        string  `json:"run_id,omitempty"` // the server's run_id ("" when INFO is denied)
}

// poolStatus is redlock.PoolStat in the report's naming.
type poolStatus struct {
	Total         int32   `json:"total"`
	Idle          int32   `json:"idle"`
	InUse         int32   `json:"in_use"`
	Constructing  int32   `json:"constructing"`
	Max           int32   `json:"max"`
	AcquireCount  int64   `json:"acquire_count"`
	AcquireWaitMs float64 `json:"acquire_wait_ms"`
}

func toPoolStatus(p redlock.PoolStat) poolStatus {
	return poolStatus{Total: p.Total, Idle: p.Idle, InUse: p.InUse, Constructing: p.Constructing, Max: p.Max,
		AcquireCount: p.AcquireCount, AcquireWaitMs: ms(p.AcquireWait)}
}

// ms is d in float milliseconds.
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

type groupStatus struct {
	Index   int      `json:"index"`
	Masters []string `json:"masters"`
	Quorum  int      `json:"quorum"`
	Up      int      `json:"up"`
	Voting  int      `json:"voting"` // up and out of restart quarantine
	Share   float64  `json:"share"`
}

func runStatus(ctx context.Context, o statusOpts, stdout, stderr io.Writer, getenv env) error {
	fl, err := o.resolve(getenv)
	if err != nil {
		return err
	}
	var groups [][]string
	rep := statusReport{}
	if fl != nil {
		groups, rep.Source = fl.groups, fl.source
	} else {
		e, eerr := startEmbedded(o.embeddedFlags)
		if eerr != nil {
			return eerr
		}
		defer e.stop()
		groups, rep.Source = e.groups, "embedded"
		fmt.Fprintf(stderr, "redlock status: no servers given: showing a demo %s\n", e)
		if e.mini && o.nodeTimeout == 0 {
			o.nodeTimeout = miniredisNodeTimeout
		}
	}
	rep.Fleet = describe(groups)
	cfg := o.config(groups, stderr)
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	pings := c.Ping(pctx)
	stats := c.MasterStats()
	infos := c.Groups()
	up := make([]int, len(infos))
	voting := make([]int, len(infos))
	for i, p := range pings {
		m := masterStatus{Group: p.Group, Addr: p.Addr, Up: p.Err == nil}
		if p.Err != nil {
			m.Error = oneLine(p.Err.Error())
			var me *redlock.MasterError
			if errors.As(p.Err, &me) {
				m.Error = oneLine(me.Err.Error())
			}
			m.Permanent = redlock.IsPermanent(p.Err)
		} else {
			ping := ms(p.Latency)
			m.PingMs = &ping
			up[p.Group]++
			rep.Up++
		}
		if i < len(stats) {
			s := stats[i]
			m.Pool, m.Commands, m.Pipelines, m.Failures, m.Downs = toPoolStatus(s.Pool), s.Commands, s.Pipelines, s.Failures, s.Downs
			m.RunID = s.RunID
			if left := time.Until(s.QuarantinedUntil); !s.QuarantinedUntil.IsZero() && left > 0 {
				m.QuarantineMs = ms(left)
			}
		}
		if m.Up && m.QuarantineMs == 0 {
			voting[p.Group]++
		}
		rep.Masters = append(rep.Masters, m)
	}
	rep.Total = len(pings)
	for i, g := range infos {
		rep.Groups = append(rep.Groups, groupStatus{Index: i, Masters: g.Masters, Quorum: g.Quorum, Up: up[i], Voting: voting[i], Share: g.Share})
	}

	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStatus(stdout, rep)
	}
	lost, quarantined := 0, 0
	for _, g := range rep.Groups {
		switch {
		case g.Up < g.Quorum:
			lost++
		case g.Voting < g.Quorum:
			quarantined++
		}
	}
	switch {
	case lost > 0:
		return &codeError{code: exitError, err: fmt.Errorf("%d of %d masters down; %d of %d groups have no quorum: locks routed to them cannot be taken", rep.Total-rep.Up, rep.Total, lost, len(rep.Groups))}
	case quarantined > 0:
		return &codeError{code: exitError, err: fmt.Errorf("%d of %d groups have fewer masters out of restart quarantine than their quorum: new locks routed to them are refused until the quarantine ends", quarantined, len(rep.Groups))}
	case rep.Up < rep.Total:
		return &codeError{code: exitError, err: fmt.Errorf("%d of %d masters down; every group still has a quorum", rep.Total-rep.Up, rep.Total)}
	}
	return nil
}

func printStatus(w io.Writer, r statusReport) {
	fmt.Fprintf(w, "fleet: %s (%s)\n\n", r.Fleet, r.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "GROUP\tMASTER\tSTATE\tPING\tPOOL open/idle/busy/max\tACQUIRES\tCOMMANDS\tPIPELINES\tFAILURES\tDOWNS\tERROR\n")
	for _, m := range r.Masters {
		state, ping := "DOWN", "-"
		if m.Up && m.PingMs != nil {
			state, ping = "up", fmtUs(*m.PingMs*1e3)
			if m.QuarantineMs > 0 {
				state = fmt.Sprintf("QUARANTINED (%v left)", time.Duration(m.QuarantineMs*float64(time.Millisecond)).Round(time.Second))
			}
		}
		if m.Permanent {
			state = "MISCONFIGURED"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d/%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n", m.Group, m.Addr, state, ping,
			m.Pool.Total, m.Pool.Idle, m.Pool.InUse, m.Pool.Max, m.Pool.AcquireCount, m.Commands, m.Pipelines, m.Failures, m.Downs, m.Error)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "GROUP\tMASTERS\tUP\tQUORUM\tSHARE OF RESOURCES\tSTATE\n")
	for _, g := range r.Groups {
		state := "ok"
		switch {
		case g.Up < g.Quorum:
			state = "NO QUORUM"
		case g.Voting < g.Quorum:
			state = "NO QUORUM FOR LOCKS (restart quarantine)"
		case g.Up < len(g.Masters):
			state = "degraded"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f%%\t%s\n", g.Index, len(g.Masters), g.Up, g.Quorum, g.Share*100, state)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d of %d masters up\n", r.Up, r.Total)
}
