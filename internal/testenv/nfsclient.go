package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
	"golang.org/x/sys/unix"
)

// In-process NFSv3 clients for benchmarks: many nodes reading and writing
// their roots at once, each from an address of its own, which libnfs's
// one-process-per-file commands cannot do without measuring process starts.
//
// A node's address is what Ganesha checks against its export's client, so
// each NFSPeer is a pair of addresses: Client in the GaneshaServer's Client
// namespace and Server in its NS, with a host route in the Client namespace
// from Client to Server whose preferred source is Client. Ganesha listens on
// every address, so a connection to Server comes from Client, without
// binding a source address (go-nfs-client picks only the port). Both live in
// 198.18.0.0/15 (RFC 2544), inside the two namespaces only.

// NFSPeer is one node's address pair: it connects to Server from Client.
type NFSPeer struct {
	Server, Client netip.Addr
}

// AddPeers adds n address pairs, numbered from first, to g's namespaces
// (node i: client 198.19.H.L, server 198.18.H.L, with H = 1 + i/250 and
// L = 1 + i%250, so at most 250*254 of them).
func (g *GaneshaServer) AddPeers(t testing.TB, first, n int) []NFSPeer {
	t.Helper()
	var server, client strings.Builder
	peers := make([]NFSPeer, 0, n)
	for i := first; i < first+n; i++ {
		h, l := byte(1+i/250), byte(1+i%250)
		p := NFSPeer{Server: netip.AddrFrom4([4]byte{198, 18, h, l}), Client: netip.AddrFrom4([4]byte{198, 19, h, l})}
		peers = append(peers, p)
		fmt.Fprintf(&server, "addr add %s/32 dev pxg0\n", p.Server)
		fmt.Fprintf(&client, "addr add %s/32 dev pxg1\nroute add %s/32 dev pxg1 src %s\n", p.Client, p.Server, p.Client)
	}
	growNeighbours(t, 2*(first+n))
	// replace: idempotent, so a second AddPeers needs no memory of the first.
	ipBatch(t, g.NS, server.String()+"route replace 198.19.0.0/16 dev pxg0\n")
	ipBatch(t, g.Client, client.String())
	return peers
}

// neighbourLimits are the ARP table's garbage collection thresholds. The
// table is the kernel's, shared by every network namespace, and only the
// initial namespace has these files.
var neighbourLimits = []string{"gc_thresh1", "gc_thresh2", "gc_thresh3"}

// growNeighbours lets the ARP table hold n more entries than its default
// hard limit (1,024), past which new neighbours fail with "no route to
// host", and puts the old limits back when the test ends.
func growNeighbours(t testing.TB, n int) {
	t.Helper()
	for k, name := range neighbourLimits {
		p := "/proc/sys/net/ipv4/neigh/default/" + name
		cur, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		old, err := strconv.Atoi(strings.TrimSpace(string(cur)))
		if err != nil {
			t.Fatalf("%s: %q", p, cur)
		}
		want := old + n*(k+1)
		if err := os.WriteFile(p, []byte(strconv.Itoa(want)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(p, []byte(strconv.Itoa(old)), 0o644); err != nil {
				t.Errorf("restore %s: %v", p, err)
			}
		})
	}
}

// ipBatch runs `ip -n NS -batch -` with cmds.
func ipBatch(t testing.TB, ns *NetNS, cmds string) {
	t.Helper()
	if cmds == "" {
		return
	}
	cmd := exec.Command(toolPath("ip"), "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, bytes.TrimSpace(out))
	}
}

// PID is ganesha.nfsd's process ID (0 if it is not running), for memory
// measurements.
func (g *GaneshaServer) PID() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ganesha == nil {
		return 0
	}
	return g.ganesha.cmd.Process.Pid
}

// NFSClient is one node's NFSv3 session: its root mounted over TCP.
type NFSClient struct {
	*nfs.Target
}

// DialNFS mounts path on peer.Server from peer.Client, in ns (the
// GaneshaServer's Client namespace). Every socket is made on an OS thread
// moved into ns for the call; a socket stays in the namespace it was made in.
func DialNFS(ns *NetNS, peer NFSPeer, path string) (*NFSClient, error) {
	var c *NFSClient
	err := inNetNS(ns, func() error {
		var err error
		c, err = dialNFS(peer.Server.String(), path)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s:%s from %s: %w", peer.Server, path, peer.Client, err)
	}
	return c, nil
}

// inNetNS runs fn on this goroutine's OS thread moved into ns, then moves
// the thread back. A thread that cannot be moved back is not given back to
// the scheduler: the goroutine ends holding it, and Go ends the thread.
func inNetNS(ns *NetNS, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(ns.Path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns.Path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialNFS asks the portmapper at host for MOUNT and NFS, mounts path with
// AUTH_UNIX root and returns its target. Ports are unprivileged: Ganesha
// does not ask for privileged ones unless told to, and a benchmark with
// hundreds of clients would run out of them.
func dialNFS(host, path string) (*NFSClient, error) {
	pm, err := retryPortTaken(func() (*rpc.Portmapper, error) { return rpc.DialPortmapper("tcp", host) })
	if err != nil {
		return nil, fmt.Errorf("portmapper: %w", err)
	}
	mountPort, err1 := pm.Getport(rpc.Mapping{Prog: nfs.MountProg, Vers: nfs.MountVers, Prot: rpc.IPProtoTCP})
	nfsPort, err2 := pm.Getport(rpc.Mapping{Prog: nfs.Nfs3Prog, Vers: nfs.Nfs3Vers, Prot: rpc.IPProtoTCP})
	pm.Close()
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("portmapper: %w", err)
	}
	auth := rpc.NewAuthUnix("pxebootfs-bench", 0, 0)
	mc, err := dialRPC(host, mountPort)
	if err != nil {
		return nil, err
	}
	fh, err := mountCall(mc, auth.Auth(), path)
	mc.Close()
	if err != nil {
		return nil, err
	}
	nc, err := dialRPC(host, nfsPort)
	if err != nil {
		return nil, err
	}
	tgt, err := nfs.NewTargetWithClient(nc, auth.Auth(), fh, path, 0)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("fsinfo: %w", err)
	}
	return &NFSClient{Target: tgt}, nil
}

// dialRPC connects to host:port.
func dialRPC(host string, port int) (*rpc.Client, error) {
	addr := host + ":" + strconv.Itoa(port)
	c, err := retryPortTaken(func() (*rpc.Client, error) { return rpc.DialTCP("tcp", addr, false) })
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

// retryPortTaken calls dial again, up to 20 times, while the random source
// port go-nfs-client picked is taken.
func retryPortTaken[T any](dial func() (T, error)) (T, error) {
	var v T
	var err error
	for range 20 {
		if v, err = dial(); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return v, err
}

// mountCall is MOUNTPROC3_MNT: the file handle of path's root.
// (go-nfs-client's Mount dials the NFS service itself, from a privileged
// port and outside the namespace's thread.)
func mountCall(c *rpc.Client, auth rpc.Auth, path string) ([]byte, error) {
	type mountArgs struct {
		rpc.Header
		Dirpath string
	}
	res, err := c.Call(&mountArgs{rpc.Header{Rpcvers: 2, Prog: nfs.MountProg, Vers: nfs.MountVers, Proc: nfs.MountProc3MNT, Cred: auth, Verf: rpc.AuthNull}, path})
	if err != nil {
		return nil, fmt.Errorf("MNT %s: %w", path, err)
	}
	stat, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, fmt.Errorf("MNT %s: %w", path, err)
	}
	if stat != nfs.MNT3Ok {
		return nil, fmt.Errorf("MNT %s: status %d", path, stat)
	}
	return xdr.ReadOpaque(res)
}

// ReadFile reads path (relative to the mounted root) whole.
func (c *NFSClient) ReadFile(path string) ([]byte, error) {
	f, err := c.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// READs as large as the server takes (its rtmax), one at a time, as
	// a boot's reads of one file are.
	var data []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("read %s: no progress at %d bytes", path, len(data))
		}
	}
}

// Close ends the session (the server forgets nothing: NFSv3 is stateless).
func (c *NFSClient) Close() { c.Client.Close() }
