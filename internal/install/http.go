package install

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/httpserve"
	"github.com/pxebootfs/pxebootfs/internal/node"
)

// PathPrefix is where the callback lives.
const PathPrefix = "/v1/install/"

// errPath: a path that is not a callback; answered 404 like any unknown
// URL, so the server shows nothing but its one endpoint.
var errPath = errors.New("not a callback path")

// ParsePath parses /v1/install/NODE/ACTION, NODE being the node's hex name
// (either case) and ACTION started, done or failed. Anything else, extra
// slashes and dot segments included, is an error.
func ParsePath(p string) (node.ID, Action, error) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok {
		return node.ID{}, "", errPath
	}
	name, act, ok := strings.Cut(rest, "/")
	if !ok {
		return node.ID{}, "", errPath
	}
	id, err := node.ParseHex(name)
	if err != nil {
		return node.ID{}, "", errPath
	}
	switch a := Action(act); a {
	case Started, Done, Failed:
		return id, a, nil
	}
	return node.ID{}, "", errPath
}

// Limits of the callback server: installers send one short request.
const (
	maxBody        = 1 << 20 // larger bodies are refused; MaxReport of it is kept
	maxHeaderBytes = 8 << 10
	readTimeout    = 15 * time.Second
	writeTimeout   = 15 * time.Second
	idleTimeout    = 30 * time.Second
)

// Handler serves the callback, and nothing else: no listing of nodes, no
// tokens, 404 for every other path.
func (m *Manager) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src := remoteAddr(r)
		id, action, err := ParsePath(r.URL.Path)
		if err != nil || r.URL.RawPath != "" {
			http.NotFound(w, r)
			return
		}
		out := m.serve(w, r, src, id, action)
		if m.o.Metrics != nil {
			m.o.Metrics.InstallCallback(string(action), out.Status)
		}
		m.o.Logger.Info("install: callback", "node", id, "action", action, "source", src, "status", out.Status, "result", out.Msg)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(out.Status)
		fmt.Fprintln(w, out.Msg)
	})
}

func (m *Manager) serve(w http.ResponseWriter, r *http.Request, src netip.Addr, id node.ID, action Action) Outcome {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return Outcome{http.StatusMethodNotAllowed, "method not allowed: use GET or POST"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return Outcome{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBody)}
	case err != nil:
		return Outcome{http.StatusBadRequest, "reading the request body failed"}
	}
	if !src.IsValid() {
		return Outcome{http.StatusForbidden, "forbidden: unknown source address"}
	}
	return m.Report(src, id, action, r.URL.Query().Get("token"), body)
}

// remoteAddr is the request's source address. Proxies' headers are not
// trusted: the address checked is the TCP peer's.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Server is the running callback endpoint.
type Server = httpserve.Server

// Serve listens on addr (callback_listen) and serves m's callback until
// Close, with read and write timeouts and a header limit: installers send
// one short request, and a client that dawdles must not hold a connection.
func (m *Manager) Serve(addr string, log *slog.Logger) (*Server, error) {
	return httpserve.Start("install callback", addr, m.server(), 5*time.Second, log)
}

func (m *Manager) server() *http.Server {
	return &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}
