package redlock

import (
	"fmt"
	"time"
)

// Restart quarantine (Config.RestartQuarantine): a master that has been up
// for less than RestartQuarantine votes no on every acquisition, so that a
// master restarted without its data cannot hand a second holder a lock that
// is still valid elsewhere — the Redlock page's "delayed restart", done by
// the client. It is checked on every new connection to the master (New, a
// reconnect after it was marked down, and a connection dialed because the
// server closed an idle one): INFO server gives the server's run_id (new at
// every start) and uptime_in_seconds, which covers restarts this client saw
// and those that happened before it started alike. Release, Extend and
// IsLocked still go to a quarantined master.

// QuarantineError is the vote of a master in restart quarantine: it was
// restarted less than Config.RestartQuarantine ago and refuses new locks
// until Left has passed. It appears (wrapped in a *MasterError, which names the master) in the Votes of
// a *QuorumError.
type QuarantineError struct {
	RunID  string        // the server's run_id since its restart
	Uptime time.Duration // how long it had been up when this client connected (INFO's uptime_in_seconds)
	Left   time.Duration // how much longer it votes no
}

func (e *QuarantineError) Error() string {
	return fmt.Sprintf("quarantined after a restart (up %v, run_id %s): votes no on new locks for %v more",
		e.Uptime, shortRunID(e.RunID), e.Left.Round(time.Millisecond))
}

func shortRunID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// observeServer quarantines the master until RestartQuarantine after the
// start of the server that answered si (INFO server, read on a new
// connection; prev is the one before, nil if none). Redis computes
// uptime_in_seconds as the difference of two whole-second clock readings
// (now and the start), so it can exceed the true uptime by up to a second:
// one second is taken off it, and the window may end up to two seconds
// late, never early.
func (n *node) observeServer(prev, si *serverInfo) {
	n.qMu.Lock()
	defer n.qMu.Unlock()
	q := n.c.s.RestartQuarantine
	up := max(si.uptime-time.Second, 0)
	if up >= q {
		return
	}
	until := si.at.Add(q - up).UnixNano()
	if until > n.quarantined.Load() {
		n.qInfo.Store(&QuarantineError{RunID: si.runID, Uptime: si.uptime}) // before quarantined: readers load it after
		n.quarantined.Store(until)
	}
	if n.loggedRunID != si.runID {
		n.loggedRunID = si.runID
		prevID := ""
		if prev != nil {
			prevID = prev.runID
		}
		n.c.s.Logger.Warn("redlock: master restarted recently: quarantined, it votes no on new locks",
			"master", n.addr.redacted, "run_id", si.runID, "previous_run_id", prevID,
			"uptime", si.uptime, "for", time.Duration(until-time.Now().UnixNano()).Round(time.Millisecond))
		if n.c.obs != nil { // once per restart, as logged
			left := time.Duration(until - time.Now().UnixNano())
			n.c.observe(Event{Kind: EventMasterQuarantined, Master: n.addr.redacted, Group: n.group, Duration: left,
				Err: n.masterErr(&QuarantineError{RunID: si.runID, Uptime: si.uptime, Left: left})})
		}
	}
}

// quarantineLeft returns how long the master stays in quarantine (0: not
// quarantined), ending the quarantine once it has passed.
func (n *node) quarantineLeft(now time.Time) time.Duration {
	until := n.quarantined.Load()
	if until == 0 {
		return 0
	}
	if left := time.Duration(until - now.UnixNano()); left > 0 {
		return left
	}
	if n.quarantined.CompareAndSwap(until, 0) {
		n.c.s.Logger.Info("redlock: master quarantine over", "master", n.addr.redacted)
	}
	return 0
}

// refuseQuarantined answers the acquisitions among calls with the
// quarantine vote when the master is in quarantine, and returns the other
// calls (filtered in place).
func (n *node) refuseQuarantined(calls []*call) []*call {
	left := n.quarantineLeft(time.Now())
	if left == 0 {
		return calls
	}
	qe := *n.qInfo.Load()
	qe.Left = left
	rest := calls[:0]
	for _, cl := range calls {
		if cl.op.isAcquire() {
			e := qe
			cl.fail(n.wrap(&e))
			continue
		}
		rest = append(rest, cl)
	}
	clear(calls[len(rest):])
	return rest
}
