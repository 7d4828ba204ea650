package redlock

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// node is one master: its connection pool, its writers, and its health.
//
// Each connection of the pool has a writer goroutine with its own queue.
// Callers enqueue commands; the writer takes everything that piled up and
// sends it as one pipeline, so throughput grows with concurrency while a
// single caller pays only a channel hand-off. Commands for one key always go
// to the same writer, so a failed attempt's cleanup is ordered after its SET.
type node struct {
	c       *Client
	addr    address
	group   int // index of its quorum group
	pool    *connPool
	writers []*writerQueue

	down      atomic.Bool  // one reconnect loop runs per outage: started by the down CAS
	downSince atomic.Int64 // unix nanos
	lastErr   atomic.Pointer[string]
	permanent atomic.Bool // the last error is a misconfiguration (IsPermanent)

	info             atomic.Pointer[serverInfo] // INFO server of its newest connection; nil if unknown
	claimed          string                     // the run_id this master holds in Client.servers (under Client.serversMu)
	dupLogged        atomic.Bool                // the refusal as a duplicate server was logged (once per outage)
	infoDeniedLogged atomic.Bool

	commands  atomic.Int64
	pipelines atomic.Int64
	failures  atomic.Int64
	downs     atomic.Int64
	queueFull atomic.Int64 // calls refused because their writer's queue was full

	keptMu        sync.Mutex
	kept          []keptRelease // releases it missed, sent when it answers again (kept.go)
	droppedLogged time.Time     // last warning about a full kept list
	keptDropped   atomic.Int64  // needed releases dropped because the kept list was full
	retryPending  atomic.Bool   // a flush of kept releases is scheduled (keepAndRetry)

	// Restart quarantine (quarantine.go).
	quarantined atomic.Int64 // unix nanos the quarantine ends at; 0: none
	qInfo       atomic.Pointer[QuarantineError]
	qMu         sync.Mutex
	loggedRunID string // the last run_id whose quarantine was logged (under qMu)
}

func newNode(c *Client, a address, group int) (*node, error) {
	pool, err := newConnPool(a, c.s)
	if err != nil {
		return nil, err
	}
	n := &node{c: c, addr: a, group: group, pool: pool, writers: make([]*writerQueue, c.s.PoolSize)}
	pool.onConnect = n.serverCheck
	for i := range n.writers {
		q := newWriterQueue()
		n.writers[i] = q
		c.wg.Add(1)
		go n.writeLoop(q)
	}
	return n, nil
}

// down (WRONGPASS, a TLS failure, connection refused…).
func (n *node) downErr() error {
	if e := n.lastErr.Load(); e != nil {
		return &downError{last: *e, permanent: n.permanent.Load()}
	}
	return errNodeDown
}

type downError struct {
	last      string
	permanent bool
}

func (e *downError) Error() string { return errNodeDown.Error() + " (" + e.last + ")" }
func (e *downError) Unwrap() error { return errNodeDown }

func (n *node) wrap(err error) error { return &MasterError{Addr: n.addr.redacted, Err: err} }

// MasterStat is a snapshot of one master, for operators.
type MasterStat struct {
	Addr      string    // as written in Config, password redacted
	Group     int       // index of its quorum group
	Up        bool      // false while the master is marked down
	DownSince time.Time // when it was last marked down (zero if never)
	LastError string    // the last transport error, if any
	Commands  int64     // commands sent
	Pipelines int64     // pipelines sent (Commands/Pipelines is the batching factor)
	Failures  int64     // commands that got an error
	Downs     int64     // times the master was marked down
	QueueFull int64     // commands refused (a vote of no) because a writer's queue held writerQueueLen (1024) already
	// QuarantinedUntil is when the master's restart quarantine ends
	// (Config.RestartQuarantine); zero when it is not quarantined. Until
	// then it votes no on new locks.
	QuarantinedUntil time.Time
	RunID            string // the server's run_id at the newest connection ("" when INFO is denied)
	Pool             PoolStat
}

func (n *node) stat(group int) MasterStat {
	st := MasterStat{
		Addr:      n.addr.redacted,
		Group:     group,
		Up:        !n.down.Load(),
		Commands:  n.commands.Load(),
		Pipelines: n.pipelines.Load(),
		Failures:  n.failures.Load(),
		Downs:     n.downs.Load(),
		QueueFull: n.queueFull.Load(),
		Pool:      n.pool.stat(),
	}
	if ds := n.downSince.Load(); ds != 0 {
		st.DownSince = time.Unix(0, ds)
	}
	if e := n.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	now := time.Now()
	if left := n.quarantineLeft(now); left > 0 {
		st.QuarantinedUntil = now.Add(left)
	}
	if si := n.info.Load(); si != nil {
		st.RunID = si.runID
	}
	return st
}

// redactErr renders err without the master's password (some dial errors
// echo the address they were given).
func redactErr(err error, a address) string {
	s := err.Error()
	if a.password != "" {
		s = strings.ReplaceAll(s, a.password, "xxxxx")
	}
	return s
}

func tlsConfigFor(a address, s *settings) *tls.Config {
	var cfg *tls.Config
	if s.TLSConfig != nil {
		cfg = s.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" && net.ParseIP(a.host) == nil {
		cfg.ServerName = a.host
	}
	return cfg
}
