package redlock

import (
	"time"

	"github.com/cespare/xxhash/v2"
)

// keptRelease is a release a master missed while its key may still exist
// there.
type keptRelease struct {
	key, token string
	expires    time.Time
}

// keepRelease remembers a release that this master may need (its SET may
// have landed) but did not get, so that it is sent when the master is back.
func (n *node) keepRelease(cl *call) {
	if cl.op != opRelease || cl.keepFor <= 0 {
		return
	}
	now := time.Now()
	n.keptMu.Lock()
	defer n.keptMu.Unlock()
	if len(n.kept) >= maxKeptReleases && now.Sub(n.pruned) > time.Second {
		// Full: drop the expired ones, at most once a second (the scan is
		// not repeated for every release of a storm).
		n.pruned = now
		live := n.kept[:0]
		for _, p := range n.kept {
			if now.Before(p.expires) {
				live = append(live, p)
			}
		}
		clear(n.kept[len(live):])
		n.kept = live
	}
	if len(n.kept) >= maxKeptReleases {
		return // the ones kept first stay; this key expires with its TTL
	}
	n.kept = append(n.kept, keptRelease{key: cl.key, token: cl.token, expires: now.Add(cl.keepFor)})
}

// flushKept sends the kept releases whose keys may still exist, through
// the writers like any command (batched; a master that fails again keeps
// them again).
func (n *node) flushKept() {
	n.keptMu.Lock()
	kept := n.kept
	n.kept = nil
	n.keptMu.Unlock()
	now := time.Now()
	live := kept[:0]
	for _, p := range kept {
		if now.Before(p.expires) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	out := make(chan reply, len(live)) // nobody reads it: every answer fits
	calls := make([]call, len(live))
	deadline := now.Add(n.c.s.ReleaseTimeout)
	for i, p := range live {
		calls[i] = call{op: opRelease, key: p.key, token: p.token, args: newCmdArgs(p.key, p.token, 0),
			deadline: deadline, keepFor: p.expires.Sub(now), out: out}
		n.submit(&calls[i], xxhash.Sum64String(p.key), false)
	}
}
