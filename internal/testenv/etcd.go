package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Etcd is a real etcd cluster (Debian's etcd-server) of members on
// loopback ports, each with its data in the test's temporary directory.
// Members can be stopped and started again with their data, as an admin's
// would be.
type Etcd struct {
	// Endpoints are the members' client URLs, in member order.
	Endpoints []string

	mu      sync.Mutex
	members []*etcdMember
}

type etcdMember struct {
	args   []string
	client string
	proc   *daemonProc // nil while stopped
}

// StartEtcd starts n members and waits until every one is healthy. They
// are stopped when the test ends.
func StartEtcd(t testing.TB, n int) *Etcd {
	t.Helper()
	RequireTool(t, "etcd")
	dir := t.TempDir()
	e := &Etcd{}
	var initial []string
	clients, peers := make([]string, n), make([]string, n)
	for i := range n {
		clients[i] = "http://" + freeLoopbackPort(t)
		peers[i] = "http://" + freeLoopbackPort(t)
		initial = append(initial, fmt.Sprintf("e%d=%s", i, peers[i]))
	}
	for i := range n {
		m := &etcdMember{client: clients[i], args: []string{
			"--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i)),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("pxebootfs-test-%p", e),
		}}
		e.members = append(e.members, m)
		e.Endpoints = append(e.Endpoints, clients[i])
	}
	for i := range n {
		e.Start(t, i)
	}
	t.Cleanup(func() {
		for i := range e.members {
			e.Stop(t, i)
		}
	})
	for i := range n {
		e.waitHealthy(t, i)
	}
	return e
}

// freeLoopbackPort returns 127.0.0.1:PORT with a port free a moment ago.
func freeLoopbackPort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts member i (again, with its data).
func (e *Etcd) Start(t testing.TB, i int) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.members[i]
	if m.proc != nil {
		t.Fatalf("etcd member %d is running", i)
	}
	p, err := newDaemon(fmt.Sprintf("etcd e%d", i), exec.Command(toolPath("etcd"), m.args...))
	if err != nil {
		t.Fatal(err)
	}
	m.proc = p
}

// Stop stops member i (SIGTERM, then SIGKILL); a stopped member is left.
func (e *Etcd) Stop(t testing.TB, i int) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.members[i]
	if m.proc == nil {
		return
	}
	if err := m.proc.stop(); err != nil {
		t.Errorf("stop etcd member %d: %v", i, err)
	}
	m.proc = nil
}

// WaitHealthy waits until every running member says it is healthy (it has
// a leader).
func (e *Etcd) WaitHealthy(t testing.TB) {
	t.Helper()
	for i, m := range e.members {
		if m.proc != nil {
			e.waitHealthy(t, i)
		}
	}
}

func (e *Etcd) waitHealthy(t testing.TB, i int) {
	t.Helper()
	m := e.members[i]
	ctx, cancel := context.WithTimeout(context.Background(), daemonReadyTimeout)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		select {
		case <-m.proc.done:
			t.Fatalf("etcd member %d exited: %v: %s", i, m.proc.err, m.proc.out)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.client+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"health":"true"`) {
				return
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd member %d not healthy within %s: %s\n%s", i, daemonReadyTimeout, last, m.proc.out)
}

// Metric sums the samples of a Prometheus counter on the running members'
// /metrics (labels ignored); with one member it is that member's.
func (e *Etcd) Metric(t testing.TB, name string, members ...int) float64 {
	t.Helper()
	var sum float64
	for _, i := range members {
		resp, err := http.Get(e.members[i].client + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
			if len(f) == 0 {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(f[0], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
