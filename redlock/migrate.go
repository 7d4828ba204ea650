package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Migration mode (Config.Previous). A resource whose group differs between
// the previous ring and the new one is locked on both: a client still on the
// old ring locks the old group, a client already on the new ring locks the
// new group, and a migrating client needs a majority of each — so it
// excludes both. Since any two majorities of one group intersect, two
// migrating clients exclude each other on either group.

// fanoutBoth runs q on g and, when pg is not nil, pq on pg at the same
// time (the previous group's fan-out on its own goroutine, which ends when
// that fan-out does: each master is bounded by the request's timeout).
func fanoutBoth(ctx context.Context, g *group, q request, pg *group, pq request) (r, pr result) {
	if pg == nil {
		return g.fanout(ctx, q), result{}
	}
	return fanoutTwo(ctx, g, q, pg, pq)
}

// fanoutTwo is fanoutBoth with two groups: apart, so that the results its
// goroutine shares live on the heap only when there are two.
func fanoutTwo(ctx context.Context, g *group, q request, pg *group, pq request) (r, pr result) {
	if inG, shared := sharedMasters(g, pg); shared {
		return fanoutShared(ctx, g, q, pg, pq, inG)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr = pg.fanout(ctx, pq)
	}()
	r = g.fanout(ctx, q)
	<-done
	return r, pr
}

// sharedMasters maps each master of pg to its index in g (-1 when it is
// not in g), and tells whether any is: a master kept in a ring change
// belongs to both of a moved resource's groups (one node: Client.newGroup).
func sharedMasters(g, pg *group) (inG []int, shared bool) {
	inG = make([]int, len(pg.nodes))
	for j, pn := range pg.nodes {
		inG[j] = slices.Index(g.nodes, pn)
		shared = shared || inG[j] >= 0
	}
	return inG, shared
}

// fanoutShared is fanoutTwo for groups that share masters. A shared master
// is one server with one key for the resource: it gets the command once,
// and its one answer is its vote in both groups. (Sent once per group, the
// second command would find the key the first one set — SET NX says no,
// a second compare-and-delete finds nothing — and the master would vote
// against the very lock it holds in one of the groups: a moved resource
// could rarely be locked, and its release reported ErrNotHeld.) The wait
// ends when both groups' outcomes are decided, by fanout's rules.
func fanoutShared(ctx context.Context, g *group, q request, pg *group, pq request, inG []int) (r, pr result) {
	nodes := slices.Clone(g.nodes)
	at := make([]int, len(pg.nodes)) // pg's master j is the union's master at[j]
	for j, nd := range pg.nodes {
		if at[j] = inG[j]; at[j] < 0 {
			at[j] = len(nodes)
			nodes = append(nodes, nd)
		}
	}
	u := &group{index: g.index, nodes: nodes, quorum: len(nodes)/2 + 1}
	uq := q
	uq.keepMask, uq.keepFor = 0, max(q.keepFor, pq.keepFor)
	for i := range min(len(g.nodes), 64) {
		if hasBit(q.keepMask, i) {
			uq.keepMask |= 1 << i
		}
	}
	for j, i := range at {
		if i < 64 && hasBit(pq.keepMask, j) {
			uq.keepMask |= 1 << i
		}
	}
	if uq.keepMask == 0 {
		uq.keepFor = 0
	}
	type side struct {
		res                *result
		need, noNeed, pend int
		of                 func(i int) []int // the side's masters that are union master i
	}
	r, pr = result{slots: make([]slot, len(g.nodes))}, result{slots: make([]slot, len(pg.nodes))}
	sides := [2]side{{res: &r, pend: len(g.nodes)}, {res: &pr, pend: len(pg.nodes)}}
	sides[0].need, sides[0].noNeed = q.needs(g)
	sides[1].need, sides[1].noNeed = pq.needs(pg)
	sides[0].of = func(i int) []int {
		if i < len(g.nodes) {
			return []int{i}
		}
		return nil
	}
	sides[1].of = func(i int) []int {
		var js []int
		for j, k := range at {
			if k == i {
				js = append(js, j)
			}
		}
		return js
	}
	decisive := q.decisive()
	open := func(s *side) bool {
		switch {
		case s.pend == 0, s.res.yes >= s.need, decisive && s.res.no >= s.noNeed:
			return false
		}
		return s.res.yes+s.pend >= s.need || (decisive && s.res.no+s.pend >= s.noNeed)
	}
	record := func(rp reply) {
		for k := range sides {
			s := &sides[k]
			for _, j := range s.of(rp.idx) {
				rj := rp // its error names the master already: one node in both groups
				rj.idx = j
				s.res.slots[j].reply = rj
				s.pend--
				switch {
				case rp.err != nil:
				case rp.ok:
					s.res.yes++
				default:
					s.res.no++
				}
			}
		}
	}
	f := u.getFan()
	defer f.unref()
	f.start(u, uq, time.Now().Add(q.timeout), false)
	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	for open(&sides[0]) || open(&sides[1]) {
		select {
		case rp := <-f.out:
			if rp.gen != f.gen {
				strayReplies.Add(1)
				continue
			}
			record(rp)
		case <-timer.C:
			r.fillPending(g, errTimeout)
			pr.fillPending(pg, errTimeout)
			return r, pr
		case <-ctx.Done():
			r.fillPending(g, ctx.Err())
			pr.fillPending(pg, ctx.Err())
			return r, pr
		}
	}
	for { // the answers already here, as fanout records them
		select {
		case rp := <-f.out:
			if rp.gen == f.gen {
				record(rp)
			}
		default:
			return r, pr
		}
	}
}

// verdict is one group's answer to a decisive operation.
type verdict uint8

const (
	verdictOpen verdict = iota // neither a quorum of yes nor of no
	verdictYes
	verdictNo
)

func (g *group) verdict(r *result) verdict {
	switch {
	case r.yes >= g.quorum:
		return verdictYes
	case r.no >= g.quorum:
		return verdictNo
	}
	return verdictOpen
}

// joinQuorumErrors returns the quorum error of the group that failed
// first (errors.As finds it; Busy and Unavailable are its), carrying the
// other group's votes for its message, still one line. other names the
// second group: "previous" or "new".
func joinQuorumErrors(first, second *QuorumError, other string) *QuorumError {
	first.other, first.otherName = second, other
	return first
}

// ErrRingChange is matched (errors.Is) by the error of an operation that
// migration mode (Config.Previous) does not support for a resource that
// moves between groups: Await, LockAll and DoAll, and the locks of RWMutex
// and Semaphore (RLock, Lock, Acquire, their Try and Do forms). Lock,
// TryLock, Do and DoWith (with the shared extender) lock such a resource on
// both groups; use them until every client runs the new ring alone.
var ErrRingChange = errors.New("redlock: not supported for a resource that moves in a ring change")

// movingError names the operation, the resource and its two groups.
type movingError struct {
	op, resource string
	from, to     int // group indexes (MasterStat.Group numbering)
}

func (e *movingError) Error() string {
	return fmt.Sprintf("redlock: %s %q: not supported while the resource moves in a ring change (Config.Previous: from group %d to group %d); use Lock, TryLock or Do until the change is complete",
		e.op, e.resource, e.from, e.to)
}

func (e *movingError) Is(target error) bool { return target == ErrRingChange }

// refuseMoving returns a *movingError for the first of resources that
// moves in migration mode, nil otherwise (always nil without Previous).
func (c *Client) refuseMoving(op string, resources ...string) error {
	if c.prevRing == nil {
		return nil
	}
	for _, r := range resources {
		if g, pg, _ := c.routeBoth(r); pg != nil {
			return &movingError{op: op, resource: r, from: pg.index, to: g.index}
		}
	}
	return nil
}

// RingMove is the share of all resources that a ring change moves from one
// group to another.
type RingMove struct {
	From  int     // index of the group in the old fleet
	To    int     // index of the group in the new fleet
	Share float64 // share of all resources (0..1)
}

// RingPlan describes what a ring change moves (see PlanRingChange).
type RingPlan struct {
	// Moved is the share of all resources whose group changes: the
	// resources a migrating client (Config.Previous) locks on two groups.
	Moved float64
	// Moves lists every (old group, new group) pair that resources move
	// between, largest share first.
	Moves []RingMove
	// Exact is false when the share was estimated from 2^20 hashes (the
	// two rings have different partition counts: more than 1024 groups on
	// one side); the estimate is then within about ±0.2 percentage points.
	Exact bool
}

// planSamples is the number of hashes an inexact plan is estimated from.
const planSamples = 1 << 20

// PlanRingChange tells which resources a change of the fleet from from to
// to moves, from which group to which. It is a pure function of the two
// fleets (written as Config.Previous and Config.Cluster; a single group is
// a one-element Cluster): no master is contacted. Groups are compared by
// their masters, whatever their order: a group with the same masters in
// both fleets keeps its resources unless the ring gives them to another.
// A bad fleet is a *ConfigError naming Previous[g][i] (from) or
// Cluster[g][i] (to).
func PlanRingChange(from, to [][]string) (*RingPlan, error) {
	field := func(name string) func(g, i int) string {
		return func(g, i int) string {
			if i < 0 {
				return fmt.Sprintf("%s[%d]", name, g)
			}
			return fmt.Sprintf("%s[%d][%d]", name, g, i)
		}
	}
	if len(from) == 0 {
		return nil, &ConfigError{Field: "Previous", Reason: "no groups"}
	}
	if len(to) == 0 {
		return nil, &ConfigError{Field: "Cluster", Reason: "no groups"}
	}
	oldG, err := parseGroups(from, field("Previous"), Config{})
	if err != nil {
		return nil, err
	}
	newG, err := parseGroups(to, field("Cluster"), Config{})
	if err != nil {
		return nil, err
	}
	ids := func(gs [][]address) []string {
		out := make([]string, len(gs))
		for i, g := range gs {
			out[i] = groupIdentity(g)
		}
		return out
	}
	oldIDs, newIDs := ids(oldG), ids(newG)
	return planRings(oldIDs, newIDs, newRing(oldIDs), newRing(newIDs)), nil
}

// planRings compares two rings over groups of the given identities.
func planRings(oldIDs, newIDs []string, oldRing, newRing *ring) *RingPlan {

	counts := make(map[[2]int]int)
	total := 0
	count := func(h uint64) {
		o, n := oldRing.ownerOf(h), newRing.ownerOf(h)
		if oldIDs[o] != newIDs[n] {
			counts[[2]int{o, n}]++
		}
		total++
	}
	po, pn := len(oldRing.owner), len(newRing.owner)
	plan := &RingPlan{Exact: true}
	switch {
	case po == pn || po == 1 || pn == 1: // a partition maps to one group on each side
		for p := range max(po, pn) {
			count(uint64(p))
		}
	default:
		plan.Exact = false
		var x uint64 = 0x9e3779b97f4a7c15
		for range planSamples {
			x += 0x9e3779b97f4a7c15 // splitmix64: evenly spread hashes
			z := x
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			count(z ^ (z >> 31))
		}
	}
	moved := 0
	for k, n := range counts {
		moved += n
		plan.Moves = append(plan.Moves, RingMove{From: k[0], To: k[1], Share: float64(n) / float64(total)})
	}
	plan.Moved = float64(moved) / float64(total)
	sort.Slice(plan.Moves, func(i, j int) bool {
		a, b := plan.Moves[i], plan.Moves[j]
		if a.Share != b.Share {
			return a.Share > b.Share
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	return plan
}
