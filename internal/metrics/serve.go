package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pxebootfs/pxebootfs/internal/httpserve"
)

// Server serves /metrics over HTTP.
type Server = httpserve.Server

// Handler is the /metrics handler for m.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slogErrorLog{log},
		// A scrape that runs into a broken collector still returns what
		// the others have.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Serve listens on addr (metrics_listen) and serves m at /metrics until
// Close. The listener is open when it returns, so a scrape right after
// cannot be refused.
func (m *Metrics) Serve(addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler(log))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "pxebootfs: metrics are at /metrics")
	})
	// A scrape in flight at shutdown gets a moment to finish.
	return httpserve.Start("metrics", addr, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, 2*time.Second, log)
}

// slogErrorLog adapts a slog.Logger to promhttp's error logger.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) {
	if l.log != nil {
		l.log.Warn("metrics: " + fmt.Sprint(v...))
	}
}
