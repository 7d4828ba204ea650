// Package redlockprom exports quorumlock's lock-level events and master
// statistics as Prometheus metrics.
//
// A Collector is both a redlock.Observer (set it as Config.Observer: it
// counts and times every lock operation) and a prometheus.Collector (register
// it: at each scrape it also reads Client.MasterStats for masters up,
// batching and connection-pool figures). It lives in its own Go module so
// that the redlock package does not depend on client_golang.
//
//	col := redlockprom.New()
//	client, err := redlock.New(redlock.Config{Servers: addrs, Observer: col})
//	col.Attach(client)
//	prometheus.MustRegister(col)
//
// Metrics (all prefixed quorumlock_):
//
//	acquire_duration_seconds{outcome}   histogram: the last attempt of Lock/TryLock (one fan-out)
//	acquire_wait_seconds{outcome}       histogram: the whole Lock/TryLock call, retries included
//	acquires_total{outcome}             counter: Lock/TryLock calls by outcome (ok, busy, no_quorum, canceled, error)
//	acquire_attempts_total              counter: attempts made by those calls
//	busy_total                          counter: Lock/TryLock calls that ended with the resource held by another
//	hold_seconds                        histogram: time from acquisition to Release
//	extends_total{outcome}, releases_total{outcome}
//	extend_duration_seconds, release_duration_seconds   histograms
//	lost_total                          counter: locks known lost while held
//	master_events_total{event}          counter: master_down, master_up, master_quarantined
//	masters_up                          gauge: masters not marked down (of masters_total)
//	masters_total                       gauge
//	master_up{master,group}             gauge: 1 up, 0 down
//	master_commands_total{master,group}, master_pipelines_total{master,group}, master_failures_total{master,group}, master_downs_total{master,group}
//	batching_factor{master,group}       gauge: commands per pipeline since start
//	pool_connections{master,group,state} gauge: idle, in_use, constructing
//	pool_max_connections{master,group}  gauge
//	pool_acquires_total{master,group}, pool_acquire_wait_seconds_total{master,group}
package redlockprom

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quorumlock/quorumlock/redlock"
)

const ns = "quorumlock"

// Latency buckets: 100 µs to ≈ 13 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)

// Hold buckets: 1 ms to ≈ 70 min, ×4.
var holdBuckets = prometheus.ExponentialBuckets(0.001, 4, 12)

// outcomes is every redlock.Outcome, in order (indexes the pre-resolved
// children of each vector: Observe does no label lookup).
var outcomes = []redlock.Outcome{redlock.OutcomeOK, redlock.OutcomeBusy, redlock.OutcomeNoQuorum,
	redlock.OutcomeNotHeld, redlock.OutcomeCanceled, redlock.OutcomeError}

// Collector counts quorumlock events and reports master statistics. Create
// it with New; it is safe for concurrent use.
type Collector struct {
	client atomic.Pointer[redlock.Client]

	vecs []prometheus.Collector

	acquireDur, acquireWait   []prometheus.Observer
	acquires, releases, exts  []prometheus.Counter
	attempts, busy, lost      prometheus.Counter
	hold, extendDur, relDur   prometheus.Observer
	masterDown, masterUp, mQ  prometheus.Counter
	descUp, descUpTotal       *prometheus.Desc
	descMastersTotal          *prometheus.Desc
	descCommands, descPipes   *prometheus.Desc
	descFailures, descDowns   *prometheus.Desc
	descBatching, descPoolCon *prometheus.Desc
	descPoolMax, descPoolAcq  *prometheus.Desc
	descPoolWait              *prometheus.Desc
}

// New returns a Collector. Set it as redlock.Config.Observer, call Attach
// with the client, and register it.
func New() *Collector {
	c := &Collector{}
	acquireDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "acquire_duration_seconds",
		Help: "Duration of the last attempt (one fan-out) of each Lock/TryLock call, by outcome.", Buckets: latencyBuckets}, []string{"outcome"})
	acquireWait := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "acquire_wait_seconds",
		Help: "Duration of each Lock/TryLock call, retries included, by outcome.", Buckets: latencyBuckets}, []string{"outcome"})
	acquires := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "acquires_total",
		Help: "Lock/TryLock calls by outcome."}, []string{"outcome"})
	releases := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "releases_total",
		Help: "Release calls by outcome."}, []string{"outcome"})
	exts := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "extends_total",
		Help: "Extend calls by outcome."}, []string{"outcome"})
	attempts := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "acquire_attempts_total",
		Help: "Attempts made by Lock/TryLock calls."})
	busy := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "busy_total",
		Help: "Lock/TryLock calls that ended with the resource held by another holder."})
	lost := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "lost_total",
		Help: "Locks known lost while held (validity ran out, or Extend/Release found the token gone)."})
	hold := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "hold_seconds",
		Help: "Time from acquisition to Release.", Buckets: holdBuckets})
	extendDur := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "extend_duration_seconds",
		Help: "Duration of Extend's fan-out.", Buckets: latencyBuckets})
	relDur := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "release_duration_seconds",
		Help: "Duration of Release.", Buckets: latencyBuckets})
	masterEvents := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "master_events_total",
		Help: "Master state changes: master_down, master_up, master_quarantined."}, []string{"event"})

	c.vecs = []prometheus.Collector{acquireDur, acquireWait, acquires, releases, exts, attempts, busy, lost, hold, extendDur, relDur, masterEvents}
	for _, o := range outcomes {
		l := o.String()
		c.acquireDur = append(c.acquireDur, acquireDur.WithLabelValues(l))
		c.acquireWait = append(c.acquireWait, acquireWait.WithLabelValues(l))
		c.acquires = append(c.acquires, acquires.WithLabelValues(l))
		c.releases = append(c.releases, releases.WithLabelValues(l))
		c.exts = append(c.exts, exts.WithLabelValues(l))
	}
	c.attempts, c.busy, c.lost = attempts, busy, lost
	c.hold, c.extendDur, c.relDur = hold, extendDur, relDur
	c.masterDown = masterEvents.WithLabelValues(redlock.EventMasterDown.String())
	c.masterUp = masterEvents.WithLabelValues(redlock.EventMasterUp.String())
	c.mQ = masterEvents.WithLabelValues(redlock.EventMasterQuarantined.String())

	ml := []string{"master", "group"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
	}
	c.descUpTotal = d("masters_up", "Masters not marked down.")
	c.descMastersTotal = d("masters_total", "Masters configured.")
	c.descUp = d("master_up", "1 while the master is up, 0 while it is marked down.", ml...)
	c.descCommands = d("master_commands_total", "Commands sent to the master.", ml...)
	c.descPipes = d("master_pipelines_total", "Pipelines sent to the master.", ml...)
	c.descFailures = d("master_failures_total", "Commands to the master that got an error.", ml...)
	c.descDowns = d("master_downs_total", "Times the master was marked down.", ml...)
	c.descBatching = d("batching_factor", "Commands per pipeline sent to the master since start.", ml...)
	c.descPoolCon = d("pool_connections", "Connections to the master by state (idle, in_use, constructing).", "master", "group", "state")
	c.descPoolMax = d("pool_max_connections", "Size of the master's connection pool.", ml...)
	c.descPoolAcq = d("pool_acquires_total", "Connections handed out by the master's pool.", ml...)
	c.descPoolWait = d("pool_acquire_wait_seconds_total", "Total time spent waiting for a connection to the master.", ml...)
	return c
}

// Attach makes each scrape report c's MasterStats (masters up, batching,
// pools). Call it once the client exists; a Collector reports event metrics
// only until then.
func (col *Collector) Attach(c *redlock.Client) { col.client.Store(c) }

// Observe implements redlock.Observer: counters and histograms only, no
// allocation, no blocking.
func (col *Collector) Observe(ev redlock.Event) {
	o := int(ev.Outcome)
	if o >= len(outcomes) {
		o = int(redlock.OutcomeError)
	}
	switch ev.Kind {
	case redlock.EventAcquire:
		col.acquires[o].Inc()
		col.acquireDur[o].Observe(ev.Duration.Seconds())
		col.acquireWait[o].Observe(ev.Wait.Seconds())
		col.attempts.Add(float64(ev.Attempts))
		if ev.Outcome == redlock.OutcomeBusy {
			col.busy.Inc()
		}
	case redlock.EventExtend:
		col.exts[o].Inc()
		col.extendDur.Observe(ev.Duration.Seconds())
	case redlock.EventRelease:
		col.releases[o].Inc()
		col.relDur.Observe(ev.Duration.Seconds())
		col.hold.Observe(ev.Held.Seconds())
	case redlock.EventLost:
		col.lost.Inc()
	case redlock.EventMasterDown:
		col.masterDown.Inc()
	case redlock.EventMasterUp:
		col.masterUp.Inc()
	case redlock.EventMasterQuarantined:
		col.mQ.Inc()
	}
}

// Describe implements prometheus.Collector.
func (col *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range col.vecs {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{col.descUpTotal, col.descMastersTotal, col.descUp, col.descCommands, col.descPipes,
		col.descFailures, col.descDowns, col.descBatching, col.descPoolCon, col.descPoolMax, col.descPoolAcq, col.descPoolWait} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (col *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range col.vecs {
		v.Collect(ch)
	}
	c := col.client.Load()
	if c == nil {
		return
	}
	stats := c.MasterStats()
	up := 0
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, st := range stats {
		lv := []string{st.Addr, strconv.Itoa(st.Group)}
		u := 0.0
		if st.Up {
			u = 1
			up++
		}
		ch <- prometheus.MustNewConstMetric(col.descUp, gauge, u, lv...)
		ch <- prometheus.MustNewConstMetric(col.descCommands, counter, float64(st.Commands), lv...)
		ch <- prometheus.MustNewConstMetric(col.descPipes, counter, float64(st.Pipelines), lv...)
		ch <- prometheus.MustNewConstMetric(col.descFailures, counter, float64(st.Failures), lv...)
		ch <- prometheus.MustNewConstMetric(col.descDowns, counter, float64(st.Downs), lv...)
		bf := 0.0
		if st.Pipelines > 0 {
			bf = float64(st.Commands) / float64(st.Pipelines)
		}
		ch <- prometheus.MustNewConstMetric(col.descBatching, gauge, bf, lv...)
		p := st.Pool
		ch <- prometheus.MustNewConstMetric(col.descPoolCon, gauge, float64(p.Idle), st.Addr, lv[1], "idle")
		ch <- prometheus.MustNewConstMetric(col.descPoolCon, gauge, float64(p.InUse), st.Addr, lv[1], "in_use")
		ch <- prometheus.MustNewConstMetric(col.descPoolCon, gauge, float64(p.Constructing), st.Addr, lv[1], "constructing")
		ch <- prometheus.MustNewConstMetric(col.descPoolMax, gauge, float64(p.Max), lv...)
		ch <- prometheus.MustNewConstMetric(col.descPoolAcq, counter, float64(p.AcquireCount), lv...)
		ch <- prometheus.MustNewConstMetric(col.descPoolWait, counter, p.AcquireWait.Seconds(), lv...)
	}
	ch <- prometheus.MustNewConstMetric(col.descUpTotal, gauge, float64(up))
	ch <- prometheus.MustNewConstMetric(col.descMastersTotal, gauge, float64(len(stats)))
}
