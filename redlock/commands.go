package redlock

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Lua scripts: only the holder of the token may delete or extend a key, and
// an extension never re-creates a key that has expired.
//
// A release that deletes the key PUBLISHes on the key's release channel
// (releasedChannelPrefix + key), which wakes the waiters of Await and of
// Lock's retries (notify.go). It answers 1 + the number of subscribers that
// got the message, 0 when the key is not ours. The PUBLISH runs under
// pcall: a user whose ACL denies it still releases (waiters then fall back
// to PTTL-bounded timers).
const (
	releasedChannelPrefix = "quorumlock:released:"

	releaseScriptSrc = `if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("del", KEYS[1])
  local n = redis.pcall("publish", "` + releasedChannelPrefix + `" .. KEYS[1], ARGV[1])
  if type(n) ~= "number" then n = 0 end
  return 1 + n
end
return 0`
	extendScriptSrc = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`

	// Several keys of one group at once (LockAll): all or none on each
	// master. ARGV[1] is the token, ARGV[2] the TTL in ms.
	multiAcquireScriptSrc = `for i = 1, #KEYS do
  if redis.call("exists", KEYS[i]) == 1 then return 0 end
end
for i = 1, #KEYS do redis.call("set", KEYS[i], ARGV[1], "px", ARGV[2]) end
return 1`
	multiReleaseScriptSrc = `local n = 0
for i = 1, #KEYS do
  if redis.call("get", KEYS[i]) == ARGV[1] then
    redis.call("del", KEYS[i])
    redis.pcall("publish", "` + releasedChannelPrefix + `" .. KEYS[i], ARGV[1])
    n = n + 1
  end
end
if n == #KEYS then return 1 end
return 0`
	multiExtendScriptSrc = `for i = 1, #KEYS do
  if redis.call("get", KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do redis.call("pexpire", KEYS[i], ARGV[2]) end
return 1`
)

var (
	releaseScript      = redis.NewScript(releaseScriptSrc)
	extendScript       = redis.NewScript(extendScriptSrc)
	multiAcquireScript = redis.NewScript(multiAcquireScriptSrc)
	multiReleaseScript = redis.NewScript(multiReleaseScriptSrc)
	multiExtendScript  = redis.NewScript(multiExtendScriptSrc)
)

// scriptSources are loaded on every (re)connection.
var scriptSources = []string{releaseScriptSrc, extendScriptSrc, multiAcquireScriptSrc, multiReleaseScriptSrc, multiExtendScriptSrc}

type opKind uint8

const (
	opAcquire      opKind = iota // SET key token NX PX ttl
	opRelease                    // compare-and-delete
	opExtend                     // compare-and-pexpire
	opExists                     // TYPE key: "string" is a lock, "none" no key, another type WRONGTYPE
	opPTTL                       // PTTL key (waiters: how long the key may still block)
	opMultiAcquire               // several keys, all or none (LockAll)
	opMultiRelease               // several keys' compare-and-delete
	opMultiExtend                // several keys' compare-and-pexpire, all or none
	opAcquireFence               // Fencing: SET NX PX and advance the fence counter (fenceAcquireScriptSrc)
	opRaise                      // Fencing: raise the fence counter to at least a value (raiseScriptSrc)
)

func (o opKind) String() string {
	if o >= opFenced {
		return fencedOpNames[o-opFenced]
	}
	if o >= opScripted {
		return scriptedOpNames[o-opScripted]
	}
	return [...]string{"lock", "release", "extend", "islocked", "pttl", "lockall", "release", "extend", "lock", "fence"}[o]
}

// scriptSrc is the source of op's script: the plain lock's scripts and
// those of RWMutex, Semaphore and fencing (scriptOf).
func scriptSrc(op opKind) string {
	switch op {
	case opRelease:
		return releaseScriptSrc
	case opExtend:
		return extendScriptSrc
	case opMultiAcquire:
		return multiAcquireScriptSrc
	case opMultiRelease:
		return multiReleaseScriptSrc
	case opMultiExtend:
		return multiExtendScriptSrc
	case opAcquireFence:
		return fenceAcquireScriptSrc
	case opRaise:
		return raiseScriptSrc
	}
	return scriptOf(op).src
}

// Script hashes, boxed once.
var (
	releaseSHA      any = releaseScript.Hash()
	extendSHA       any = extendScript.Hash()
	multiAcquireSHA any = multiAcquireScript.Hash()
	multiReleaseSHA any = multiReleaseScript.Hash()
	multiExtendSHA  any = multiExtendScript.Hash()
	fenceAcquireSHA any = fenceAcquireScript.Hash()
	raiseSHA        any = raiseScript.Hash()
)

// multiCmd builds EVALSHA (or EVAL) of a several-key script.
func multiCmd(ctx context.Context, eval bool, src string, sha any, keys []string, extra ...any) *redis.Cmd {
	args := make([]any, 0, 3+len(keys)+len(extra))
	if eval {
		args = append(args, "eval", src)
	} else {
		args = append(args, "evalsha", sha)
	}
	args = append(args, len(keys))
	for _, k := range keys {
		args = append(args, k)
	}
	args = append(args, extra...)
	return redis.NewCmd(ctx, args...)
}

// newCmd builds cl's command (EVAL instead of EVALSHA with eval). Its
// key, token and TTL are pointers into cl.args: the command must not outlive
// the call's answer.
func newCmd(ctx context.Context, cl *call, eval bool) *redis.Cmd {
	a := cl.args
	if a.script != nil {
		// EVALSHA sha numkeys keys… argv…, or EVAL src … after NOSCRIPT.
		// Each master gets its own slice: go-redis owns a command's args.
		args := slices.Clone(a.script)
		if eval {
			args[0], args[1] = "eval", scriptOf(cl.op).src
		}
		return redis.NewCmd(ctx, args...)
	}
	switch cl.op {
	case opAcquire, opRelease, opExtend:
		if !eval {
			return redis.NewCmd(ctx, hotArgs(hotOf(cl.op), a)...)
		}
		if cl.op == opRelease {
			return redis.NewCmd(ctx, "eval", releaseScriptSrc, 1, &a.key, &a.token)
		}
		return redis.NewCmd(ctx, "eval", extendScriptSrc, 1, &a.key, &a.token, &a.ttl)
	case opPTTL:
		return redis.NewCmd(ctx, "pttl", &a.key)
	case opMultiAcquire:
		return multiCmd(ctx, eval, multiAcquireScriptSrc, multiAcquireSHA, a.keys, &a.token, &a.ttl)
	case opMultiRelease:
		return multiCmd(ctx, eval, multiReleaseScriptSrc, multiReleaseSHA, a.keys, &a.token)
	case opMultiExtend:
		return multiCmd(ctx, eval, multiExtendScriptSrc, multiExtendSHA, a.keys, &a.token, &a.ttl)
	case opAcquireFence:
		if eval {
			return redis.NewCmd(ctx, "eval", fenceAcquireScriptSrc, 2, &a.key, a.fence.key, &a.token, &a.ttl, a.fence.slot)
		}
		return redis.NewCmd(ctx, "evalsha", fenceAcquireSHA, 2, &a.key, a.fence.key, &a.token, &a.ttl, a.fence.slot)
	case opRaise:
		if eval {
			return redis.NewCmd(ctx, "eval", raiseScriptSrc, 1, a.fence.key, a.fence.value, a.fence.slot)
		}
		return redis.NewCmd(ctx, "evalsha", raiseSHA, 1, a.fence.key, a.fence.value, a.fence.slot)
	default:
		return redis.NewCmd(ctx, "type", &a.key)
	}
}

// The hot commands — SET NX PX, and EVALSHA of the release and extend
// scripts — are reused by each connection (cmdCache) instead of being
// allocated per master and operation.
const (
	hotSet = iota
	hotRelease
	hotExtend
	hotKinds
	notHot = -1
)

// hotOf returns op's hot command, or notHot.
func hotOf(op opKind) int {
	switch op {
	case opAcquire:
		return hotSet
	case opRelease:
		return hotRelease
	case opExtend:
		return hotExtend
	}
	return notHot
}

// hotArgs returns a new argument list of the hot command k for a.
func hotArgs(k int, a *cmdArgs) []any {
	switch k {
	case hotSet:
		return []any{"set", &a.key, &a.token, "nx", "px", &a.ttl}
	case hotRelease:
		return []any{"evalsha", releaseSHA, 1, &a.key, &a.token}
	}
	return []any{"evalsha", extendSHA, 1, &a.key, &a.token, &a.ttl}
}

// setHotArgs points the reused argument list args of the hot command k at a.
func setHotArgs(k int, args []any, a *cmdArgs) {
	switch k {
	case hotSet:
		args[1], args[2], args[5] = &a.key, &a.token, &a.ttl
	case hotRelease:
		args[3], args[4] = &a.key, &a.token
	default:
		args[3], args[4], args[5] = &a.key, &a.token, &a.ttl
	}
}

// maxHotCmds bounds the reusable commands a connection keeps per hot
// command (a larger pipeline allocates the rest): ≈ 224 bytes each.
const maxHotCmds = 8

// cmdCache is one connection's command scratch space: the pipeline being
// built, and the hot commands kept for reuse. It belongs to whoever holds
// the connection, between begin and end.
type cmdCache struct {
	cmds   []*redis.Cmd
	cmders []redis.Cmder
	hot    [hotKinds]hotCmds
}

type hotCmds struct {
	cmds []*redis.Cmd
	args [][]any // each command's argument list (the one go-redis sends)
	used int     // taken in this pipeline
}

// begin returns the (empty) command list of a new pipeline.
func (c *cmdCache) begin() []*redis.Cmd { return c.cmds[:0] }

// cmd returns cl's command: a reused one for a hot command (its previous
// reply and error reset), a new one otherwise.
func (c *cmdCache) cmd(ctx context.Context, cl *call) *redis.Cmd {
	k := notHot
	if a := cl.args; a.script == nil && a.fence == nil {
		k = hotOf(cl.op)
	}
	if k == notHot {
		return newCmd(ctx, cl, false)
	}
	h := &c.hot[k]
	if h.used < len(h.cmds) {
		cmd := h.cmds[h.used]
		setHotArgs(k, h.args[h.used], cl.args)
		h.used++
		cmd.SetErr(nil)
		cmd.SetVal(nil)
		return cmd
	}
	args := hotArgs(k, cl.args)
	cmd := redis.NewCmd(ctx, args...)
	// Kept only if go-redis sends the very list given to it (it does:
	// NewCmd keeps its variadic slice), so that setHotArgs changes it.
	if got := cmd.Args(); len(h.cmds) < maxHotCmds && len(got) == len(args) && &got[0] == &args[0] {
		h.cmds = append(h.cmds, cmd)
		h.args = append(h.args, args)
		h.used++
	}
	return cmd
}

// end closes the pipeline cmds (begin's list): the reused commands are
// free again, and nothing keeps a call's arguments alive.
func (c *cmdCache) end(cmds []*redis.Cmd) {
	for k := range c.hot {
		h := &c.hot[k]
		for _, args := range h.args[:h.used] {
			setHotArgs(k, args, &noArgs)
		}
		h.used = 0
	}
	clear(cmds)
	c.cmds = keepScratch(cmds)
}

// keepScratch returns s emptied for reuse, or nil when it outgrew a
// pipeline of maxBatch (a renewal batch): an idle connection keeps little.
func keepScratch[T any](s []T) []T {
	if cap(s) > maxBatch {
		return nil
	}
	return s[:0]
}

// noArgs is what an unused hot command points at.
var noArgs cmdArgs

// decode turns a reply into a vote: yes, no, or an error; val is the
// reply's number where it carries one (PTTL's milliseconds; for a release,
// the subscribers the release's message reached; for a fenced acquire, the
// master's fence counter).
func decode(op opKind, cmd *redis.Cmd) (ok bool, val int64, err error) {
	err = cmd.Err()
	if op == opAcquire {
		if errors.Is(err, redis.Nil) {
			return false, 0, nil // the key exists: busy
		}
		if err != nil {
			return false, 0, err
		}
		s, _ := cmd.Val().(string)
		return s == "OK", 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if op == opExists {
		switch t, _ := cmd.Val().(string); t {
		case "none":
			return false, 0, nil
		case "string":
			return true, 0, nil
		default:
			return false, 0, wrongTypeError(t)
		}
	}
	v, err := cmd.Int64()
	if err != nil {
		return false, 0, err
	}
	switch op {
	case opPTTL, opBusyLeft:
		return true, v, nil // every answer counts: val says how long the key (or what blocks) lives
	case opRelease:
		return v >= 1, max(v-1, 0), nil
	case opAcquireFence, opRLockFence, opWLockFence, opSemAcquireFence, opMultiAcquireFence:
		return v > 0, v, nil // 0: busy
	}
	return v == 1, 0, nil
}

// wrongTypeError is a key of another type where a lock's string should be.
// It is a server answer (a redis.Error): the master is not marked down.
type wrongTypeError string

func (e wrongTypeError) Error() string {
	return "WRONGTYPE the key holds a " + string(e) + ", not a lock"
}

// RedisError marks wrongTypeError as a server error (redis.Error).
func (wrongTypeError) RedisError() {}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isServerError reports an error reply of the server (WRONGTYPE, NOPERM, …):
// the master is up and answered, so it is not marked down.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}
