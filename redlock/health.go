package redlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fail marks the master down after a transport error: it votes "no" at once
// until the background reconnect loop has reached it again.
func (n *node) fail(err error) {
	msg := n.noteErr(err)
	if n.c.closed.Load() || !n.down.CompareAndSwap(false, true) {
		return
	}
	n.downs.Add(1)
	n.downSince.Store(time.Now().UnixNano())
	n.pool.reset()
	if n.permanent.Load() {
		n.c.s.Logger.Error("redlock: master down: misconfigured (retrying will not help until the configuration or the server is fixed)", "master", n.addr.redacted, "err", msg)
	} else {
		n.c.s.Logger.Warn("redlock: master down", "master", n.addr.redacted, "err", msg)
	}
	if n.c.obs != nil {
		n.c.observe(Event{Kind: EventMasterDown, Master: n.addr.redacted, Group: n.group, Outcome: OutcomeError, Err: n.masterErr(err)})
	}
	n.startReconnect()
}

// noteErr records err as the master's last error, redacted, and whether it
// is permanent; it returns the redacted message.
func (n *node) noteErr(err error) string {
	msg := redactErr(err, n.addr)
	n.lastErr.Store(&msg)
	n.permanent.Store(classifyPermanent(err))
	return msg
}

// masterErr is err of this master for a caller: redacted, classified.
func (n *node) masterErr(err error) *MasterError {
	me := &MasterError{Addr: n.addr.redacted, Err: err, permanent: classifyPermanent(err)}
	if msg := redactErr(err, n.addr); msg != err.Error() {
		me.Err = errors.New(msg) // the password was in it: keep only the text
	}
	return me
}

func (n *node) startReconnect() { n.c.goBackground(n.reconnectLoop) }

// reconnectLoop retries a down master every ReconnectInterval until it
// answers, has its scripts and is not a server another master of the fleet
// already reaches (claimServer), marks it up, then sends the releases it
// missed.
func (n *node) reconnectLoop() {
	t := time.NewTicker(n.c.s.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-n.c.closing:
			return
		case <-t.C:
		}
		err := n.connect()
		if err == nil {
			err = n.c.claimServer(n, true) // marks it up
		}
		var dup *ConfigError
		if errors.As(err, &dup) { // another master of the fleet reaches this server
			n.pool.reset() // stays down: its connections are not used
			if n.dupLogged.CompareAndSwap(false, true) {
				n.c.s.Logger.Error("redlock: master refused: another master of the fleet reaches the same server", "master", n.addr.redacted, "err", err)
			}
		}
		if err != nil {
			n.noteErr(err)
			continue
		}
		n.dupLogged.Store(false)
		downFor := time.Since(time.Unix(0, n.downSince.Load()))
		n.c.s.Logger.Info("redlock: master up", "master", n.addr.redacted, "down_for", downFor.Round(time.Millisecond))
		if n.c.obs != nil {
			n.c.observe(Event{Kind: EventMasterUp, Master: n.addr.redacted, Group: n.group, Duration: downFor})
		}
		n.flushKept()
		return
	}
}

// serverInfo is what a master said about itself (INFO server) on its
// newest connection: which server process it is, and since when it runs
// (at − uptime). It is nil when INFO is denied (an ACL without +info).
type serverInfo struct {
	runID  string        // run_id: random, new at every start of the server process
	uptime time.Duration // uptime_in_seconds (one-second resolution) when read
	at     time.Time     // when it was read (monotonic)
}

// parseServerInfo reads run_id and uptime_in_seconds from an INFO reply
// (nil without a run_id).
func parseServerInfo(text string, at time.Time) *serverInfo {
	si := &serverInfo{at: at}
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "run_id":
			si.runID = v
		case "uptime_in_seconds":
			if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
				si.uptime = time.Duration(sec) * time.Second
			}
		}
	}
	if si.runID == "" {
		return nil
	}
	return si
}

// readServerInfo reads the INFO server reply that pc got with its first
// PING. A denial (ACL without +info) is not an error: the server is then
// unknown (nil) — unless RestartQuarantine is set, which cannot work
// without it.
func (n *node) readServerInfo(pc *pconn) (*serverInfo, error) {
	cmd := pc.info
	if err := cmd.Err(); err != nil {
		if !isServerError(err) {
			return nil, err
		}
		if n.c.s.RestartQuarantine > 0 {
			return nil, fmt.Errorf("INFO server (needed by RestartQuarantine; the ACL rule needs +info): %w", err)
		}
		if n.infoDeniedLogged.CompareAndSwap(false, true) {
			n.c.s.Logger.Warn("redlock: INFO denied: one server reached under two names cannot be detected (grant +info)",
				"master", n.addr.redacted, "err", redactErr(err, n.addr))
		}
		return nil, nil
	}
	si := parseServerInfo(cmd.Val(), time.Now())
	if si == nil && n.c.s.RestartQuarantine > 0 {
		return nil, errors.New("INFO server has no run_id: RestartQuarantine cannot tell when the server started")
	}
	return si, nil
}

// serverCheck runs on every new connection to the master (first connect,
// reconnect, and the pool's transparent re-dial after the server closed
// idle connections — a restart, or a name that now resolves elsewhere): it
// reads INFO server into n.info and, once New has returned, claims the
// server for n (Client.claimServer). A connection to a server that another
// master of the fleet (up) already reaches is refused: one server, one vote.
func (n *node) serverCheck(_ context.Context, pc *pconn) error {
	si, err := n.readServerInfo(pc)
	if err != nil {
		return err
	}
	if n.c.s.RestartQuarantine > 0 {
		n.observeServer(n.info.Load(), si) // quarantine.go
	}
	n.info.Store(si)
	if !n.c.started.Load() {
		return nil // New claims in Config order once every master connected
	}
	return n.c.claimServer(n, false)
}

// connect opens the pool's connections (dial, AUTH, PING, INFO server: see
// serverCheck) and loads the scripts.
func (n *node) connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.c.s.DialTimeout+n.c.s.NodeTimeout)
	defer cancel()
	res, err := n.pool.acquire(ctx)
	if err != nil {
		return err
	}
	pipe := res.Value().conn.Pipeline()
	srcs := scriptSources
	if n.c.s.Fencing {
		srcs = append(srcs[:len(srcs):len(srcs)], fenceScriptSources...)
	}
	for _, src := range srcs {
		pipe.ScriptLoad(ctx, src)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isServerError(err) { // a denied SCRIPT LOAD is fine: EVALSHA falls back to EVAL
		res.Destroy()
		return err
	}
	res.Release()
	// Open the rest of the pool now, so the first commands after start-up or
	// a reconnect do not pay for dialing.
	for i := 1; i < n.c.s.PoolSize; i++ {
		if n.pool.pool.CreateResource(ctx) != nil {
			break
		}
	}
	return nil
}

// healthCheck pings idle connections; a failure marks the master down.
func (n *node) healthCheck() {
	if n.down.Load() {
		return
	}
	if err := n.pool.checkIdle(n.c.s.NodeTimeout, n.c.s.HealthCheckPeriod/2); err != nil {
		n.fail(err)
	}
}
