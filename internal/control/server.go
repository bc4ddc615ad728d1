package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/node"
)

// Handler carries out requests in the daemon. Its methods are called
// concurrently for different connections.
type Handler interface {
	Nodes(ctx context.Context) ([]NodeStatus, error)
	Reset(ctx context.Context, id node.ID, force bool) error
	Release(ctx context.Context, id node.ID, purge, force bool) error
	Reload(ctx context.Context) error
	Install(ctx context.Context, id node.ID) error
	Installed(ctx context.Context, id node.ID) error
	// Select lists the inventory nodes whose var NAME is value, for
	// install's Where ("NAME=value").
	Select(ctx context.Context, where string) ([]node.ID, error)
}

// Limits of one connection: a request is a few hundred bytes, and a client
// that sends nothing must not hold a goroutine forever.
const (
	maxRequest   = 1 << 20
	readTimeout  = 10 * time.Second
	writeTimeout = 30 * time.Second
)

// Server serves the control socket.
type Server struct {
	path   string
	ln     *net.UnixListener
	ino    uint64 // of the socket file we made, so Close removes only ours
	h      Handler
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Listen creates the socket at path (mode 0600) and serves h on it until
// Close. A socket left at path by a daemon that died is replaced; one that
// a live daemon answers on is an error.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another pxebootfs daemon is listening on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	// Bind under a temporary name, restrict it, then rename it into place:
	// the socket is never reachable with wider permissions than 0600.
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: listen on %s: %w", tmp, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	var st unix.Stat_t
	if err := unix.Stat(tmp, &st); err != nil {
		return fail(fmt.Errorf("control socket: stat %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, ln: ln, ino: st.Ino, h: h, log: log, ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops accepting, waits for the requests in flight (a reset is not
// cut short) and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	s.cancel()
	var st unix.Stat_t
	if unix.Stat(s.path, &st) == nil && st.Ino == s.ino {
		if rerr := os.Remove(s.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("control socket: close: %w", err)
	}
	return nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off rather than spin.
			s.log.Warn("control: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) serveConn(conn *net.UnixConn) {
	start := time.Now()
	var req Request
	resp := func() Response {
		if err := checkPeer(conn); err != nil {
			return Response{Error: err.Error(), Code: CodeOf(err)}
		}
		conn.SetReadDeadline(time.Now().Add(readTimeout))
		if err := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req); err != nil {
			return Response{Error: fmt.Sprintf("read request: %v", err), Code: CodeBadRequest}
		}
		conn.SetReadDeadline(time.Time{})
		return s.handle(req)
	}()
	attrs := []any{"op", req.Op, "nodes", req.Nodes, "duration", time.Since(start)}
	if req.Force {
		attrs = append(attrs, "force", true)
	}
	if req.Purge {
		attrs = append(attrs, "purge", true)
	}
	if resp.Error != "" {
		s.log.Warn("control request failed", append(attrs, "code", resp.Code, "err", resp.Error)...)
	} else {
		failed := 0
		for _, r := range resp.Results {
			if r.Error != "" {
				failed++
			}
		}
		s.log.Info("control request", append(attrs, "failed_nodes", failed)...)
	}
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.log.Warn("control: write response", "op", req.Op, "err", err)
	}
}

// checkPeer admits root and our own user only. The socket's mode already
// keeps others out; this holds even if someone loosens it.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("read peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return &Error{Code: CodePermission, Msg: fmt.Sprintf("uid %d may not use the control socket: %v", cred.Uid, syscall.EACCES)}
	}
	return nil
}

func (s *Server) handle(req Request) Response {
	ctx := s.ctx
	switch req.Op {
	case OpNodes:
		nodes, err := s.h.Nodes(ctx)
		if err != nil {
			return Response{Error: err.Error(), Code: CodeOf(err)}
		}
		if nodes == nil {
			nodes = []NodeStatus{}
		}
		return Response{Nodes: nodes}
	case OpReset, OpRelease, OpInstall, OpInstalled:
		if req.Where != "" {
			if req.Op != OpInstall {
				return Response{Error: fmt.Sprintf("%s: where is for install only", req.Op), Code: CodeBadRequest}
			}
			ids, err := s.h.Select(ctx, req.Where)
			if err != nil {
				return Response{Error: err.Error(), Code: CodeOf(err)}
			}
			if len(ids) == 0 {
				return Response{Error: fmt.Sprintf("install: no inventory node has %s", req.Where), Code: CodeUnknownNode}
			}
			req.Nodes = append(req.Nodes, ids...)
		}
		if len(req.Nodes) == 0 {
			return Response{Error: fmt.Sprintf("%s: no node given", req.Op), Code: CodeBadRequest}
		}
		results := make([]Result, len(req.Nodes))
		for i, n := range req.Nodes {
			var err error
			switch req.Op {
			case OpReset:
				err = s.h.Reset(ctx, n, req.Force)
			case OpRelease:
				err = s.h.Release(ctx, n, req.Purge, req.Force)
			case OpInstall:
				err = s.h.Install(ctx, n)
			case OpInstalled:
				err = s.h.Installed(ctx, n)
			}
			results[i] = Result{Node: n}
			if err != nil {
				results[i].Error, results[i].Code = err.Error(), CodeOf(err)
			}
		}
		return Response{Results: results}
	case OpReload:
		if err := s.h.Reload(ctx); err != nil {
			return Response{Error: err.Error(), Code: CodeOf(err)}
		}
		return Response{}
	}
	return Response{Error: fmt.Sprintf("unknown operation %q", req.Op), Code: CodeBadRequest}
}
