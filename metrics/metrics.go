// Package metrics exposes a Sovereign coordinator or worker to Prometheus
// (github.com/prometheus/client_golang) and keeps the small amount of
// in-process history the dashboard shows beside the replicated state.
//
// Names follow the Prometheus conventions (prometheus.io/docs/practices/
// naming): the sovereign_ prefix, base units (seconds, bytes, ratios in
// [0, 1]), _total on counters. What the replicated coordinator state holds
// (rounds committed and failed, ε spent, federated accuracy and loss) is
// read from it at scrape time, so a follower reports the same values as the
// leader; what only the leader's round driver sees (stage durations,
// refusals, per-round worker counts) is counted by thin wrappers around the
// driver's Replicator and Cohort. Nothing here changes a protocol: the
// wrappers pass every call through unchanged.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sovereign-fl/sovereign/wire"
)

// Namespace prefixes every metric name.
const Namespace = "sovereign"

// RefusalReason maps a worker's refusal text to its short label value
// (wire.RefusalRule): the reasons are free text with numbers in them, a
// label must have few values.
func RefusalReason(text string) string { return wire.RefusalRule(text) }

// RefusalReasons are every value RefusalReason returns.
var RefusalReasons = wire.RefusalRules

// newRegistry returns a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// CheckListen validates a metrics_listen or dashboard_listen value
// ("host:port"); key names the configuration key in the error. It reports
// whether the host is a loopback address (the caller warns otherwise).
func CheckListen(key, addr string) (loopback bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not host:port (e.g. \"127.0.0.1:9464\"): %v", key, addr, err)
	}
	if port == "" {
		return false, fmt.Errorf("%s: %q has no port", key, addr)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	if host != "" && ip == nil {
		return false, fmt.Errorf("%s: %q: host must be an IP address or localhost", key, addr)
	}
	return ip != nil && ip.IsLoopback(), nil
}

// Server is a running HTTP listener (metrics or dashboard).
type Server struct {
	srv *http.Server
	ln  net.Listener
	err chan error
}

// Listen starts serving h on addr ("host:port"; port 0 picks one) and
// returns once the listener is bound.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln: ln, err: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.Error("http server stopped", "addr", addr, "err", err)
		}
		s.err <- err
	}()
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, waiting up to two seconds for requests in flight.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// handler serves reg in the Prometheus text (or OpenMetrics) format.
func handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "sovereign metrics: see /metrics")
	})
	return mux
}

// Bandwidth is what a libp2p bandwidth counter reports (see
// p2p.HostConfig.Bandwidth): the bytes received and sent so far.
type Bandwidth func() (in, out int64)

func bandwidthCollectors(bw Bandwidth) []prometheus.Collector {
	if bw == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "p2p_received_bytes_total",
			Help: "Bytes received over libp2p streams (all protocols)."}, func() float64 { in, _ := bw(); return float64(in) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "p2p_sent_bytes_total",
			Help: "Bytes sent over libp2p streams (all protocols)."}, func() float64 { _, out := bw(); return float64(out) }),
	}
}

// ListenLogged is Listen for the configuration key key (metrics_listen,
// dashboard_listen): its errors name the key, and a listener beyond
// loopback is logged as readable by anyone who can reach it.
func ListenLogged(key, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	loop, _ := CheckListen(key, addr)
	srv, err := Listen(addr, h, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if !loop {
		log.Warn(key+" is not a loopback address: anyone who can reach it can read it", "addr", srv.Addr())
	}
	return srv, nil
}
