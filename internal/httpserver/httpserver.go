// Package httpserver runs an http.Server as a component with Run(ctx): it
// listens (":0" works, and Addr reports the real address), serves until the
// context ends, then shuts down gracefully within a bounded time.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is an HTTP server with an explicit lifecycle.
type Server struct {
	srv             *http.Server
	ln              net.Listener
	log             *slog.Logger
	shutdownTimeout time.Duration
	shed            *shedListener // nil without a connection cap
}

// ShedConnections is the number of connections answered with 503 because
// MaxConnections were open.
func (s *Server) ShedConnections() int64 {
	if s.shed == nil {
		return 0
	}
	return s.shed.shed.Load()
}

// Options tunes a Server. Zero values get sensible defaults.
type Options struct {
	// ShutdownTimeout bounds graceful shutdown (default 10s): in-flight
	// requests get this long to finish after the context is cancelled.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout guards against slow-loris clients (default 5s).
	ReadHeaderTimeout time.Duration
	// MaxConnections caps open connections (0: no cap). A connection beyond
	// it gets a fast 503 with Retry-After and is closed, so memory stays
	// bounded however many clients connect, and no client hangs waiting.
	MaxConnections int
	Logger         *slog.Logger
}

// Listen binds addr (for example ":8080" or "127.0.0.1:0") so that Addr is
// known before Run is called.
func Listen(addr string, h http.Handler, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var shed *shedListener
	if o.MaxConnections > 0 {
		shed = &shedListener{Listener: ln, max: int64(o.MaxConnections)}
		ln = shed
	}
	return &Server{
		shed: shed,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: o.ReadHeaderTimeout,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		},
		ln:              ln,
		log:             o.Logger,
		shutdownTimeout: o.ShutdownTimeout,
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is cancelled, then shuts down gracefully. It returns
// nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http server listening", "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Shutdown runs on a detached, bounded context: the parent is already
	// cancelled, but in-flight requests still deserve their answer.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("http server stopped", "addr", s.Addr())
	return nil
}
