package redlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// holdLog checks exclusion among the holders of one resource, in process:
// a hold begins when Lock/RLock/Acquire returned it and ends before its
// Release is sent. A hold counts only within its validity (Until).
type holdLog struct {
	mu         sync.Mutex
	permits    int // for permits: the most that may hold at once
	active     map[*Lock]byte
	holds      map[byte]int
	maxAtOnce  map[byte]int
	violations []string
}

func newHoldLog(permits int) *holdLog {
	return &holdLog{permits: permits, active: make(map[*Lock]byte), holds: make(map[byte]int), maxAtOnce: make(map[byte]int)}
}

// begin records that l (kind 'r' reader, 'w' writer, 'p' permit) holds
// now, and any conflict with the holds still valid.
func (h *holdLog) begin(l *Lock, kind byte) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for o := range h.active {
		if !now.Before(o.Until()) {
			delete(h.active, o) // validity over: no longer counted
		}
	}
	count := map[byte]int{kind: 1}
	for _, k := range h.active {
		count[k]++
	}
	switch {
	case kind == 'w' && len(h.active) > 0:
		h.violations = append(h.violations, fmt.Sprintf("writer %s obtained while %d others hold: %v", l.Token(), len(h.active), count))
	case kind == 'r' && count['w'] > 0:
		h.violations = append(h.violations, fmt.Sprintf("reader %s obtained while a writer holds", l.Token()))
	case kind == 'p' && count['p'] > h.permits:
		h.violations = append(h.violations, fmt.Sprintf("permit %s: %d holders of %d permits", l.Token(), count['p'], h.permits))
	}
	h.active[l] = kind
	h.holds[kind]++
	h.maxAtOnce[kind] = max(h.maxAtOnce[kind], count[kind])
}

// end records that l's critical section is over (call it before Release).
func (h *holdLog) end(l *Lock) {
	h.mu.Lock()
	delete(h.active, l)
	h.mu.Unlock()
}

func (h *holdLog) check(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.violations {
		t.Errorf("VIOLATION: %s", v)
	}
}

// raw is a go-redis client on one master, for inspecting it beside the
// code under test.
func raw(t *testing.T, s *redisproc.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// serverMs is a master's clock (TIME) in unix ms.
func serverMs(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	tm, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return tm.UnixMilli()
}

// zscore is member's score in key on c, and whether it is there.
func zscore(t *testing.T, c *redis.Client, key, member string) (int64, bool) {
	t.Helper()
	s, err := c.ZScore(context.Background(), key, member).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false
	}
	if err != nil {
		t.Fatalf("ZSCORE %s %s: %v", key, member, err)
	}
	return int64(s), true
}

// onMasters counts the masters where cond holds.
func onMasters(cs []*redis.Client, cond func(c *redis.Client) bool) int {
	n := 0
	for _, c := range cs {
		if cond(c) {
			n++
		}
	}
	return n
}

// oneGroup starts one group of n masters and returns it with the config
// these tests start from: config(f) (clusterConfig or faultConfig) with
// retry strategy rs (nil: config's own).
func oneGroup(t *testing.T, n int, config func([][]*redisproc.Server) Config, rs RetryStrategy) ([][]*redisproc.Server, Config) {
	t.Helper()
	f := fleet(t, 1, n)
	cfg := config(f)
	if rs != nil {
		cfg.RetryStrategy = rs
	}
	return f, cfg
}

// oneGroupClient is oneGroup of three masters with a client of that config
// (closed at the end of the test) in place of the config.
func oneGroupClient(t *testing.T, config func([][]*redisproc.Server) Config, rs RetryStrategy) ([][]*redisproc.Server, *Client) {
	t.Helper()
	f, cfg := oneGroup(t, 3, config, rs)
	return f, newClient(t, cfg)
}

// pauseOrKill puts victim through fault, for the minority-fault subtests:
// "pause" (SIGSTOP) or "kill". It returns what resumes a paused victim (for
// a killed one, nothing), to be deferred.
func pauseOrKill(t *testing.T, fault string, victim *redisproc.Server) (resume func()) {
	t.Helper()
	switch fault {
	case "pause":
		if err := victim.Pause(); err != nil {
			t.Fatal(err)
		}
		return func() { _ = victim.Resume() }
	case "kill":
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		return func() {}
	}
	t.Fatalf("unknown fault %q", fault)
	return nil
}

func raws(t *testing.T, ss []*redisproc.Server) []*redis.Client {
	out := make([]*redis.Client, len(ss))
	for i, s := range ss {
		out[i] = raw(t, s)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestScriptedOpsTable: every scripted operation has a name and a script,
// and their numbers stay clear of the plain lock's operations.
func TestScriptedOpsTable(t *testing.T) {
	if opScripted <= opExists {
		t.Fatalf("scripted operations start at %d, inside the plain ones (up to %d)", opScripted, opExists)
	}
	if n := int(opBusyLeft-opScripted) + 1; n != len(scriptedOpNames) {
		t.Fatalf("%d scripted operations, %d names", n, len(scriptedOpNames))
	}
	seen := map[string]bool{}
	for op := opScripted; op <= opBusyLeft; op++ {
		if scriptOf(op) == nil || op.String() == "" || seen[op.String()] {
			t.Fatalf("op %d: script %v, name %q (seen %v)", op, scriptOf(op), op.String(), seen[op.String()])
		}
		seen[op.String()] = true
		acquire := op == opRLock || op == opWLock || op == opSemAcquire
		release := op == opRUnlock || op == opWUnlock || op == opSemRelease
		if op.isAcquire() != acquire || op.isRelease() != release {
			t.Fatalf("op %s: isAcquire %v isRelease %v, want %v %v", op, op.isAcquire(), op.isRelease(), acquire, release)
		}
	}
	for _, op := range []opKind{opAcquire, opRelease, opExtend, opExists} {
		if scriptOf(op) != nil {
			t.Fatalf("plain op %s has a scripted form", op)
		}
	}
}
