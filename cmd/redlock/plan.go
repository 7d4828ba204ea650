package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/quorumlock/quorumlock/redlock"
)

const planSynopsis = `Usage: redlock plan -from FLEET -to FLEET [-json]

Tells what a change of the fleet moves: the share of all resources whose
quorum group changes, and from which group to which. During the migration
(clients with Cluster = the new fleet and Previous = the old one) those
resources are locked on both groups; the others cost nothing extra. No master
is contacted: the ring is a pure function of the groups' masters.

A FLEET is written like -cluster: masters comma-separated, groups separated
by ';' (one group: no ';').

Examples:
  redlock plan -from "a:1,b:1,c:1;d:1,e:1,f:1" -to "a:1,b:1,c:1;d:1,e:1,f:1;g:1,h:1,i:1"
  redlock plan -from "$OLD_CLUSTER" -to "$NEW_CLUSTER" -json`

type planOpts struct {
	from, to string
	json     bool
}

func planCmd(_ context.Context, args []string, stdout, _ io.Writer) (flagSet, error) {
	f := newFlags("plan", planSynopsis)
	var o planOpts
	f.fs.StringVar(&o.from, "from", "", "the fleet before the change (required)")
	f.fs.StringVar(&o.to, "to", "", "the fleet after the change (required)")
	f.fs.BoolVar(&o.json, "json", false, "print the plan as JSON on stdout")
	if err := f.parse(args, stdout); err != nil {
		return f, err
	}
	if f.fs.NArg() > 0 {
		return f, usagef("unexpected argument %q", f.fs.Arg(0))
	}
	from, err := parseFleet("-from", o.from)
	if err != nil {
		return f, err
	}
	to, err := parseFleet("-to", o.to)
	if err != nil {
		return f, err
	}
	plan, err := redlock.PlanRingChange(from, to)
	if err != nil {
		var ce *redlock.ConfigError
		if errors.As(err, &ce) { // name the flag, not the Config field
			where := strings.NewReplacer("Previous", "-from", "Cluster", "-to").Replace(ce.Field)
			return f, usagef("%s %s: %s", where, ce.Value, ce.Reason)
		}
		return f, err
	}
	return f, printPlan(stdout, o.json, from, to, plan)
}

// parseFleet reads "a,b,c;d,e,f".
func parseFleet(flagName, s string) ([][]string, error) {
	var groups [][]string
	for _, part := range strings.Split(s, ";") {
		if g := splitList(part, ","); len(g) > 0 {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return nil, usagef("%s: no master in %q", flagName, s)
	}
	return groups, nil
}

type planReport struct {
	FromGroups int        `json:"from_groups"`
	ToGroups   int        `json:"to_groups"`
	Moved      float64    `json:"moved"`
	Exact      bool       `json:"exact"`
	Moves      []planMove `json:"moves"`
}

type planMove struct {
	From        int      `json:"from"`
	To          int      `json:"to"`
	Share       float64  `json:"share"`
	FromMasters []string `json:"from_masters"`
	ToMasters   []string `json:"to_masters"`
}

func printPlan(w io.Writer, asJSON bool, from, to [][]string, p *redlock.RingPlan) error {
	rep := planReport{FromGroups: len(from), ToGroups: len(to), Moved: p.Moved, Exact: p.Exact, Moves: []planMove{}}
	for _, m := range p.Moves {
		rep.Moves = append(rep.Moves, planMove{From: m.From, To: m.To, Share: m.Share,
			FromMasters: redactAll(from[m.From]), ToMasters: redactAll(to[m.To])})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	approx := ""
	if !p.Exact {
		approx = "≈ "
	}
	fmt.Fprintf(w, "ring change: %d groups → %d groups\n", len(from), len(to))
	fmt.Fprintf(w, "moved: %s%.2f%% of resources (locked on both groups while clients run with Previous)\n", approx, 100*p.Moved)
	if len(p.Moves) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tSHARE\tFROM MASTERS\tTO MASTERS")
	for _, m := range rep.Moves {
		fmt.Fprintf(tw, "%d\t%d\t%s%.2f%%\t%s\t%s\n", m.From, m.To, approx, 100*m.Share,
			strings.Join(m.FromMasters, ","), strings.Join(m.ToMasters, ","))
	}
	return tw.Flush()
}

// redactAll hides passwords in redis:// addresses.
func redactAll(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = redactURL(a)
	}
	return out
}

func redactURL(a string) string {
	scheme, rest, ok := strings.Cut(a, "://")
	if !ok {
		return a
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return a
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return a
}
