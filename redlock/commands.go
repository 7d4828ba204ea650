package redlock

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Lua scripts: only the holder of the token may delete or extend a key, and
// an extension never re-creates a key that has expired.
const (
	releaseScriptSrc = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`
	extendScriptSrc  = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`
)

var (
	releaseScript = redis.NewScript(releaseScriptSrc)
	extendScript  = redis.NewScript(extendScriptSrc)
)

type opKind uint8

const (
	opAcquire opKind = iota // SET key token NX PX ttl
	opRelease               // compare-and-delete
	opExtend                // compare-and-pexpire
	opExists                // EXISTS key
)

func (o opKind) String() string {
	return [...]string{"lock", "release", "extend", "islocked"}[o]
}

// Script hashes, boxed once.
var (
	releaseSHA any = releaseScript.Hash()
	extendSHA  any = extendScript.Hash()
)

func newCmd(ctx context.Context, cl *call, eval bool) *redis.Cmd {
	a := cl.args
	switch cl.op {
	case opAcquire:
		return redis.NewCmd(ctx, "set", a.key, a.token, "nx", "px", a.ttl)
	case opRelease:
		if eval {
			return redis.NewCmd(ctx, "eval", releaseScriptSrc, 1, a.key, a.token)
		}
		return redis.NewCmd(ctx, "evalsha", releaseSHA, 1, a.key, a.token)
	case opExtend:
		if eval {
			return redis.NewCmd(ctx, "eval", extendScriptSrc, 1, a.key, a.token, a.ttl)
		}
		return redis.NewCmd(ctx, "evalsha", extendSHA, 1, a.key, a.token, a.ttl)
	default:
		return redis.NewCmd(ctx, "type", a.key)
	}
}

// decode turns a reply into a vote: yes, no, or an error.
func decode(op opKind, cmd *redis.Cmd) (bool, error) {
	err := cmd.Err()
	if op == opAcquire {
		if errors.Is(err, redis.Nil) {
			return false, nil // the key exists: busy
		}
		if err != nil {
			return false, err
		}
		s, _ := cmd.Val().(string)
		return s == "OK", nil
	}
	if err != nil {
		return false, err
	}
	if op == opExists {
		switch t, _ := cmd.Val().(string); t {
		case "none":
			return false, nil
		case "string":
			return true, nil
		default:
			return false, wrongTypeError(t)
		}
	}
	v, err := cmd.Int64()
	if err != nil {
		return false, err
	}
	return v == 1, nil
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
