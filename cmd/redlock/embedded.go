package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/alicebob/miniredis/v2"
	"github.com/rs/zerolog"

	"github.com/quorumlock/quorumlock/internal/redisproc"
)

// maxEmbedded bounds the processes an embedded fleet may start.
const maxEmbedded = 500

// embeddedFlags size the embedded fleet that bench and status start when no
// servers are given.
type embeddedFlags struct {
	groups  int
	masters int
	kind    string
}

func (ef *embeddedFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&ef.groups, "groups", 1, "embedded fleet: number of quorum groups")
	fs.IntVar(&ef.masters, "masters", 5, "embedded fleet: masters per group (odd)")
	fs.StringVar(&ef.kind, "embedded", "auto", "embedded fleet: redis-server, miniredis, or auto (redis-server when installed)")
}

func (ef *embeddedFlags) validate() error {
	switch {
	case ef.groups < 1:
		return usagef("-groups %d: need at least one group", ef.groups)
	case ef.masters < 1 || ef.masters%2 == 0:
		return usagef("-masters %d: a group needs an odd number of masters (1, 3, 5, 7)", ef.masters)
	case ef.groups*ef.masters > maxEmbedded:
		return usagef("-groups %d × -masters %d: an embedded fleet has at most %d masters", ef.groups, ef.masters, maxEmbedded)
	}
	switch ef.kind {
	case "auto", "redis-server", "miniredis":
	default:
		return usagef("-embedded %q: want redis-server, miniredis or auto", ef.kind)
	}
	return nil
}

// onlyEmbedded refuses the embedded fleet's flags when the fleet is given
// (-servers, -cluster or the environment): they would be silently ignored.
func (ef *embeddedFlags) onlyEmbedded(set map[string]bool, ff fleetFlags, getenv env) error {
	fl, err := ff.resolve(getenv)
	if err != nil || fl == nil {
		return err
	}
	for _, name := range []string{"groups", "masters", "embedded"} {
		if set[name] {
			return usagef("-%s sizes the embedded fleet only, and the fleet is given by %s: drop -%s", name, fl.source, name)
		}
	}
	return nil
}

// miniredisNodeTimeout is the NodeTimeout used with an embedded miniredis
// fleet unless -node-timeout is given: miniredis answers an order of
// magnitude slower than redis-server (measured ≈ 18× on lock+unlock), and
// the default 100 ms would count its slow answers as failed masters.
const miniredisNodeTimeout = time.Second

// miniredisWarning is printed whenever the embedded fleet is miniredis.
const miniredisWarning = "miniredis (an in-process Go server) is about 18× slower than redis-server: the latencies measure miniredis, not the client; install redis-server for real numbers"

// embedded is a fleet started by this process on 127.0.0.1.
type embedded struct {
	groups [][]string
	mini   bool   // miniredis servers
	kind   string // e.g. "redis-server 7.0.15 processes", "in-process miniredis servers"
	why    string // why miniredis was used, if it was
	stop   func()
}

func (e *embedded) String() string {
	s := fmt.Sprintf("embedded fleet of %s: %s on 127.0.0.1", describe(e.groups), e.kind)
	if e.why != "" {
		s += " (" + e.why + ")"
	}
	return s
}

// startEmbedded starts groups × masters servers: redis-server processes
// when the binary is installed (or asked for), otherwise miniredis.
func startEmbedded(ef embeddedFlags) (*embedded, error) {
	n := ef.groups * ef.masters
	useRedis := ef.kind == "redis-server" || (ef.kind == "auto" && redisproc.Available())
	if ef.kind == "redis-server" && !redisproc.Available() {
		return nil, redisproc.ErrNotInstalled
	}
	var addrs []string
	e := &embedded{}
	if useRedis {
		servers, err := redisproc.StartN(n, redisproc.Options{})
		if err != nil {
			return nil, fmt.Errorf("embedded fleet: %w", err)
		}
		addrs = redisproc.Addrs(servers)
		e.kind = "redis-server " + redisVersion() + " processes"
		e.stop = func() { redisproc.StopAll(servers) }
	} else {
		var err error
		addrs, e.stop, err = startMiniredis(n)
		if err != nil {
			return nil, fmt.Errorf("embedded fleet: %w", err)
		}
		e.kind = "in-process miniredis servers"
		e.mini = true
		if ef.kind == "auto" {
			e.why = "redis-server is not installed"
		}
	}
	for g := 0; g < ef.groups; g++ {
		e.groups = append(e.groups, addrs[g*ef.masters:(g+1)*ef.masters])
	}
	return e, nil
}

var versionRE = regexp.MustCompile(`v=([0-9][0-9.]*)`)

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	if m := versionRE.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return strings.TrimSpace(string(out))
}

// startMiniredis starts n miniredis servers. miniredis does not expire keys
// by itself: a ticker moves its clock forward so that TTLs run.
func startMiniredis(n int) ([]string, func(), error) {
	var ms []*miniredis.Miniredis
	var addrs []string
	for i := 0; i < n; i++ {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			for _, m := range ms {
				m.Close()
			}
			return nil, nil, err
		}
		ms = append(ms, m)
		addrs = append(addrs, m.Addr())
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		const tick = 50 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range ms {
					m.FastForward(tick)
				}
			}
		}
	}()
	stop := func() {
		close(done)
		wg.Wait()
		for _, m := range ms {
			m.Close()
		}
	}
	return addrs, stop, nil
}

// slowMasters puts the first master of every group behind an in-process
// toxiproxy (on 127.0.0.1) that delays every reply by ms milliseconds, and
// returns the groups with that master's address replaced by the proxy's.
func slowMasters(groups [][]string, ms int) ([][]string, func(), error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var proxies []*toxiproxy.Proxy
	stop := func() {
		for _, p := range proxies {
			p.Stop()
		}
	}
	out := make([][]string, len(groups))
	for gi, g := range groups {
		out[gi] = append([]string(nil), g...)
		upstream, rewrite, err := hostPort(g[0])
		if err != nil {
			stop()
			return nil, nil, usagef("-slow-master-ms: %v", err)
		}
		p := toxiproxy.NewProxy(srv, fmt.Sprintf("slow-%d", gi), "127.0.0.1:0", upstream)
		if err := p.Start(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("toxiproxy for %s: %w", upstream, err)
		}
		proxies = append(proxies, p)
		toxic := fmt.Sprintf(`{"name":"slow","type":"latency","stream":"downstream","attributes":{"latency":%d}}`, ms)
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
			stop()
			return nil, nil, fmt.Errorf("toxiproxy latency toxic: %w", err)
		}
		out[gi][0] = rewrite(p.Listen)
	}
	return out, stop, nil
}

// hostPort extracts host:port from a master address and returns a function
// that rewrites the address with another host:port (keeping scheme, user,
// password and database of a URL).
func hostPort(addr string) (string, func(string) string, error) {
	if !strings.Contains(addr, "://") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", nil, fmt.Errorf("master %q: %w", addr, err)
		}
		return addr, func(hp string) string { return hp }, nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("master %q: not a redis:// address", addr)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	return host, func(hp string) string {
		v := *u
		v.Host = hp
		return v.String()
	}, nil
}
