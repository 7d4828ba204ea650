package redlock

import "github.com/redis/go-redis/v9"

// The scripted operations of RWMutex (rw.go) and Semaphore (semaphore.go):
// each is one Lua script (scriptOf) run on each master, with several keys.
// They are numbered apart from the plain lock's operations (commands.go).
const opScripted opKind = 64

const (
	opRLock      = opScripted + iota // add a reader share unless a writer holds or waits
	opRUnlock                        // remove a reader share
	opRExtend                        // push one reader share's expiry
	opWLock                          // take the writer key if no writer and no live reader
	opWUnlock                        // compare-and-delete the writer key (and its waiting mark)
	opWExtend                        // compare-and-pexpire the writer key
	opSemAcquire                     // add a permit holder if fewer than k hold
	opSemRelease                     // remove a permit holder
	opSemExtend                      // push one permit holder's expiry
	opBusyLeft                       // how long a master may still refuse a reader, writer or permit (waiters' bound)
)

// scriptedOpNames are the scripted operations' names (opKind.String), in
// their order.
var scriptedOpNames = [...]string{
	"rlock", "rlock release", "rlock extend",
	"wlock", "wlock release", "wlock extend",
	"acquire permit", "release permit", "extend permit",
	"busy",
}

// isAcquire tells the operations that take a lock (a quorum of "no" does not
// end them early: see request.decisive; a master in restart quarantine
// refuses them: see node.refuseQuarantined).
func (o opKind) isAcquire() bool {
	switch o {
	case opAcquire, opAcquireFence, opMultiAcquire, opRLock, opWLock, opSemAcquire,
		opRLockFence, opWLockFence, opSemAcquireFence, opMultiAcquireFence:
		return true
	}
	return false
}

// isRelease tells the operations that give a lock back (a master that misses
// one may keep it for later: kept.go).
func (o opKind) isRelease() bool {
	return o == opRelease || o == opMultiRelease || o == opRUnlock || o == opWUnlock || o == opSemRelease
}

// script is one Lua script of a scripted operation.
type script struct {
	src string
	sha any // boxed once
}

func newScript(src string) *script {
	return &script{src: src, sha: redis.NewScript(src).Hash()}
}

// scriptOf returns the script of a scripted operation (nil for the plain
// lock's operations, which newCmd encodes itself).
func scriptOf(op opKind) *script {
	if op >= opFenced {
		return fencedScripts[op-opFenced]
	}
	switch op {
	case opRLock:
		return rlockScript
	case opRUnlock:
		return runlockScript
	case opRExtend:
		return rextendScript
	case opWLock:
		return wlockScript
	case opWUnlock:
		return wunlockScript
	case opWExtend:
		return wextendScript
	case opSemAcquire:
		return semAcquireScript
	case opSemRelease:
		return semReleaseScript
	case opSemExtend:
		return semExtendScript
	case opBusyLeft:
		return busyLeftScript
	}
	return nil
}

// newScriptArgs boxes a scripted operation's command once per fan-out:
// EVALSHA sha len(keys) keys… argv….
func newScriptArgs(op opKind, keys []string, token string, argv ...any) *cmdArgs {
	s := make([]any, 0, 3+len(keys)+len(argv))
	s = append(s, "evalsha", scriptOf(op).sha, len(keys))
	for _, k := range keys {
		s = append(s, k)
	}
	s = append(s, argv...)
	return &cmdArgs{key: keys[0], token: token, script: s}
}

// Pieces shared by the scripts of RWMutex and Semaphore. Expiries are
// computed from the master's own clock (TIME), in milliseconds, so a holder's
// share expires on the server exactly as a PX key would; no client clock is
// ever compared with a server's.
const (
	luaNow = `local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`
	// keep makes key live at least ms more (a set's key outlives its
	// longest-lived member; pttl is -1 without expiry, -2 without key).
	luaKeep = `local function keep(key, ms)
  if redis.call("pttl", key) < ms then redis.call("pexpire", key, ms) end
end
`
	// luaAnnounce is a release's announcement on key's release channel,
	// under pcall as in the plain release (releaseScriptSrc): it wakes the
	// waiters of RWMutex and Semaphore (wait.go).
	luaAnnounce = `local function announce(key, who)
  redis.pcall("publish", "` + releasedChannelPrefix + `" .. key, who)
end
`
)

// busyLeftScript (mode, k) answers how long, in ms of this master's clock,
// it may still refuse an acquisition — 0 when it would grant it now, -1
// when a key without expiry blocks it: a waiter's bound, so that a lost
// announcement costs at most that (wait.go). Mode "r" is a reader (RWMutex
// keys: the writer and the waiting mark block it), "w" a writer (the
// writer and the live readers block it), "s" a permit of k (Semaphore
// keys: until fewer than k live holders are left).
var busyLeftScript = newScript(luaNow + `
local function left(key)
  local ms = redis.call("pttl", key)
  if ms == -1 then return -1 end
  return math.max(ms, 0)
end
local function later(a, b)
  if a == -1 or b == -1 then return -1 end
  return math.max(a, b)
end
if ARGV[1] == "r" then return later(left(KEYS[1]), left(KEYS[3])) end
if ARGV[1] == "w" then
  local top = redis.call("zrange", KEYS[2], -1, -1, "withscores")
  local r = 0
  if top[2] then r = math.max(tonumber(top[2]) - now, 0) end
  return later(left(KEYS[1]), r)
end
local k = tonumber(ARGV[2])
local n = redis.call("zcount", KEYS[1], "(" .. now, "+inf")
if n < k then return 0 end
local s = redis.call("zrangebyscore", KEYS[1], "(" .. now, "+inf", "withscores", "limit", n - k, 1)
return math.max(tonumber(s[2]) - now, 0)`)
