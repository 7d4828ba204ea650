package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	redlockprom "github.com/quorumlock/quorumlock/metrics/prometheus"
	"github.com/quorumlock/quorumlock/redlock"
)

// metricsServer serves the client's Prometheus metrics on /metrics while a
// command runs (bench -metrics ADDR).
type metricsServer struct {
	col  *redlockprom.Collector
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// startMetrics listens on addr and serves a registry holding the
// collector and the Go runtime's metrics. The collector must be set as the
// client's Config.Observer before the client is created, and attached after.
func startMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", addr, err)
	}
	m := &metricsServer{col: redlockprom.New(), ln: ln, done: make(chan error, 1)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.col, collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		err := m.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		m.done <- err
	}()
	return m, nil
}

// url is where the metrics are served.
func (m *metricsServer) url() string { return "http://" + m.ln.Addr().String() + "/metrics" }

// attach makes scrapes report c's masters.
func (m *metricsServer) attach(c *redlock.Client) { m.col.Attach(c) }

// stop shuts the server down, waiting up to a second for scrapes in
// flight, and returns the error that stopped serving, if any.
func (m *metricsServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	return <-m.done
}
