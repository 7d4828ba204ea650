package redlock

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards a loopback port to a master (a stdlib stand-in for an
// in-process toxiproxy, which would put toxiproxy's dependencies in the
// library's go.mod). Stop closes its listener
// and every proxied connection (to the client, the master is gone); Start
// listens again on the same address (the master is back).
type tcpProxy struct {
	upstream string
	addr     string        // "127.0.0.1:port", fixed by the first Start
	delay    time.Duration // held before every chunk of replies is passed on (a slow link); set before Start

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startProxy starts a proxy in front of upstream, stopped at the end of the test.
func startProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{upstream: upstream, addr: "127.0.0.1:0"}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Addr is the address clients dial.
func (p *tcpProxy) Addr() string { return p.addr }

// SetUpstream points new connections at another server (as a DNS name that
// moved); Stop and Start close the ones already proxied.
func (p *tcpProxy) SetUpstream(upstream string) {
	p.mu.Lock()
	p.upstream = upstream
	p.mu.Unlock()
}

// Start listens on the proxy's address and forwards what it accepts.
func (p *tcpProxy) Start() error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln, p.addr, p.conns = ln, ln.Addr().String(), map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return // Stop closed the listener
			}
			p.mu.Lock()
			upstream := p.upstream
			p.mu.Unlock()
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = down.Close()
				continue
			}
			if !p.track(down, up) {
				return
			}
			p.wg.Add(2)
			go p.pipe(down, up, p.delay)
			go p.pipe(up, down, 0)
		}
	}()
	return nil
}

// track registers a connection pair, or closes it when Stop came first.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies one direction until either side closes, then closes both;
// with a delay, every chunk waits that long before it is passed on.
func (p *tcpProxy) pipe(dst, src net.Conn, delay time.Duration) {
	defer p.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	if delay <= 0 {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(delay)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Stop closes the listener and every proxied connection, and waits until
// no goroutine of the proxy is left.
func (p *tcpProxy) Stop() {
	p.mu.Lock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
