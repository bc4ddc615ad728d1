package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pxebootfs/pxebootfs/internal/cluster"
	"github.com/pxebootfs/pxebootfs/internal/node"
	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// Several boot servers, one fleet: pxebootfs daemons sharing node
// ownership in a real three-member etcd (Debian's etcd-server) on loopback,
// each with its own mount, state, roots and tftpd-hpa.

// clusterTemplate names the server holding the node's root.
const clusterTemplate = "LABEL linux\n  APPEND root=/dev/nfs nfsroot={{.Server}}:{{.NodeDir}} fsid={{.FSID}} node=<NODE> gen={{.Root}}/{{.RootGen}}\n"

// clusterServer is one server of the test's cluster.
type clusterServer struct {
	*fullSite
	name, addr string
	d          *daemon
	tftp       string // its tftpd-hpa
}

func newClusterServer(t *testing.T, e *testenv.Etcd, prefix, name, addr string) *clusterServer {
	t.Helper()
	return newClusterServerConfig(t, e, prefix, name, addr, "192.168.0.0/16, 10.0.0.0/8", "", nil)
}

// newClusterServerConfig is newClusterServer serving allow, with more
// config lines and files (by name in the config's directory).
func newClusterServerConfig(t *testing.T, e *testenv.Etcd, prefix, name, addr, allow, extra string, files map[string]string) *clusterServer {
	t.Helper()
	f := newFullSiteAllow(t, allow, fmt.Sprintf("export = none\ncluster_endpoints = %s\ncluster_prefix = %s\nserver_name = %s\nserver_address = %s\n%s",
		strings.Join(e.Endpoints, ","), prefix, name, addr, extra))
	f.write(f.template, clusterTemplate)
	for name, content := range files {
		f.write(filepath.Join(f.dir, name), content)
	}
	s := &clusterServer{fullSite: f, name: name, addr: addr}
	s.d = f.start()
	s.tftp = testenv.StartTFTPD(t, f.tftpRoot)
	return s
}

// own is the nodes s holds a root for: its registry.
func (s *clusterServer) own(t *testing.T) []string {
	var names []string
	for _, n := range s.registry(t).Nodes {
		names = append(names, n.Node)
	}
	return names
}

// TestClusterOwnership: 64 new nodes fetched at once through two servers'
// tftpds each get exactly one owner and one root in all, and every config
// from either server names the owner's address and path; one etcd member
// down changes nothing; all down, known nodes are served, new ones are
// refused with a log line; etcd back, new nodes are claimed again.
func TestClusterOwnership(t *testing.T) {
	e := testenv.StartEtcd(t, 3)
	prefix := fmt.Sprintf("/pxebootfs-test-%d/", os.Getpid())
	a := newClusterServer(t, e, prefix, "a", "10.99.0.1")
	b := newClusterServer(t, e, prefix, "b", "10.99.0.2")
	servers := []*clusterServer{a, b}
	byName := map[string]*clusterServer{"a": a, "b": b}

	// What each fetch of a node through a server returned.
	type got struct {
		node, via string
		cfg       []byte
	}
	movedAway := map[string]bool{} // nodes moved from a to b
	fetchAll := func(first, n int) []got {
		t.Helper()
		var mu sync.Mutex
		var out []got
		var g errgroup.Group
		g.SetLimit(32)
		for i := first; i < first+n; i++ {
			name, _ := hexNode(i)
			for _, s := range servers {
				g.Go(func() error {
					cfg, err := fetch(t, s.tftp, name)
					if err != nil {
						return fmt.Errorf("%s through %s: %w", name, s.name, err)
					}
					mu.Lock()
					out = append(out, got{name, s.name, cfg})
					mu.Unlock()
					return nil
				})
			}
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// check: each node of the fetches is owned by exactly one server, which
	// holds its root, and every config names that server.
	check := func(fetched []got) {
		t.Helper()
		owners := map[string]string{}
		for _, s := range servers {
			mounts := overlayMountsUnder(t, s.nodes)
			for _, n := range s.own(t) {
				if prev, dup := owners[n]; dup && !movedAway[n] {
					t.Errorf("node %s has a root on %s and on %s", n, prev, s.name)
				}
				if movedAway[n] && s.name == "a" {
					continue // a keeps its old layer; b owns it
				}
				owners[n] = s.name
				if mounts[filepath.Join(s.nodes, n)] != 1 {
					t.Errorf("node %s: in %s's registry, not mounted there", n, s.name)
				}
			}
		}
		for _, f := range fetched {
			owner, ok := owners[f.node]
			if !ok {
				t.Errorf("node %s has no root on any server", f.node)
				continue
			}
			o := byName[owner]
			want := fmt.Sprintf("nfsroot=%s:%s ", o.addr, filepath.Join(o.nodes, f.node))
			if !strings.Contains(string(f.cfg), want) {
				t.Errorf("node %s (owned by %s) through %s: %q, want %q in it", f.node, owner, f.via, f.cfg, want)
			}
		}
	}

	// etcd's load per boot: writes (raft proposals, counted by one member)
	// and requests (all members), for 64 new nodes, then 64 boots of known
	// ones.
	load := func() (writes, requests float64) {
		return e.Metric(t, "etcd_server_proposals_committed_total", 0), e.Metric(t, "grpc_server_handled_total", 0, 1, 2)
	}
	w0, r0 := load()
	fetched := fetchAll(1, 64)
	w1, r1 := load()
	fetchAll(1, 64)
	w2, r2 := load()
	t.Logf("etcd load: a new node (fetched through both servers) %.1f writes, %.1f requests; a known node's boot %.2f writes, %.2f requests",
		(w1-w0)/64, (r1-r0)/64, (w2-w1)/64, (r2-r1)/64)
	check(fetched)
	na, nb := len(a.own(t)), len(b.own(t))
	t.Logf("64 nodes through both servers at once: %d owned by a, %d by b", na, nb)
	if na+nb != 64 {
		t.Fatalf("%d + %d roots for 64 nodes", na, nb)
	}
	// etcd says the same.
	cl, err := cluster.Open(context.Background(), cluster.Options{Endpoints: e.Endpoints, Prefix: prefix, Server: "test", Address: "10.99.0.9"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, s := range servers {
		for _, n := range s.own(t) {
			id, _ := node.ParseHex(n)
			if movedAway[n] {
				continue
			}
			if o, ok := cl.Owner(id); !ok || o.Server != s.name || o.Address != s.addr {
				t.Errorf("etcd: node %s owned by %+v, want %s at %s", n, o, s.name, s.addr)
			}
		}
	}

	// `pxebootfs nodes` on either server lists the whole fleet with owners.
	out, errOut, code := run(t, "nodes", "-c", b.cfg)
	if code != 0 {
		t.Fatalf("nodes: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 65 || !strings.HasPrefix(lines[0], "OWNER") {
		t.Fatalf("nodes on b: %d lines, want a header with OWNER and 64 nodes:\n%s", len(lines), out)
	}
	for _, s := range servers {
		for _, n := range s.own(t) {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, s.name+" ") && strings.Contains(l, " "+n+" ") }) {
				t.Errorf("nodes on b has no row of %s owned by %s:\n%s", n, s.name, out)
			}
		}
	}

	// move: one of a's nodes to b. Refused without -force from b (a knows
	// its boots); then every server names b, and b makes it a root.
	moved := a.own(t)[0]
	movedAway[moved] = true
	if _, errOut, code := run(t, "move", "-c", b.cfg, moved, "b"); code != 7 {
		t.Errorf("move from a non-owner without -force: exit %d, want 7: %s", code, errOut)
	}
	if _, errOut, code := run(t, "move", "-c", a.cfg, moved, "b"); code != 7 || !strings.Contains(errOut, "reset_guard") {
		t.Errorf("move on the owner of a node that just booted: exit %d, want 7 for reset_guard: %s", code, errOut)
	}
	if out, errOut, code := run(t, "move", "-c", b.cfg, "-force", moved, "b"); code != 0 {
		t.Fatalf("move -force: exit %d: %s %s", code, out, errOut)
	}
	for _, s := range servers {
		want := fmt.Sprintf("nfsroot=%s:%s ", b.addr, filepath.Join(b.nodes, moved))
		deadline := time.Now().Add(10 * time.Second)
		for {
			cfg, err := fetch(t, s.tftp, moved)
			if err == nil && strings.Contains(string(cfg), want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the move, %s through %s: %q, %v; want %q", moved, s.name, cfg, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !slices.Contains(b.own(t), moved) {
		t.Errorf("b holds no root for %s after the move", moved)
	}
	if !slices.Contains(a.own(t), moved) {
		t.Errorf("a dropped %s's record on the move: its layer is kept until released", moved)
	}

	// reset and release run on b act on a's node, on a.
	target := a.own(t)[1]
	marker := filepath.Join(a.nodes, target, "written-by-node")
	testenv.WriteFile(t, marker, "data\n")
	if _, errOut, code := run(t, "reset", "-c", b.cfg, target); code != 7 || !strings.Contains(errOut, "on a, which owns it") {
		t.Errorf("reset of a's node from b, just booted: exit %d, want 7 from a: %s", code, errOut)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("a refused reset changed the root: %v", err)
	}
	if out, errOut, code := run(t, "reset", "-c", b.cfg, "-force", target); code != 0 {
		t.Fatalf("reset -force of a's node from b: exit %d: %s %s", code, out, errOut)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("after the reset from b, a's root of %s still has the node's file: %v", target, err)
	}
	if out, errOut, code := run(t, "release", "-c", b.cfg, "-force", target); code != 0 {
		t.Fatalf("release -force of a's node from b: exit %d: %s %s", code, out, errOut)
	}
	if overlayMountsUnder(t, a.nodes)[filepath.Join(a.nodes, target)] != 0 {
		t.Errorf("after the release from b, a still mounts %s", target)
	}
	if _, err := fetch(t, b.tftp, target); err != nil { // its next boot brings it back, on a
		t.Fatal(err)
	}

	// One member of three down: nothing changes.
	e.Stop(t, 0)
	check(fetchAll(65, 8))

	// All down: known nodes are served by both, from memory.
	e.Stop(t, 1)
	e.Stop(t, 2)
	check(fetchAll(1, 8))
	newName, _ := hexNode(200)
	for _, s := range servers {
		if cfg, err := fetch(t, s.tftp, newName); err == nil {
			t.Errorf("a new node was served by %s with etcd down: %q", s.name, cfg)
		}
		s.d.waitLog(t, "etcd unreachable")
	}
	for _, s := range servers {
		if slices.Contains(s.own(t), newName) {
			t.Errorf("%s made a root for a new node with etcd down", s.name)
		}
	}
	// b restarted while etcd is down starts, and serves its own nodes.
	if err := b.d.stop(t); err != nil {
		t.Fatal(err)
	}
	b.d = b.start()
	own := b.own(t)[0]
	if cfg, err := fetch(t, b.tftp, own); err != nil || !strings.Contains(string(cfg), "nfsroot="+b.addr+":") {
		t.Errorf("b restarted with etcd down: its node %s: %q, %v", own, cfg, err)
	}

	// etcd back: the new node is claimed by one server.
	for i := range 3 {
		e.Start(t, i)
	}
	e.WaitHealthy(t)
	deadline := time.Now().Add(30 * time.Second)
	var again []got
	for {
		var err error
		again = again[:0]
		for _, s := range servers {
			var cfg []byte
			if cfg, err = fetch(t, s.tftp, newName); err != nil {
				break
			}
			again = append(again, got{newName, s.name, cfg})
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd back for 30 s, the new node still not served: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	check(append(again, fetchAll(1, 72)...))
	for _, s := range servers {
		s.d.waitLog(t, "etcd answers again")
	}
	all := map[string]bool{}
	for _, s := range servers {
		for _, n := range s.own(t) {
			all[n] = true
		}
	}
	if len(all) != 64+8+1 {
		t.Errorf("%d nodes with roots, want 73: %v", len(all), slices.Sorted(maps.Keys(all)))
	}
}

// TestClusterInstall: `pxebootfs install` on one server puts the node in
// install mode on every server (one token); the installer's callbacks
// reach the other server and are checked against that token; then both
// serve the local boot. With etcd down, a callback is answered 503 and
// changes nothing; with etcd back, it succeeds.
func TestClusterInstall(t *testing.T) {
	testenv.RequireTool(t, "curl")
	e := testenv.StartEtcd(t, 1)
	prefix := fmt.Sprintf("/pxebootfs-test-install-%d/", os.Getpid())
	servers := map[string]*clusterServer{}
	bases := map[string]string{}
	for _, name := range []string{"a", "b"} {
		port := strconv.Itoa(freeLoopbackPort(t))
		bases[name] = "http://127.0.0.1:" + port
		s := newClusterServerConfig(t, e, prefix, name, "10.99.0."+map[string]string{"a": "1", "b": "2"}[name], "127.0.0.0/24",
			"install_template = install.template\ncallback_listen = 127.0.0.1:"+port+"\ncallback_url = "+bases[name]+"\n",
			map[string]string{"install.template": installTemplate})
		servers[name] = s
	}
	a, b := servers["a"], servers["b"]
	const n1, ip1 = "7F00000B", "127.0.0.11"
	const n2, ip2 = "7F00000C", "127.0.0.12"
	for _, n := range []string{n1, n2} {
		if _, err := fetch(t, a.tftp, n); err != nil {
			t.Fatal(err)
		}
	}
	installConfig := func(s *clusterServer, n string) (state, url, token string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := fetch(t, s.tftp, n)
			if err != nil {
				t.Fatal(err)
			}
			if m := installLine.FindStringSubmatch(string(got)); m != nil {
				return m[1], m[2], m[3]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s through %s: not an install config: %q", n, s.name, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if out, errOut, code := run(t, "install", "-c", a.cfg, ip1, ip2); code != 0 {
		t.Fatalf("install on a: exit %d: %s %s", code, out, errOut)
	}
	stA, urlA, tokA := installConfig(a, n1)
	stB, urlB, tokB := installConfig(b, n1)
	if stA != "install" || stB != "install" || tokA != tokB || len(tokA) != 32 {
		t.Fatalf("install configs: a %s %s, b %s %s: want one token in install state on both", stA, tokA, stB, tokB)
	}
	if urlA != bases["a"]+"/v1/install/"+n1 || urlB != bases["b"]+"/v1/install/"+n1 {
		t.Errorf("callback URLs %s, %s: each server names its own", urlA, urlB)
	}
	// The installer, served by a, calls b.
	if code := curlFrom(t, ip1, "GET", bases["b"]+"/v1/install/"+n1+"/started?token="+tokA, nil); code != 200 {
		t.Fatalf("started at b: %d", code)
	}
	if code := curlFrom(t, ip1, "GET", bases["b"]+"/v1/install/"+n1+"/done?token=0123456789abcdef0123456789abcdef", nil); code != 403 {
		t.Errorf("done with a wrong token at b: %d, want 403", code)
	}
	if code := curlFrom(t, ip1, "GET", bases["a"]+"/v1/install/"+n1+"/done?token="+tokA, nil); code != 200 {
		t.Fatalf("done at a: %d", code)
	}
	for _, s := range []*clusterServer{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := fetch(t, s.tftp, n1)
			if err == nil && strings.Contains(string(got), "LOCALBOOT 0") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after done, %s through %s: %q, %v; want the local boot", n1, s.name, got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// etcd down: a callback is 503 and changes nothing; back: it works.
	_, _, tok2 := installConfig(b, n2)
	e.Stop(t, 0)
	if code := curlFrom(t, ip2, "GET", bases["b"]+"/v1/install/"+n2+"/done?token="+tok2, nil); code != 503 {
		t.Errorf("done with etcd down: %d, want 503", code)
	}
	if st, _, _ := installConfig(a, n2); st != "install" {
		t.Errorf("after a refused callback, %s is in state %s", n2, st)
	}
	e.Start(t, 0)
	e.WaitHealthy(t)
	deadline := time.Now().Add(20 * time.Second)
	for curlFrom(t, ip2, "GET", bases["b"]+"/v1/install/"+n2+"/done?token="+tok2, nil) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("done still refused 20 s after etcd came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterRoots: a root generation imported (and made current) on one
// server is imported by the other's daemon from the same source and made
// current there once complete; a node pinned to the old generation keeps
// it; `root use` on the other server rolls both back; `root list` shows
// each server's state.
func TestClusterRoots(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	prefix := fmt.Sprintf("/pxebootfs-test-roots-%d/", os.Getpid())
	servers := map[string]*clusterServer{}
	for _, name := range []string{"a", "b"} {
		roots := filepath.Join(t.TempDir(), "roots")
		unsealOnCleanup(t, roots)
		servers[name] = newClusterServerConfig(t, e, prefix, name, "10.99.0."+map[string]string{"a": "1", "b": "2"}[name],
			"192.168.0.0/16, 10.0.0.0/8", "roots_dir = "+roots+"\nroot = r\n", nil)
	}
	a, b := servers["a"], servers["b"]
	tree := func(content string) string {
		dir := t.TempDir()
		for _, d := range []string{"etc", "sbin"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		testenv.WriteFile(t, filepath.Join(dir, "etc", "release"), content)
		if err := os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	genRE := regexp.MustCompile(`gen=r/([0-9a-f]{12})`)
	// genOf fetches node n through s until its config names a generation
	// of r, and returns it.
	genOf := func(s *clusterServer, i int, want string) string {
		t.Helper()
		name, _ := hexNode(i)
		deadline := time.Now().Add(30 * time.Second)
		for {
			cfg, err := fetch(t, s.tftp, name)
			if m := genRE.FindStringSubmatch(string(cfg)); err == nil && m != nil && (want == "" || m[1] == want) {
				return m[1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s through %s: %q, %v; want generation %q of r", name, s.name, cfg, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	importOn := func(s *clusterServer, dir string) string {
		t.Helper()
		out, errOut, code := run(t, "root", "import", "-c", s.cfg, "r", dir)
		if code != 0 {
			t.Fatalf("root import on %s: exit %d: %s %s", s.name, code, out, errOut)
		}
		m := regexp.MustCompile(`generation ([0-9a-f]{12})`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("root import printed %q", out)
		}
		return m[1]
	}

	gen1 := importOn(a, tree("one\n"))
	// b imports it itself: a new node of b's gets gen1.
	if g := genOf(b, 1, gen1); g != gen1 {
		t.Fatal(g)
	}
	gen2 := importOn(a, tree("two\n"))
	if gen2 == gen1 {
		t.Fatal("two trees, one generation")
	}
	if g := genOf(b, 2, gen2); g != gen2 {
		t.Fatal(g)
	}
	// Node 1 (b's) keeps gen1, through both servers.
	for _, s := range []*clusterServer{a, b} {
		if g := genOf(s, 1, ""); g != gen1 {
			t.Errorf("node 1 through %s: generation %s, want its pinned %s", s.name, g, gen1)
		}
	}
	if data, err := os.ReadFile(filepath.Join(b.nodes, "0A010002", "etc", "release")); err != nil || string(data) != "two\n" {
		t.Errorf("node 2's root on b: %q, %v; want gen2's file", data, err)
	}
	// Roll back from b: a follows.
	if out, errOut, code := run(t, "root", "use", "-c", b.cfg, "r", gen1); code != 0 {
		t.Fatalf("root use on b: exit %d: %s %s", code, out, errOut)
	}
	if g := genOf(a, 3, gen1); g != gen1 {
		t.Fatal(g)
	}
	out, errOut, code := run(t, "root", "list", "-c", a.cfg)
	if code != 0 {
		t.Fatalf("root list: exit %d: %s", code, errOut)
	}
	for _, srv := range []string{"a", "b"} {
		if !regexp.MustCompile(`(?m)^r\s+` + gen1 + `\s+` + srv + `\s+` + gen1 + `\s+-\s+-\s*$`).MatchString(out) {
			t.Errorf("root list on a has no line of %s serving %s:\n%s", srv, gen1, out)
		}
	}
}

// TestClusterImages: a boot image version imported on one server is
// imported by the other's daemon from the same sources (checked against
// the same sha256) and made current; `image use` on the other rolls both
// back.
func TestClusterImages(t *testing.T) {
	e := testenv.StartEtcd(t, 1)
	prefix := fmt.Sprintf("/pxebootfs-test-images-%d/", os.Getpid())
	var servers []*clusterServer
	for i, name := range []string{"a", "b"} {
		servers = append(servers, newClusterServerConfig(t, e, prefix, name, fmt.Sprintf("10.99.0.%d", i+1),
			"192.168.0.0/16, 10.0.0.0/8", "tftp_root = ../tftpboot\n", nil))
	}
	a, b := servers[0], servers[1]
	kernel := func(content string) string {
		p := filepath.Join(t.TempDir(), "vmlinuz")
		testenv.WriteFile(t, p, content)
		return p
	}
	current := regexp.MustCompile(`(?m)^k\s+([0-9a-f]+)\s+\*`)
	// waitCurrent waits until s's `image list` marks version v of k current.
	waitCurrent := func(s *clusterServer, v string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _, code := run(t, "image", "list", "-c", s.cfg)
			if m := current.FindStringSubmatch(out); code == 0 && m != nil && m[1] == v {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: image k's current version is not %s after 30 s:\n%s", s.name, v, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	importOn := func(s *clusterServer, src string) string {
		t.Helper()
		out, errOut, code := run(t, "image", "import", "-c", s.cfg, "k", "vmlinuz="+src)
		if code != 0 {
			t.Fatalf("image import on %s: exit %d: %s %s", s.name, code, out, errOut)
		}
		m := regexp.MustCompile(`version ([0-9a-f]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("image import printed %q", out)
		}
		return m[1]
	}
	v1 := importOn(a, kernel("kernel one\n"))
	waitCurrent(b, v1)
	v2 := importOn(a, kernel("kernel two\n"))
	waitCurrent(b, v2)
	if out, errOut, code := run(t, "image", "use", "-c", b.cfg, "k", v1); code != 0 {
		t.Fatalf("image use on b: exit %d: %s %s", code, out, errOut)
	}
	waitCurrent(a, v1)
}
