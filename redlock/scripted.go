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
)

// scriptedOpNames are the scripted operations' names (opKind.String), in
// their order.
var scriptedOpNames = [...]string{
	"rlock", "rlock release", "rlock extend",
	"wlock", "wlock release", "wlock extend",
	"acquire permit", "release permit", "extend permit",
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
)
