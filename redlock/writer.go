package redlock

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
)

const (
	// writerQueueLen bounds the commands waiting for one connection's writer.
	writerQueueLen = 1024
	// maxBatch bounds one pipeline.
	maxBatch = 256
	// maxKeptReleases bounds the releases kept for a master that missed
	// them; they are sent when the master comes back.
	maxKeptReleases = 4096
)

var (
	errQueueFull = errors.New("command queue full")
	errTimeout   = errors.New("no answer within NodeTimeout")
	errExpired   = errors.New("timed out in the queue: not sent")
)

// call is one command for one master, part of one operation's fan-out.
type call struct {
	op       opKind
	idx      int // the master's index in its group
	key      string
	token    string
	args     *cmdArgs // the same for every master of the fan-out: boxed once
	deadline time.Time
	// keepFor > 0 marks a release this master may need (its SET may have
	// landed): it is never dropped silently (kept.go); keepFor is how long
	// the key may live once the master applies its last command (keyLife).
	keepFor time.Duration
	hash    uint64       // the key's hash: picks the writer (a kept release goes back to the same one)
	out     chan<- reply // buffered for the whole fan-out: never blocks
}

// reply is one master's answer.
type reply struct {
	idx  int
	ok   bool
	done bool // answered (false: not yet, or not awaited)
	err  error
	val  int64 // PTTL's milliseconds; a release's reached subscribers; a fenced acquire's fence counter
}

// fail answers the call with err (a vote of no).
func (cl *call) fail(err error) {
	cl.out <- reply{idx: cl.idx, err: err, done: true}
}

func (cl *call) answerVal(ok bool, val int64, err error) {
	cl.out <- reply{idx: cl.idx, ok: ok, val: val, err: err, done: true}
}

// cmdArgs are a fan-out's command arguments, converted to interface values
// once per operation rather than once per master.
type cmdArgs struct {
	key, token, ttl any
	keys            []string   // several-key scripts (LockAll)
	fence           *fenceArgs // Fencing only: nil otherwise, so a plain fan-out's arguments stay as small as before
	// script is a scripted operation's whole EVALSHA command (nil for the
	// plain lock's operations; see newScriptArgs).
	script []any
}

// fenceArgs are the fence counter's arguments: the counters' hash key, the
// resource's field in it, and opRaise's value.
type fenceArgs struct {
	key, slot, value any
}

func newCmdArgs(key, token string, ttlMs int64) *cmdArgs {
	return &cmdArgs{key: key, token: token, ttl: ttlMs}
}

// submit hands a call to the writer chosen by the key's hash. It never
// blocks. With direct set (a one-master group, whose caller has nothing else
// to wait for), a call that finds its writer idle and a connection free is
// sent by the caller itself: no goroutine hand-off. Otherwise it queues, and
// is batched with the other callers' commands.
func (n *node) submit(cl *call, hash uint64, direct bool) {
	if n.c.closed.Load() {
		cl.fail(ErrClosed)
		return
	}
	if n.down.Load() {
		n.keepRelease(cl)
		cl.fail(n.downErr())
		return
	}
	q := n.writers[0]
	if len(n.writers) > 1 {
		q = n.writers[(hash>>32)%uint64(len(n.writers))]
	}
	if direct && len(q) == 0 {
		if res := n.pool.tryAcquire(); res != nil {
			one := [1]*call{cl}
			n.run(res, one[:], nil)
			return
		}
	}
	select {
	case q <- cl:
	default:
		// Up but overloaded: a release it may need is kept and retried.
		n.keepAndRetry(cl)
		cl.fail(errQueueFull)
	}
}

// downErr is the vote of a master marked down, with the error that put it

func (n *node) writeLoop(q chan *call) {
	defer n.c.wg.Done()
	batch := make([]*call, 0, 16)
	var cmds []*redis.Cmd // reused across batches
	for {
		select {
		case cl := <-q:
			batch = append(batch[:0], cl)
		case <-n.c.closing:
			for {
				select {
				case cl := <-q:
					cl.fail(ErrClosed)
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case cl := <-q:
				batch = append(batch, cl)
			default:
				break drain
			}
		}
		cmds = n.exec(batch, cmds[:0])
		clear(batch) // drop references to answered calls
		clear(cmds)
	}
}

// exec sends a batch as one pipeline and answers every call in it. cmds is
// scratch space, returned for reuse.
func (n *node) exec(batch []*call, cmds []*redis.Cmd) []*redis.Cmd {
	if n.down.Load() {
		for _, cl := range batch {
			n.keepRelease(cl)
			cl.fail(n.downErr())
		}
		return cmds
	}
	now := time.Now()
	live := batch[:0]
	for _, cl := range batch {
		if now.After(cl.deadline) && !cl.needed() {
			// Nobody waits for it: don't send it. A release this master
			// may need is sent whatever its deadline: it may have waited
			// behind its own SET, which lands.
			cl.fail(errExpired)
			continue
		}
		live = append(live, cl)
	}
	if len(live) == 0 {
		return cmds
	}
	// Dialing (when no connection is idle) is bounded by DialTimeout in the
	// pool's dialer; commands by go-redis's Read/WriteTimeout = NodeTimeout.
	res, err := n.pool.acquire(context.Background())
	if err != nil {
		n.fail(err)
		for _, cl := range live {
			n.keepRelease(cl)
			cl.fail(n.wrap(err))
		}
		return cmds
	}
	return n.run(res, live, cmds)
}

// run sends calls on the connection res (one pipeline), answers each call,
// and gives the connection back — or destroys it and marks the master down
// after a transport error.
func (n *node) run(res *puddle.Resource[*pconn], calls []*call, cmds []*redis.Cmd) []*redis.Cmd {
	pc := res.Value()
	ctx := context.Background()
	if n.quarantined.Load() != 0 {
		// Checked here, after the connection was taken: dialing it may have
		// just found the master restarted.
		if calls = n.refuseQuarantined(calls); len(calls) == 0 {
			res.Release()
			return cmds
		}
	}
	for _, cl := range calls {
		cmds = append(cmds, newCmd(ctx, cl, false))
	}
	pc.send(ctx, cmds)
	n.commands.Add(int64(len(calls)))
	n.pipelines.Add(1)

	// Scripts unknown to the server (flushed, or a server that restarted
	// between our health checks): send EVAL for those, on this connection.
	var retry []*redis.Cmd
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			cmds[i] = newCmd(ctx, calls[i], true)
			retry = append(retry, cmds[i])
		}
	}
	if len(retry) > 0 {
		pc.send(ctx, retry)
	}

	var transportErr error
	for i, cl := range calls {
		ok, val, err := decode(cl.op, cmds[i])
		if err != nil {
			n.failures.Add(1)
			switch {
			case !isServerError(err):
				if transportErr == nil {
					transportErr = err
				}
				n.keepRelease(cl) // sent when the master answers again
			case retryLater(err):
				n.keepAndRetry(cl) // up, but loading or busy: not applied
			}
			err = n.wrap(err)
		}
		cl.answerVal(ok, val, err)
	}
	if transportErr != nil {
		res.Destroy()
		n.fail(transportErr)
		return cmds
	}
	res.Release()
	return cmds
}
