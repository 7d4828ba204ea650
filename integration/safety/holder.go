package safety

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quorumlock/quorumlock/redlock"
)

// ClientSpec is the redlock client every holder of a scenario uses, in a
// form that crosses process boundaries (JSON; durations in nanoseconds).
type ClientSpec struct {
	Cluster           [][]string    `json:"cluster"`
	NodeTimeout       time.Duration `json:"node_timeout"`
	ReconnectInterval time.Duration `json:"reconnect_interval"`
	DialTimeout       time.Duration `json:"dial_timeout"`
	ReleaseTimeout    time.Duration `json:"release_timeout"`
	// Fencing: every lock carries a fence and every register access
	// carries the holder's fence (the register refuses lower ones).
	Fencing bool `json:"fencing"`
	// RestartQuarantine is redlock.Config.RestartQuarantine.
	RestartQuarantine time.Duration `json:"restart_quarantine"`
	// Logger receives the client's master down/up events; nil: discarded.
	// It does not cross to child processes.
	Logger *slog.Logger `json:"-"`
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Config is the redlock.Config of the spec: Servers for one group, Cluster
// for several; logging off (masters go down on purpose).
func (s ClientSpec) Config() redlock.Config {
	cfg := redlock.Config{
		NodeTimeout:       s.NodeTimeout,
		ReconnectInterval: s.ReconnectInterval,
		DialTimeout:       s.DialTimeout,
		ReleaseTimeout:    s.ReleaseTimeout,
		Logger:            s.Logger,
		Fencing:           s.Fencing,
		RestartQuarantine: s.RestartQuarantine,
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if len(s.Cluster) == 1 {
		cfg.Servers = s.Cluster[0]
	} else {
		cfg.Cluster = s.Cluster
	}
	return cfg
}

// Register is the shared state the lock guards: one integer per resource on
// a Redis server outside the fleet, read and written with plain GET and SET
// (no atomicity of its own: only the lock keeps updates from being lost).
type Register struct{ c *redis.Client }

// NewRegister connects to the register server at addr ("host:port").
func NewRegister(addr string, poolSize int) *Register {
	return &Register{c: redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1, // a failed write is reported as unknown, never retried blindly
		PoolSize:              max(poolSize, 1),
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	})}
}

func registerKey(resource string) string { return "safety:register:" + resource }

func fenceKey(resource string) string { return "safety:fence:" + resource }

// readFenceKey holds the highest fence a reader (of an RWMutex) used.
func readFenceKey(resource string) string { return "safety:readfence:" + resource }

// The fenced register: an access (read or write) of a plain lock's holder
// or an RWMutex writer with a fence lower than the highest fence the
// register has seen for that resource — readers' included — is refused
// (-1); otherwise the fence becomes the highest seen. A read records the
// fence too: a holder that read the register and then stalled cannot write
// back over the section of a later holder that already read it. A reader's
// read (fencedRead) is refused only below the highest fence of the others
// (readers share: their fences are in no order among themselves) and
// raises the highest reader fence, so a stale writer cannot write under a
// live reader. This is the rule redlock's Lock.Fence documents.
var (
	fencedGet = redis.NewScript(`local f = math.max(tonumber(redis.call("get", KEYS[2]) or "0"), tonumber(redis.call("get", KEYS[3]) or "0"))
if tonumber(ARGV[1]) < f then return -1 end
redis.call("set", KEYS[2], ARGV[1])
return tonumber(redis.call("get", KEYS[1]) or "0")`)
	fencedSet = redis.NewScript(`local f = math.max(tonumber(redis.call("get", KEYS[2]) or "0"), tonumber(redis.call("get", KEYS[3]) or "0"))
if tonumber(ARGV[2]) < f then return -1 end
redis.call("set", KEYS[2], ARGV[2])
redis.call("set", KEYS[1], ARGV[1])
return 1`)
	fencedRead = redis.NewScript(`if tonumber(ARGV[1]) < tonumber(redis.call("get", KEYS[2]) or "0") then return -1 end
if tonumber(ARGV[1]) > tonumber(redis.call("get", KEYS[3]) or "0") then redis.call("set", KEYS[3], ARGV[1]) end
return tonumber(redis.call("get", KEYS[1]) or "0")`)
)

// errRefused is the fenced register's refusal of a stale fence.
var errRefused = errors.New("refused: the fence is below the highest the register has seen")

// fencedKeys are the keys of the fenced register scripts.
func fencedKeys(resource string) []string {
	return []string{registerKey(resource), fenceKey(resource), readFenceKey(resource)}
}

// GetFenced reads the register of resource with fence (errRefused when the
// register has seen a higher fence).
func (r *Register) GetFenced(ctx context.Context, resource string, fence int64) (int64, error) {
	return refusedBelow(fencedGet.Run(ctx, r.c, fencedKeys(resource), fence).Int64())
}

// ReadFenced is a reader's read of the register of resource with fence
// (errRefused when a writer used a higher fence).
func (r *Register) ReadFenced(ctx context.Context, resource string, fence int64) (int64, error) {
	return refusedBelow(fencedRead.Run(ctx, r.c, fencedKeys(resource), fence).Int64())
}

// SetFenced writes the register of resource with fence (errRefused when the
// register has seen a higher fence).
func (r *Register) SetFenced(ctx context.Context, resource string, v, fence int64) error {
	_, err := refusedBelow(fencedSet.Run(ctx, r.c, fencedKeys(resource), v, fence).Int64())
	return err
}

// refusedBelow turns a fenced script's -1 into errRefused.
func refusedBelow(v int64, err error) (int64, error) {
	if err == nil && v < 0 {
		return 0, errRefused
	}
	return v, err
}

// Get reads the register of resource (0 when unset).
func (r *Register) Get(ctx context.Context, resource string) (int64, error) {
	v, err := r.c.Get(ctx, registerKey(resource)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// Set writes the register of resource.
func (r *Register) Set(ctx context.Context, resource string, v int64) error {
	return r.c.Set(ctx, registerKey(resource), strconv.FormatInt(v, 10), 0).Err()
}

// Reset deletes the registers of resources.
func (r *Register) Reset(ctx context.Context, resources []string) error {
	keys := make([]string, 0, 3*len(resources))
	for _, res := range resources {
		keys = append(keys, fencedKeys(res)...)
	}
	return r.c.Del(ctx, keys...).Err()
}

// Finals reads the registers of resources.
func (r *Register) Finals(ctx context.Context, resources []string) (map[string]int64, error) {
	out := make(map[string]int64, len(resources))
	for _, res := range resources {
		v, err := r.Get(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("safety: read the register of %q: %w", res, err)
		}
		out[res] = v
	}
	return out, nil
}

// Close closes the connections.
func (r *Register) Close() error { return r.c.Close() }

// HolderSpec is one holder's loop. Begin and Until are wall-clock times so
// that holders in several processes run in the same window.
type HolderSpec struct {
	Name      string        `json:"name"`
	Resources []string      `json:"resources"`
	TTL       time.Duration `json:"ttl"`
	Begin     time.Time     `json:"begin"`
	Until     time.Time     `json:"until"`
	MaxOps    int           `json:"max_ops"`   // bound on attempts
	MaxHold   time.Duration `json:"max_hold"`  // sleep between GET and SET: uniform in [0, MaxHold]
	MaxPause  time.Duration `json:"max_pause"` // sleep between attempts: uniform in [MaxPause/4, MaxPause]
	// Margin is the validity that must be left before the register write;
	// with less, the write is skipped (a careful holder does not write once
	// its lock may be gone).
	Margin time.Duration `json:"margin"`
	// Mode is what the holder takes: "" a plain lock (TryLock); ModeRW a
	// Client.RWMutex — a writer (Lock, waiting at most TTL/2, then the
	// read-modify-write) one attempt in three, otherwise a reader (TryRLock,
	// then two reads of the register that must agree); ModeSemaphore a permit of a
	// Client.Semaphore with Permits permits (TryAcquire, then a sleep: k
	// holders at once cannot share a read-modify-write).
	Mode    string `json:"mode,omitempty"`
	Permits int    `json:"permits,omitempty"`
	// StallEvery > 0 makes every StallEvery-th hold a holder paused past its
	// validity (a GC pause, a stopped VM): after its read it sleeps until
	// TTL/2 after Until, then writes anyway (no margin check). Only a fenced
	// register protects itself from such a holder.
	StallEvery int `json:"stall_every"`
}

// Holder modes (HolderSpec.Mode).
const (
	ModeRW        = "rw"
	ModeSemaphore = "sem"
)

// RunHolder runs one holder until Until, MaxOps attempts, or ctx ends,
// passing every attempt to emit.
func RunHolder(ctx context.Context, c *redlock.Client, reg *Register, s HolderSpec, emit func(Record)) {
	if d := time.Until(s.Begin); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
	}
	holds := 0
	for op := 0; op < s.MaxOps && ctx.Err() == nil && time.Now().Before(s.Until); op++ {
		res := s.Resources[rand.IntN(len(s.Resources))]
		stall := s.StallEvery > 0 && (holds+1)%s.StallEvery == 0
		rec := attempt(ctx, c, reg, s, res, stall)
		if rec.Got {
			holds++
		}
		emit(rec)
		if s.MaxPause > 0 {
			time.Sleep(s.MaxPause/4 + rand.N(s.MaxPause-s.MaxPause/4+1))
		}
	}
}

func attempt(ctx context.Context, c *redlock.Client, reg *Register, s HolderSpec, res string, stall bool) Record {
	rec := Record{Holder: s.Name, Resource: res, Attempt: time.Now().UnixNano()}
	var l *redlock.Lock
	var err error
	switch s.Mode {
	case ModeRW:
		if rand.IntN(3) == 0 {
			// A writer waits (Lock, for at most half a TTL): its waiting
			// mark holds new readers back until the current ones leave.
			rec.Kind = KindWriter
			wctx, cancel := context.WithTimeout(ctx, s.TTL/2)
			l, err = c.RWMutex(res).Lock(wctx, s.TTL)
			cancel()
		} else {
			rec.Kind = KindReader
			l, err = c.RWMutex(res).TryRLock(ctx, s.TTL)
		}
	case ModeSemaphore:
		rec.Kind, rec.Permits = KindPermit, s.Permits
		var sem *redlock.Semaphore
		if sem, err = c.Semaphore(res, s.Permits); err == nil {
			l, err = sem.TryAcquire(ctx, s.TTL)
		}
	default:
		l, err = c.TryLock(ctx, res, s.TTL)
	}
	if err != nil {
		rec.Err = err.Error()
		rec.Unavailable = unavailable(err)
		return rec
	}
	rec.Start = time.Now().UnixNano()
	rec.Got, rec.Token, rec.Until, rec.Fence = true, l.Token(), l.Until().UnixNano(), l.Fence()
	rec.Write = WriteSkipped
	// A permit holder only holds: its fence guards nothing here.
	fenced := l.Fence() > 0 && rec.Kind != KindPermit
	get := func(ctx context.Context) (int64, error) {
		switch {
		case fenced && rec.Kind == KindReader:
			return reg.ReadFenced(ctx, res, l.Fence())
		case fenced:
			return reg.GetFenced(ctx, res, l.Fence())
		}
		return reg.Get(ctx, res)
	}
	set := func(ctx context.Context, v int64) error {
		if fenced {
			return reg.SetFenced(ctx, res, v, l.Fence())
		}
		return reg.Set(ctx, res, v)
	}

	// The critical section: a read-modify-write guarded only by the lock,
	// every step bounded by the lock's validity — except for a stalled
	// holder, which writes after its validity. A reader reads twice (no
	// writer may write in between); a permit holder only holds.
	wctx, cancel := context.WithDeadline(ctx, l.Until())
	if stall {
		cancel()
		wctx, cancel = context.WithTimeout(ctx, time.Until(l.Until())+s.TTL+2*time.Second)
	}
	v, err := get(wctx)
	switch {
	case rec.Kind == KindPermit:
		if s.MaxHold > 0 {
			time.Sleep(rand.N(s.MaxHold + 1))
		}
	case errors.Is(err, errRefused):
		rec.Write = WriteRefused
	case rec.Kind == KindReader && err == nil:
		rec.Read = v
		if s.MaxHold > 0 {
			time.Sleep(rand.N(s.MaxHold + 1))
		}
		if l.TTL() > s.Margin {
			switch again, gerr := get(wctx); {
			case errors.Is(gerr, errRefused):
				rec.Write = WriteRefused
			case gerr != nil:
				rec.Err = gerr.Error()
			default:
				rec.ReadAgain, rec.ReadTwice = again, true
			}
		}
	case rec.Kind == KindReader:
		rec.Err = err.Error()
	case err != nil:
		rec.Err = err.Error()
	default:
		rec.Read = v
		if s.MaxHold > 0 {
			time.Sleep(rand.N(s.MaxHold + 1))
		}
		if stall {
			rec.Stalled = true
			time.Sleep(time.Until(l.Until()) + s.TTL/2)
		}
		if stall || l.TTL() > s.Margin {
			switch serr := set(wctx, v+1); {
			case errors.Is(serr, errRefused):
				rec.Write = WriteRefused
			case serr != nil:
				rec.Write = WriteUnknown
				rec.Err = serr.Error()
			default:
				rec.Write = WriteDone
			}
		}
	}
	cancel()
	rec.End = time.Now().UnixNano()

	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if err := l.Release(rctx); err != nil {
		rec.ReleaseErr = err.Error()
	}
	rcancel()
	return rec
}

// unavailable reports an attempt that failed because too few masters
// answered for a quorum, rather than because the resource was held.
func unavailable(err error) bool {
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		return false
	}
	return len(qe.Failed()) > len(qe.Votes)-qe.Quorum
}

// RunHolders runs holders as goroutines sharing one client (as one service
// would) and returns every attempt they made.
func RunHolders(ctx context.Context, cs ClientSpec, registerAddr string, holders []HolderSpec) ([]Record, error) {
	c, err := redlock.New(cs.Config())
	if err != nil {
		return nil, fmt.Errorf("safety: redlock.New: %w", err)
	}
	defer c.Close()
	reg := NewRegister(registerAddr, len(holders))
	defer reg.Close()

	var mu sync.Mutex
	var records []Record
	emit := func(r Record) {
		mu.Lock()
		records = append(records, r)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Go(func() { RunHolder(ctx, c, reg, h, emit) })
	}
	wg.Wait()
	return records, nil
}
