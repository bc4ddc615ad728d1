package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// clientEnv makes the test binary act as a client of the socket it names
// (for the permission test, run as another user).
const clientEnv = "PXEBOOTFS_CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(clientEnv); path != "" {
		_, err := NewClient(path).Nodes(context.Background())
		fmt.Printf("code=%s err=%v\n", CodeOf(err), err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeHandler knows nodes C0A80102 and C0A80103; C0A80103 booted recently.
type fakeHandler struct {
	mu      sync.Mutex
	calls   []string
	reload  error
	release chan struct{} // if set, Release waits for it
}

func (h *fakeHandler) record(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, s)
}

func (h *fakeHandler) Nodes(ctx context.Context) ([]NodeStatus, error) {
	h.record("nodes")
	yes := true
	return []NodeStatus{{Node: node.MustParse("C0A80102"), IP: netip.MustParseAddr("192.168.1.2"), FSID: 10000, Mounted: &yes, BootCount: 3}}, nil
}

func (h *fakeHandler) check(id node.ID) error {
	switch id.String() {
	case "C0A80102":
		return nil
	case "C0A80103":
		return &Error{Code: CodeRefused, Msg: id.String() + " booted 5s ago"}
	}
	return fmt.Errorf("%s: %w", id, ErrUnknownNode)
}

func (h *fakeHandler) Reset(ctx context.Context, id node.ID, force bool) error {
	h.record(fmt.Sprintf("reset %s force=%v", id, force))
	if force && id.String() == "C0A80103" {
		return nil
	}
	return h.check(id)
}

func (h *fakeHandler) Release(ctx context.Context, id node.ID, purge, force bool) error {
	h.record(fmt.Sprintf("release %s purge=%v force=%v", id, purge, force))
	if h.release != nil {
		<-h.release
	}
	if id.String() == "C0A80103" {
		return nil
	}
	return h.check(id)
}

func (h *fakeHandler) Reload(ctx context.Context) error {
	h.record("reload")
	return h.reload
}

func (h *fakeHandler) Install(ctx context.Context, id node.ID) error {
	h.record("install " + id.String())
	return h.check(id)
}

func (h *fakeHandler) Installed(ctx context.Context, id node.ID) error {
	h.record("installed " + id.String())
	return h.check(id)
}

func (h *fakeHandler) Select(ctx context.Context, where string) ([]node.ID, error) {
	h.record("select " + where)
	switch where {
	case "role=compute":
		return []node.ID{node.MustParse("C0A80102")}, nil
	case "role=none":
		return nil, nil
	}
	return nil, &Error{Code: CodeBadRequest, Msg: "bad where"}
}

// TestInstallOps: install takes nodes and a where selection, installed
// only nodes; each node gets its own result.
func TestInstallOps(t *testing.T) {
	h := &fakeHandler{}
	_, path := listen(t, h)
	c := NewClient(path)
	ctx := context.Background()
	res, err := c.Install(ctx, []node.ID{node.MustParse("C0A80109")}, "role=compute")
	if err != nil || len(res) != 2 || !errors.Is(res[0].Err(), ErrUnknownNode) || res[1].Err() != nil {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	if _, err := c.Install(ctx, nil, "role=none"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("install of an empty selection: %v", err)
	}
	if _, err := c.Install(ctx, nil, "bad"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("install with a bad where: %v", err)
	}
	if _, err := c.do(ctx, Request{Op: OpInstalled, Where: "role=compute"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("installed with where: %v", err)
	}
	res, err = c.Installed(ctx, []node.ID{node.MustParse("C0A80102")})
	if err != nil || len(res) != 1 || res[0].Err() != nil {
		t.Fatalf("Installed = %+v, %v", res, err)
	}
	want := []string{"select role=compute", "install C0A80109", "install C0A80102", "select role=none", "select bad", "installed C0A80102"}
	if !slices.Equal(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
}

func listen(t *testing.T, h Handler) (*Server, string) {
	t.Helper()
	path := SocketPath(t.TempDir())
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSocketMode(t *testing.T) {
	_, path := listen(t, &fakeHandler{})
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if left, _ := filepath.Glob(path + ".tmp-*"); len(left) != 0 {
		t.Errorf("temporary sockets left: %v", left)
	}
}

func TestRoundTrip(t *testing.T) {
	h := &fakeHandler{}
	_, path := listen(t, h)
	c := NewClient(path)
	ctx := context.Background()

	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Node.String() != "C0A80102" || nodes[0].FSID != 10000 || !*nodes[0].Mounted || nodes[0].Exported != nil {
		t.Errorf("Nodes = %+v", nodes)
	}

	tests := []struct {
		name  string
		call  func() ([]Result, error)
		want  []error // per node; nil is success
		calls []string
	}{
		{"reset", func() ([]Result, error) { return c.Reset(ctx, ids("C0A80102", "C0A80103", "0A000001"), false) },
			[]error{nil, ErrRefused, ErrUnknownNode},
			[]string{"reset C0A80102 force=false", "reset C0A80103 force=false", "reset 0A000001 force=false"}},
		{"reset forced", func() ([]Result, error) { return c.Reset(ctx, ids("C0A80103"), true) },
			[]error{nil}, []string{"reset C0A80103 force=true"}},
		{"release purge", func() ([]Result, error) { return c.Release(ctx, ids("C0A80103", "0A000001"), true, true) },
			[]error{nil, ErrUnknownNode}, []string{"release C0A80103 purge=true force=true", "release 0A000001 purge=true force=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.mu.Lock()
			h.calls = nil
			h.mu.Unlock()
			res, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(tt.want) {
				t.Fatalf("%d results, want %d", len(res), len(tt.want))
			}
			for i, r := range res {
				err := r.Err()
				if (err == nil) != (tt.want[i] == nil) || (err != nil && !errors.Is(err, tt.want[i])) {
					t.Errorf("%s: %v, want %v", r.Node, err, tt.want[i])
				}
			}
			if !slices.Equal(h.calls, tt.calls) {
				t.Errorf("handler calls %q, want %q", h.calls, tt.calls)
			}
		})
	}

	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	h.reload = errors.New("pxe_template: line 3: unexpected EOF")
	err = c.Reload(ctx)
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeFailed || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("failed reload = %v, want a CodeFailed *Error with the reason", err)
	}
}

func TestBadRequests(t *testing.T) {
	_, path := listen(t, &fakeHandler{})
	tests := []struct {
		name string
		send string
		want string
	}{
		{"not JSON", "hello\n", "read request"},
		{"unknown op", `{"op":"format-disk"}`, `unknown operation \"format-disk\"`},
		{"reset without nodes", `{"op":"reset"}`, "no node given"},
		{"release without nodes", `{"op":"release","nodes":[]}`, "no node given"},
		{"nothing sent", "", "read request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, tt.send)
			conn.(*net.UnixConn).CloseWrite()
			b, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), `"code":"bad_request"`) || !strings.Contains(string(b), tt.want) {
				t.Errorf("answer %s, want bad_request with %q", b, tt.want)
			}
		})
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: a daemon killed with -9
	tests := []struct {
		name string
		path string
	}{
		{"no socket", filepath.Join(dir, SocketName)},
		{"no state dir", filepath.Join(dir, "missing", SocketName)},
		{"stale socket", stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.path).Nodes(context.Background())
			if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("err = %v, want ErrNotRunning naming %s", err, tt.path)
			}
		})
	}
	// A new daemon replaces the stale socket.
	s, err := Listen(stale, &fakeHandler{}, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	if _, err := NewClient(stale).Nodes(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	_, path := listen(t, &fakeHandler{})
	if s, err := Listen(path, &fakeHandler{}, nil); err == nil {
		s.Close()
		t.Fatal("a second Listen on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "another pxebootfs daemon") {
		t.Errorf("err = %v", err)
	}
	if _, err := NewClient(path).Nodes(context.Background()); err != nil {
		t.Errorf("first daemon no longer answers: %v", err)
	}
}

// Close waits for a request in flight, then removes the socket.
func TestCloseWaitsAndRemoves(t *testing.T) {
	h := &fakeHandler{release: make(chan struct{})}
	path := SocketPath(t.TempDir())
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := NewClient(path).Release(context.Background(), ids("C0A80102"), false, false)
		if err == nil {
			err = res[0].Err()
		}
		done <- err
	}()
	for {
		h.mu.Lock()
		n := len(h.calls)
		h.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(h.release)
	if err := <-done; err != nil {
		t.Errorf("request in flight during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := NewClient(path).Nodes(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after Close: %v, want ErrNotRunning", err)
	}
}

func TestClientContext(t *testing.T) {
	h := &fakeHandler{release: make(chan struct{})}
	_, path := listen(t, h)
	defer close(h.release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			h.mu.Lock()
			n := len(h.calls)
			h.mu.Unlock()
			if n > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if _, err := NewClient(path).Release(ctx, ids("C0A80102"), false, false); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call = %v, want context.Canceled", err)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Code
	}{
		{fmt.Errorf("x: %w", ErrUnknownNode), CodeUnknownNode},
		{fmt.Errorf("x: %w", &Error{Code: CodeRefused, Msg: "m"}), CodeRefused},
		{fmt.Errorf("x: %w", ErrPermission), CodePermission},
		{ErrBadRequest, CodeBadRequest},
		{errors.New("disk on fire"), CodeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.ENOENT, ErrNotRunning},
		{syscall.ECONNREFUSED, ErrNotRunning},
		{syscall.EACCES, ErrPermission},
		{syscall.EPERM, ErrPermission},
	}
	for _, tt := range tests {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			err := dialError("/x/control.sock", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", tt.errno)})
			if !errors.Is(err, tt.want) {
				t.Errorf("dialError(%v) = %v, want %v", tt.errno, err, tt.want)
			}
		})
	}
}

// The server refuses another user even when the socket's mode would let
// them in, and a user kept out by the mode gets ErrPermission.
func TestOtherUserRefused(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parents are 0700; nobody must reach the binary and socket.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "control.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketName)
	s, err := Listen(path, &fakeHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	asNobody := func() string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), clientEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as nobody: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := asNobody(); !strings.Contains(out, "code=permission") || !strings.Contains(out, "admin commands need root") {
		t.Errorf("as nobody through mode 0600: %s", out)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := asNobody(); !strings.Contains(out, "code=permission") || !strings.Contains(out, "uid 65534 may not use the control socket") {
		t.Errorf("as nobody through a loosened socket: %s", out)
	}
}

// ids parses hex names for the tests' requests.
func ids(names ...string) []node.ID {
	out := make([]node.ID, len(names))
	for i, n := range names {
		out[i] = node.MustParse(n)
	}
	return out
}

// TestNodeStatusJSONHasEveryField: `pxebootfs nodes -json` prints every
// field of every node, empty ones included; a time that never happened is
// null.
func TestNodeStatusJSONHasEveryField(t *testing.T) {
	b, err := json.Marshal(NodeStatus{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"node", "ip", "mac", "fsid", "mounted", "exported", "created", "last_boot", "boot_count", "last_error", "install", "install_changed", "install_loop", "install_error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing from %s", k, b)
		}
	}
	if m["last_boot"] != nil || m["install_changed"] != nil {
		t.Errorf("times that never happened are not null: %s", b)
	}
	var back NodeStatus
	if err := json.Unmarshal(b, &back); err != nil || !back.LastBoot.IsZero() {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}
