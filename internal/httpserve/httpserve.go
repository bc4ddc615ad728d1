// Package httpserve runs the daemon's small HTTP endpoints (metrics, the
// install callback): listen, serve in the background, log a server that
// stops by itself, and shut down letting requests in flight finish.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is a running endpoint.
type Server struct {
	name  string
	srv   *http.Server
	ln    net.Listener
	grace time.Duration
	done  chan struct{}
}

// Start listens on addr (host:port) and serves srv (its Handler and limits)
// there until Close; name labels errors and logs. Close lets requests in
// flight run for grace, then cuts them off.
func Start(name, addr string, srv *http.Server, grace time.Duration, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s := &Server{name: name, srv: srv, ln: ln, grace: grace, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+": serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address listened on (with the port chosen, if addr had 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("%s: close: %w", s.name, err)
	}
	return nil
}
