// Package ops serves what operators and orchestrators poll: Prometheus
// metrics, liveness and readiness.
package ops

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cmdtrack/cmdtrack/internal/httpserve"
)

// CheckFunc reports why the daemon cannot do its work now, or nil.
type CheckFunc func(ctx context.Context) error

// Server is the ops HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// Listen binds addr now, so that a bad address fails at startup.
//
//   - /metrics: the series registered on gatherer
//   - /healthz: 200 when live() is nil, else 503 with its reason (liveness:
//     a failing one asks the orchestrator to restart the process)
//   - /readyz:  200 when ready() is nil, else 503 with its reason
func Listen(addr string, gatherer prometheus.Gatherer, ready, live CheckFunc, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", check(live, "ok", "not live"))
	mux.HandleFunc("GET /readyz", check(ready, "ready", "not ready"))
	return &Server{
		ln:  ln,
		log: log,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
	}, nil
}

func check(f CheckFunc, ok, failed string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			http.Error(w, failed+": "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(ok + "\n"))
	}
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down within five seconds
// (httpserve.Serve).
func (s *Server) Serve(ctx context.Context) error {
	return httpserve.Serve(ctx, "ops", s.srv, s.ln, 5*time.Second)
}
