package redlock

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
)

const (
	// writerQueueLen bounds the commands waiting for one connection's
	// writer. The queue grows with what waits (writerQueue): an idle writer
	// holds no slots.
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
	args     *cmdArgs // the same for every master of the fan-out
	deadline time.Time
	// keepFor > 0 marks a release this master may need (its SET may have
	// landed): it is never dropped silently (kept.go); keepFor is how long
	// the key may live once the master applies its last command (keyLife).
	keepFor time.Duration
	hash    uint64       // the key's hash: picks the writer (a kept release goes back to the same one)
	out     chan<- reply // buffered for the whole fan-out: never blocks
	// fan, when set, is the pooled fan-out the call belongs to (quorum.go):
	// answering gives back the call's reference to it, after which the
	// call must not be touched. gen is the fan's use, copied into the reply.
	fan *fan
	gen uint32
}

// reply is one master's answer.
type reply struct {
	idx  int
	ok   bool
	done bool   // answered (false: not yet, or not awaited)
	gen  uint32 // the fan-out use it answers (call.gen)
	err  error
	val  int64 // PTTL's milliseconds; a release's reached subscribers; a fenced acquire's fence counter
}

// fail answers the call with err (a vote of no).
func (cl *call) fail(err error) { cl.answer(reply{err: err}) }

func (cl *call) answerVal(ok bool, val int64, err error) {
	cl.answer(reply{ok: ok, val: val, err: err})
}

// answer sends rp as the call's one answer. Every call is answered exactly
// once; afterwards it belongs to its fan-out again (it may be reused).
func (cl *call) answer(rp reply) {
	rp.idx, rp.gen, rp.done = cl.idx, cl.gen, true
	f := cl.fan
	cl.out <- rp
	if f != nil {
		f.unref()
	}
}

// cmdArgs are a fan-out's command arguments, shared by every master. The
// commands refer to them by pointer (go-redis writes *string and *int64
// arguments), so nothing is boxed per operation. A pooled fan-out's own
// cmdArgs are reused: a command must not outlive its call's answer, and a
// kept release keeps its own copy (kept.go).
type cmdArgs struct {
	key, token string
	ttl        int64
	keys       []string   // several-key scripts (LockAll)
	fence      *fenceArgs // Fencing only: nil otherwise, so a plain fan-out's arguments stay as small as before
	// script is a scripted operation's whole EVALSHA command (nil for the
	// plain lock's operations; see newScriptArgs).
	script []any
}

// fenceArgs are the fence counter's arguments: the counters' hash key, the
// resource's field in it, and opRaise's value.
type fenceArgs struct {
	key, slot, value any
}

func newCmdArgs(key, token string) *cmdArgs {
	return &cmdArgs{key: key, token: token}
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
	if direct && q.empty() {
		if res := n.pool.tryAcquire(); res != nil {
			one := [1]*call{cl}
			n.run(res, one[:])
			return
		}
	}
	switch err := q.push(cl); {
	case err == nil:
	case errors.Is(err, errQueueFull):
		// Up but overloaded: a release it may need is kept and retried.
		n.queueFull.Add(1)
		n.keepAndRetry(cl)
		cl.fail(err)
	default: // the writer stopped (Close) after the check above
		cl.fail(err)
	}
}

// writerQueue is the queue of one connection's writer: the calls waiting
// (at most writerQueueLen) and a one-slot wake-up. It grows with what waits
// and shrinks back when the burst is over, so an idle writer costs a few
// words, not writerQueueLen preallocated slots; under load it holds as many
// calls as a channel of writerQueueLen would.
type writerQueue struct {
	mu      sync.Mutex
	pending []*call
	closed  bool          // the writer stopped: nothing is queued any more
	wake    chan struct{} // a token whenever pending became non-empty
}

func newWriterQueue() *writerQueue { return &writerQueue{wake: make(chan struct{}, 1)} }

// push queues cl; errQueueFull when writerQueueLen calls already wait,
// ErrClosed once the writer stopped (nobody would answer cl).
func (q *writerQueue) push(cl *call) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if len(q.pending) >= writerQueueLen {
		q.mu.Unlock()
		return errQueueFull
	}
	q.pending = append(q.pending, cl)
	first := len(q.pending) == 1
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default: // a token is there already
		}
	}
	return nil
}

// close stops the queue: it returns the calls waiting, and refuses every
// later push.
func (q *writerQueue) close() []*call {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	calls := q.pending
	q.pending = nil
	return calls
}

// empty tells whether no call waits.
func (q *writerQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) == 0
}

// take returns every waiting call, in order, and keeps spare (emptied) as
// the next queue.
func (q *writerQueue) take(spare []*call) []*call {
	q.mu.Lock()
	defer q.mu.Unlock()
	calls := q.pending
	q.pending = spare[:0]
	return calls
}

// queueKeep is the capacity a writer's spare queue keeps between bursts;
// a larger one is dropped once the burst is over.
const queueKeep = 64

// downErr is the vote of a master marked down, with the error that put it

// writeLoop is one connection's writer: it takes everything queued and
// sends it as pipelines of at most maxBatch calls.
func (n *node) writeLoop(q *writerQueue) {
	defer n.c.wg.Done()
	var spare []*call
	for {
		select {
		case <-q.wake:
		case <-n.c.closing:
			for _, cl := range q.close() {
				cl.fail(ErrClosed)
			}
			return
		}
		for {
			batch := q.take(spare)
			if len(batch) == 0 {
				spare = batch
				break
			}
			for rest := batch; len(rest) > 0; {
				k := min(len(rest), maxBatch)
				n.exec(rest[:k])
				rest = rest[k:]
			}
			clear(batch) // drop references to answered calls
			spare = batch[:0]
			if cap(spare) > queueKeep {
				spare = nil // the burst is over: don't keep its slots
			}
		}
	}
}

// exec sends a batch as one pipeline and answers every call in it.
func (n *node) exec(batch []*call) {
	if n.down.Load() {
		for _, cl := range batch {
			n.keepRelease(cl)
			cl.fail(n.downErr())
		}
		return
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
		return
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
		return
	}
	n.run(res, live)
}

// laterOfSameLock reports whether a call after calls[i] in one pipeline
// belongs to the same lock (carries its token).
func laterOfSameLock(calls []*call, i int) bool {
	if calls[i].token == "" {
		return false
	}
	for _, cl := range calls[i+1:] {
		if cl.token == calls[i].token {
			return true
		}
	}
	return false
}

// run sends calls on the connection res (one pipeline), answers each call,
// and gives the connection back — or destroys it and marks the master down
// after a transport error.
func (n *node) run(res *puddle.Resource[*pconn], calls []*call) {
	pc := res.Value()
	ctx := context.Background()
	if n.quarantined.Load() != 0 {
		// Checked here, after the connection was taken: dialing it may have
		// just found the master restarted.
		if calls = n.refuseQuarantined(calls); len(calls) == 0 {
			// Nothing was sent: the connection's idle time goes on (a
			// connection the server closed meanwhile is still found by the
			// liveness peek of the next taker; see usable).
			res.ReleaseUnused()
			return
		}
	}
	// The connection's reusable commands: pc is ours until res goes back.
	cmds := pc.cache.begin()
	for _, cl := range calls {
		cmds = append(cmds, pc.cache.cmd(ctx, cl))
	}
	pc.send(ctx, cmds)
	n.commands.Add(int64(len(calls)))
	n.pipelines.Add(1)

	// Scripts unknown to the server (flushed, a server that restarted
	// between our health checks, or a script not loaded at connect): send
	// EVAL for those, on this connection — unless a later command of the
	// same lock (its token) was in this pipeline: that one has run already,
	// and the EVAL would land after it (an acquire after its own release
	// would leave a holder nobody holds). Such a command was not applied:
	// it is answered as failed, and its script is loaded for the next use.
	var retry []*redis.Cmd
	for i, cmd := range cmds {
		if !isNoScript(cmd.Err()) {
			continue
		}
		if laterOfSameLock(calls, i) {
			retry = append(retry, redis.NewCmd(ctx, "script", "load", scriptSrc(calls[i].op)))
			continue
		}
		cmds[i] = newCmd(ctx, calls[i], true)
		retry = append(retry, cmds[i])
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
			case isNoScript(err):
				// Not sent again (a later command of its lock ran in this
				// pipeline), so not applied: a release that may be needed
				// — one of a MultiLock's kept single-key releases, which
				// share its token — is kept and retried; its script is
				// loaded by then.
				n.keepAndRetry(cl)
			}
			err = n.wrap(err)
		}
		cl.answerVal(ok, val, err)
	}
	pc.cache.end(cmds) // before the connection goes back: the cache is the connection's
	if transportErr != nil {
		res.Destroy()
		n.fail(transportErr)
		return
	}
	res.Release()
}
