package redlock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client acquires Redlock locks on a fleet of independent Redis masters. It
// is safe for concurrent use; create one per fleet and share it.
type Client struct {
	s      *settings
	groups []*group
	nodes  []*node
	ring   *ring
	// Migration mode (Config.Previous): the ring before the change and its
	// groups (a group whose masters did not change is the same *group as
	// in groups). nil without Previous.
	prevRing   *ring
	prevGroups []*group
	obs        Observer // Config.Observer; nil: no events are built
	closing    chan struct{}
	closed     atomic.Bool
	started    atomic.Bool    // New has returned: new connections claim their server (serverCheck)
	bgMu       sync.Mutex     // orders goBackground's wg.Add before Close's wg.Wait
	wg         sync.WaitGroup // every goroutine the client starts

	// fenceKey is the fence counters' key on every master (Config.Fencing).
	fenceKey string

	serversMu sync.Mutex
	servers   map[string]*node // run_id → the master that reaches that server (claimServer)
	hub       hub              // waiters and release notifications (await.go, notify.go)
	ext       extender         // the shared automatic extender (extender.go)
}

// New validates cfg, opens one connection to every master in parallel and
// returns a Client. Masters that cannot be reached are marked down and
// retried in the background every ReconnectInterval: New succeeds with
// masters down. A bad Config is a *ConfigError naming the field and value.
func New(cfg Config) (*Client, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Client{s: s, obs: s.Observer, fenceKey: s.KeyPrefix + FenceCounterKey, closing: make(chan struct{}), servers: make(map[string]*node)}
	c.hub.c = c
	c.ext.c = c
	// The rings are pure functions of the groups' identities: build them
	// (CPU: ≈ 0.5–1.5 s at 1000 groups, see bench/RESULTS.md) while the
	// nodes are created and dialed.
	ids := make([]string, len(s.groups))
	for gi, addrs := range s.groups {
		ids[gi] = groupIdentity(addrs)
	}
	var pids []string
	for _, addrs := range s.prevGroups {
		pids = append(pids, groupIdentity(addrs))
	}
	ringsDone := make(chan struct{})
	go func() {
		defer close(ringsDone)
		c.ring = newRing(ids)
		if len(pids) > 0 {
			c.prevRing = newRing(pids)
		}
	}()
	fail := func(err error) (*Client, error) {
		<-ringsDone
		return nil, err
	}
	byID := make(map[string]*node) // a master in both rings is one node
	for gi, addrs := range s.groups {
		g, gerr := c.newGroup(gi, addrs, byID)
		if gerr != nil {
			return fail(gerr)
		}
		c.groups = append(c.groups, g)
	}
	if len(s.prevGroups) > 0 {
		sameID := make(map[string]*group, len(c.groups))
		for _, g := range c.groups {
			sameID[g.id] = g
		}
		for pi, addrs := range s.prevGroups {
			g := sameID[pids[pi]]
			if g == nil {
				// Numbered after the new fleet's groups (Event.Group, MasterStat.Group).
				if g, err = c.newGroup(len(s.groups)+pi, addrs, byID); err != nil {
					return fail(err)
				}
			}
			c.prevGroups = append(c.prevGroups, g)
		}
	}

	// First connection to every master, in parallel, bounded by DialTimeout.
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := nd.connect(); err != nil {
				errs[i] = nd.masterErr(err)
				nd.fail(err)
			}
		}()
	}
	wg.Wait()
	<-ringsDone
	// One server, one vote: two masters that reached one server (one
	// run_id) under two spellings the text could not unify (DNS aliases)
	// are refused, naming both.
	for _, nd := range c.nodes {
		if nd.down.Load() {
			continue
		}
		if err := c.claimServer(nd, false); err != nil {
			_ = c.Close()
			return fail(err)
		}
	}
	if s.StrictStart {
		if err := c.strictStart(errs); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	c.started.Store(true)

	c.wg.Add(1)
	go c.healthLoop()
	return c, nil
}

// claimServer records that n reaches the server whose run_id it read at
// connect and, with markUp, marks n up — unless another master of the fleet that is up
// reaches that same server: then n stays down and the error names both
// spellings. Claim and mark-up happen under one lock, so two masters that
// reach one server are never up together: one server casts one vote,
// however it is spelled (names that resolve alike, proxies). A master whose
// server is unknown (INFO denied) claims nothing.
func (c *Client) claimServer(n *node, markUp bool) error {
	si := n.info.Load()
	c.serversMu.Lock()
	defer c.serversMu.Unlock()
	if si != nil {
		other := c.servers[si.runID]
		if other != nil && other != n && !other.down.Load() {
			return &ConfigError{Field: n.addr.field, Value: fmt.Sprintf("%q", n.addr.redacted),
				Reason: fmt.Sprintf("same server as %s %q (run_id %s): one server must not cast two votes", other.addr.field, other.addr.redacted, si.runID)}
		}
		if other != nil && other != n {
			other.claimed = "" // it is down: this master reaches the server now
		}
	}
	if n.claimed != "" && c.servers[n.claimed] == n {
		delete(c.servers, n.claimed)
	}
	n.claimed = ""
	if si != nil {
		c.servers[si.runID] = n
		n.claimed = si.runID
	}
	if markUp {
		n.down.Store(false)
	}
	return nil
}

// strictStart fails when a master's first connection failed permanently or
// a group has no quorum of masters reachable. errs is in c.nodes order.
func (c *Client) strictStart(errs []error) error {
	errOf := make(map[*node]error, len(c.nodes))
	var failed []error
	for i, nd := range c.nodes { // Config order, each master once
		errOf[nd] = errs[i]
		if errs[i] != nil {
			failed = append(failed, errs[i])
		}
	}
	why := ""
	for _, err := range failed {
		if IsPermanent(err) {
			why = "a master is misconfigured"
			break
		}
	}
	// Every group asked (in migration mode, the previous ring's too).
	groups := c.groups
	for _, g := range c.prevGroups {
		if g.index >= len(c.groups) {
			groups = append(groups[:len(groups):len(groups)], g)
		}
	}
	for _, g := range groups {
		if why != "" {
			break
		}
		up := 0
		for _, nd := range g.nodes {
			if errOf[nd] == nil {
				up++
			}
		}
		if up < g.quorum {
			why = fmt.Sprintf("group %d has %d of %d masters reachable, %d needed", g.index, up, len(g.nodes), g.quorum)
		}
	}
	if why == "" {
		return nil
	}
	return &StartError{Reason: why, Masters: failed}
}

// StartError is the error of New with Config.StrictStart when the fleet is
// not usable at start: it names every master whose first connection failed.
// IsPermanent(err) reports whether one of them is misconfigured.
type StartError struct {
	Reason  string  // e.g. "a master is misconfigured" or "group 0 has 1 of 3 masters reachable, 2 needed"
	Masters []error // one *MasterError per master that failed, in Config order
}

func (e *StartError) Error() string {
	var b strings.Builder
	b.WriteString("redlock: start: ")
	b.WriteString(e.Reason)
	for i, err := range e.Masters {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		var me *MasterError
		if errors.As(err, &me) {
			b.WriteString(me.Addr + ": " + oneLine(me.Err.Error()))
			if me.permanent {
				b.WriteString(" (permanent)")
			}
		} else {
			b.WriteString(oneLine(err.Error()))
		}
	}
	return b.String()
}

// Unwrap returns the masters' errors (errors.As finds each *MasterError).
func (e *StartError) Unwrap() []error { return e.Masters }

// newGroup creates group gi over addrs, reusing the nodes of masters
// already known (by identity) and recording new ones in byID and c.nodes.
func (c *Client) newGroup(gi int, addrs []address, byID map[string]*node) (*group, error) {
	g := &group{index: gi, id: groupIdentity(addrs), quorum: len(addrs)/2 + 1}
	for _, a := range addrs {
		nd := byID[a.identity()]
		if nd == nil {
			var err error
			if nd, err = newNode(c, a, gi); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("redlock: master %s: %w", a.redacted, err)
			}
			byID[a.identity()] = nd
			c.nodes = append(c.nodes, nd)
		}
		g.nodes = append(g.nodes, nd)
		g.addrs = append(g.addrs, a.raw)
	}
	return g, nil
}

func (c *Client) healthLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.s.HealthCheckPeriod)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
			for _, nd := range c.nodes {
				select {
				case <-c.closing:
					return
				default:
				}
				nd.healthCheck()
			}
		}
	}
}

// Close stops every background goroutine (writers, health checks,
// reconnects) and closes every connection. Locks still held are not released:
// they expire with their TTL, as do the keys of releases still queued or kept
// for masters that missed them. Operations after Close return ErrClosed.
// Close is idempotent.
func (c *Client) Close() error {
	c.bgMu.Lock()
	already := c.closed.Swap(true)
	c.bgMu.Unlock()
	if already {
		return nil
	}
	close(c.closing)
	c.hub.close()
	c.wg.Wait()
	for _, nd := range c.nodes {
		nd.pool.close()
	}
	return nil
}

// goBackground runs fn in a goroutine that Close waits for, unless the client
// is closed already (then fn does not run).
func (c *Client) goBackground(fn func()) {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed.Load() {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
}

// Route returns the masters of the group that resource is routed to,
// exactly as written in Config.
func (c *Client) Route(resource string) []string {
	g, _ := c.route(resource)
	return append([]string(nil), g.addrs...)
}

func (c *Client) route(resource string) (*group, uint64) {
	g, h := c.ring.locate(resource)
	return c.groups[g], h
}

// routeBoth is route, plus, in migration mode, the resource's group in the
// previous ring when it differs from g (nil otherwise: an unmoved resource
// costs one more slice index).
func (c *Client) routeBoth(resource string) (g, prev *group, h uint64) {
	g, h = c.route(resource)
	if c.prevRing != nil {
		if p := c.prevGroups[c.prevRing.ownerOf(h)]; p != g {
			prev = p
		}
	}
	return g, prev, h
}

// checkArgs validates a resource and a TTL.
func (c *Client) checkArgs(resource string, ttl time.Duration) error {
	if err := c.checkResource(resource); err != nil {
		return err
	}
	if ttl <= 0 {
		return &InputError{Arg: "ttl", Reason: fmt.Sprintf("%v is not positive", ttl)}
	}
	if least := minTTL(c.s.DriftFactor); ttl < least {
		return &InputError{Arg: "ttl", Reason: fmt.Sprintf("%v is consumed by the clock-drift allowance (ttl × %g + 2ms); use at least %v", ttl, c.s.DriftFactor, least)}
	}
	if ttl > maxTTL {
		return &InputError{Arg: "ttl", Reason: fmt.Sprintf("%v is too long", ttl)}
	}
	return nil
}

func (c *Client) checkResource(resource string) error {
	if resource == "" {
		return &InputError{Arg: "resource", Reason: "empty"}
	}
	if len(resource) > c.s.MaxResourceLen {
		return &InputError{Arg: "resource", Reason: fmt.Sprintf("%d bytes, longer than MaxResourceLen (%d)", len(resource), c.s.MaxResourceLen)}
	}
	if resource == FenceCounterKey {
		return &InputError{Arg: "resource", Reason: fmt.Sprintf("%q is reserved for the fence counter (FenceCounterKey)", resource)}
	}
	return nil
}

// ttlMillis rounds ttl up to Redis's millisecond resolution.
func ttlMillis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

func newToken() string {
	var b [16]byte // 128 bits
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TryLock makes one attempt to acquire resource for ttl. It returns
// ErrNotObtained (joined with a *QuorumError) when the resource is busy or no
// quorum answered; the attempt's keys are then released on every master.
func (c *Client) TryLock(ctx context.Context, resource string, ttl time.Duration) (*Lock, error) {
	if c.obs == nil {
		return c.tryLock(ctx, resource, ttl, nil)
	}
	return c.observeAcquire(ctx, resource, ttl, c.tryLock)
}

func (c *Client) tryLock(ctx context.Context, resource string, ttl time.Duration, tr *trace) (*Lock, error) {
	if err := c.precheck(ctx, resource, ttl); err != nil {
		return nil, err
	}
	l, err := c.attempt(ctx, resource, ttl, tr)
	if err != nil {
		return nil, c.lastAttempt(ctx, resource, err)
	}
	return l, nil
}

// observeAcquire runs an acquisition with a trace and reports it.
func (c *Client) observeAcquire(ctx context.Context, resource string, ttl time.Duration,
	fn func(context.Context, string, time.Duration, *trace) (*Lock, error)) (*Lock, error) {
	tr := &trace{}
	start := time.Now()
	l, err := fn(ctx, resource, ttl, tr)
	ev := tr.lockEvent(ctx, EventAcquire, c.groupOf(resource), resource, err)
	ev.Wait = time.Since(start)
	c.observe(ev)
	return l, err
}

// groupOf is the group resource is routed to (group 0 for a resource too
// bad to route, which only an event needs).
func (c *Client) groupOf(resource string) *group {
	if resource == "" {
		return c.groups[0]
	}
	g, _ := c.route(resource)
	return g
}

// precheck refuses bad arguments, a closed client and an ended context
// before any command is sent.
func (c *Client) precheck(ctx context.Context, resource string, ttl time.Duration) error {
	if err := c.checkArgs(resource, ttl); err != nil {
		return err
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return &opError{op: opAcquire.String(), resource: resource, sentinel: ErrNotObtained, cause: err}
	}
	return nil
}

// Lock acquires resource for ttl in 1 + MaxRetry attempts at most, with a
// jittered RetryInterval (or what Config.RetryStrategy says) as the longest
// wait between two. ctx bounds the whole call: when it ends, the error
// matches both ErrNotObtained and ctx.Err().
//
// Once an attempt found the resource busy, Lock listens for the holder's
// release (as Await does; wait.go): the next attempt is made when the
// release is announced, when the key expires on the masters, or when the
// delay has passed, whichever comes first. Each attempt counts against the
// strategy. An uncontended Lock never subscribes.
func (c *Client) Lock(ctx context.Context, resource string, ttl time.Duration) (*Lock, error) {
	if c.obs == nil {
		return c.lock(ctx, resource, ttl, nil)
	}
	return c.observeAcquire(ctx, resource, ttl, c.lock)
}

func (c *Client) lock(ctx context.Context, resource string, ttl time.Duration, tr *trace) (*Lock, error) {
	if err := c.precheck(ctx, resource, ttl); err != nil {
		return nil, err
	}
	l, err := c.attempt(ctx, resource, ttl, tr)
	if err == nil {
		return l, nil // uncontended: nothing spent on waiting
	}
	return c.waitLock(ctx, resource, ttl, tr, err)
}

// waitLock is Lock after a first attempt that failed with err.
func (c *Client) waitLock(ctx context.Context, resource string, ttl time.Duration, tr *trace, err error) (*Lock, error) {
	var l *Lock
	a := c.plainAcquisition(ctx, resource, ttl, tr, &l, err)
	a.strategy = c.s.RetryStrategy
	if err := c.acquireLoop(ctx, a); err != nil {
		return nil, err
	}
	return l, nil
}

// attempt is one Redlock acquisition with a fresh token.
func (c *Client) attempt(ctx context.Context, resource string, ttl time.Duration, tr *trace) (*Lock, error) {
	g, pg, h := c.routeBoth(resource)
	key := c.s.KeyPrefix + resource
	token := newToken()
	ms := ttlMillis(ttl)
	tr.begin()
	start := time.Now() // monotonic
	q := request{op: opAcquire, key: key, token: token, ttlMs: ms, hash: h, timeout: c.s.NodeTimeout}
	if c.s.Fencing {
		q.op, q.fenceKey, q.fenceSlot = opAcquireFence, c.fenceKey, fenceSlot(h)
	}
	r, pr := fanoutBoth(ctx, g, q, pg, q)
	if tr != nil {
		tr.dur = time.Since(start)
		tr.record(g, &r)
		if pg != nil {
			tr.record(pg, &pr)
		}
	}
	until := validUntil(start, ttl, c.s.DriftFactor)
	quorum := r.yes >= g.quorum && (pg == nil || pr.yes >= pg.quorum)
	var fenceErr error
	if quorum && time.Now().Before(until) {
		var fence int64
		if c.s.Fencing {
			fence, fenceErr = c.settleFence(ctx, opAcquire, g, pg, h, nil, resource, r, pr)
		}
		if fenceErr == nil && time.Now().Before(until) {
			l := &Lock{c: c, g: g, hash: h, resource: resource, key: key, token: token, keyTTL: ttl, mayHold: r.mayHold(),
				obtained: start, until: until, fence: fence}
			if pg != nil {
				l.prev, l.prevMayHold = pg, pr.mayHold()
			}
			return l, nil
		}
	}
	g.releaseDetached(request{op: opRelease, key: key, token: token, hash: h, timeout: c.s.ReleaseTimeout,
		keepMask: r.mayHold(), keepFor: keyLife(ttl, c.s.DriftFactor)})
	if pg != nil {
		pg.releaseDetached(request{op: opRelease, key: key, token: token, hash: h, timeout: c.s.ReleaseTimeout,
			keepMask: pr.mayHold(), keepFor: keyLife(ttl, c.s.DriftFactor)})
	}
	if fenceErr != nil {
		return nil, fenceErr
	}
	qe := g.quorumError(opAcquire, resource, r)
	if pg != nil {
		pqe := pg.quorumError(opAcquire, resource, pr)
		if r.yes >= g.quorum { // the previous group refused: its votes first
			qe = joinQuorumErrors(pqe, qe, "new")
		} else {
			qe = joinQuorumErrors(qe, pqe, "previous")
		}
	}
	qe.sentinel = ErrNotObtained
	if quorum {
		qe.ValidityRanOut, qe.Took = true, time.Since(start)
	}
	qe.cause = ctx.Err()
	return nil, qe
}

// lastAttempt vets the error of the last failed attempt of a TryLock or
// Lock. SET NX answers "no" for a key of any type: before the resource is
// called busy, one TYPE to its masters makes sure no hash or list sits at
// the lock's key — that is an error to report (a *QuorumError naming the
// masters, not ErrNotObtained), not a lock to wait for.
func (c *Client) lastAttempt(ctx context.Context, resource string, err error) error {
	var qe *QuorumError
	if ctx.Err() != nil || !errors.As(err, &qe) || qe.No() == 0 {
		return err
	}
	g, h := c.route(resource)
	r := g.fanout(ctx, request{op: opExists, key: c.s.KeyPrefix + resource, hash: h, timeout: c.s.NodeTimeout})
	for _, sl := range r.slots {
		var wt wrongTypeError
		if errors.As(sl.reply.err, &wt) {
			qe := g.quorumError(opAcquire, resource, r)
			qe.why = "a key of another type is at its name"
			return qe
		}
	}
	return err
}

// IsLocked reports whether a majority of the resource's group has its key
// (held by anyone). It returns a *QuorumError when neither a majority says
// yes nor a majority says no.
func (c *Client) IsLocked(ctx context.Context, resource string) (bool, error) {
	if err := c.checkResource(resource); err != nil {
		return false, err
	}
	if c.closed.Load() {
		return false, ErrClosed
	}
	g, pg, h := c.routeBoth(resource)
	q := request{op: opExists, key: c.s.KeyPrefix + resource, hash: h, timeout: c.s.NodeTimeout}
	r, pr := fanoutBoth(ctx, g, q, pg, q)
	// In migration mode a moved resource is locked when either group has
	// it (an old-ring holder has only the old group, a new-ring holder only
	// the new one), and free when both say no.
	v := g.verdict(&r)
	if pg != nil {
		switch pv := pg.verdict(&pr); {
		case v == verdictYes || pv == verdictYes:
			return true, nil
		case v == verdictNo && pv == verdictNo:
			return false, nil
		}
		qe := joinQuorumErrors(g.quorumError(opExists, resource, r), pg.quorumError(opExists, resource, pr), "previous")
		qe.cause = ctx.Err()
		return false, qe
	}
	switch v {
	case verdictYes:
		return true, nil
	case verdictNo:
		return false, nil
	}
	qe := g.quorumError(opExists, resource, r)
	qe.cause = ctx.Err()
	return false, qe
}

// MasterStats returns a snapshot of every master: health, counters and
// connection-pool statistics, in Config order.
func (c *Client) MasterStats() []MasterStat {
	out := make([]MasterStat, 0, len(c.nodes))
	for _, nd := range c.nodes { // Config order: Cluster's, then masters only in Previous
		out = append(out, nd.stat(nd.group))
	}
	return out
}

// GroupInfo describes one quorum group.
type GroupInfo struct {
	Masters []string // as written in Config, passwords redacted
	Quorum  int      // votes needed
	Share   float64  // the share of the ring (of all resources) routed to it
}

// Groups describes the quorum groups in Config order.
func (c *Client) Groups() []GroupInfo {
	counts := make([]int, len(c.groups))
	for _, o := range c.ring.owner {
		counts[o]++
	}
	out := make([]GroupInfo, len(c.groups))
	for i, g := range c.groups {
		out[i] = GroupInfo{Masters: redactAll(g.addrs), Quorum: g.quorum, Share: float64(counts[i]) / float64(len(c.ring.owner))}
	}
	return out
}

// PingResult is one master's answer to Ping.
type PingResult struct {
	Addr    string // password redacted
	Group   int
	Latency time.Duration
	Err     error
}

// Ping sends PING to every master in parallel (up or down, bypassing the
// down state) and reports each one's round trip (dialing excluded). A
// master that fails has a *MasterError; IsPermanent(Err) tells a
// misconfiguration (wrong password, DB index out of range, TLS refused)
// from an outage. To fail fast at start, set Config.StrictStart, or check
// the Ping of a new client:
//
//	for _, p := range client.Ping(ctx) {
//		if redlock.IsPermanent(p.Err) {
//			return fmt.Errorf("fix the configuration: %w", p.Err)
//		}
//	}
func (c *Client) Ping(ctx context.Context) []PingResult {
	out := make([]PingResult, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, c.s.DialTimeout+c.s.NodeTimeout)
			defer cancel()
			rtt, err := nd.pool.ping(pctx)
			out[i] = PingResult{Addr: nd.addr.redacted, Group: nd.group, Latency: rtt}
			if err != nil {
				out[i].Err = nd.masterErr(err)
			}
		}()
	}
	wg.Wait()
	return out
}
