package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Real NFS-Ganesha servers for tests.
//
// The kernel here has no NFS server or client, so NFS is tested end to end
// with NFS-Ganesha (userspace) and libnfs's command-line clients. Ganesha
// listens on *:2049 whatever its configuration says, so it runs in a network
// namespace of its own (NS), reached from inside it at 127.0.0.1 (clients
// there connect from 127.0.0.1) and from a second namespace (Client) over a
// veth pair, from ClientAddr to ServerAddr. Those addresses exist only
// inside the two namespaces; the host's network is never touched.
//
// Daemons enter the network namespace with nsenter --net, not
// ip netns exec: the latter also gives them a mount namespace of their own,
// frozen at start, and Ganesha must see the FUSE and overlay mounts the test
// makes later. They share the test binary's mount namespace, which
// IsolateNFSState has made private; in it, /run is replaced by a tmpfs while
// Ganesha tests run, because rpcbind's socket and lock are fixed paths in
// /run (and Ganesha registers through that socket, whatever its network
// namespace): test binaries running at once, or an rpcbind on the host,
// would otherwise meet there. The namespaces' names live in that private
// /run too, so they disappear with the test binary even if it is killed.
//
// Ganesha's D-Bus export manager is on a private dbus-daemon (Bus), and its
// state (recovery directory, log, pid file) is in a temporary directory.

// Addresses of the veth pair between a GaneshaServer's namespaces, from the
// range RFC 2544 reserves for tests.
var (
	GaneshaServerAddr = netip.MustParseAddr("198.18.0.1")
	GaneshaClientAddr = netip.MustParseAddr("198.18.0.2")
	ganeshaLinkBits   = 24
)

const (
	// daemonReadyTimeout is generous: the machine is shared and busy.
	daemonReadyTimeout = 30 * time.Second
	// daemonStopTimeout is how long SIGTERM gets before SIGKILL.
	daemonStopTimeout = 20 * time.Second
	// nfsClientTimeout bounds one libnfs command.
	nfsClientTimeout = 60 * time.Second
	// rpcbindSocket is compiled into rpcbind and libtirpc.
	rpcbindSocket = "/run/rpcbind.sock"
)

// ganeshaTools are the programs a GaneshaServer and its clients need.
var ganeshaTools = []string{"ganesha.nfsd", "rpcbind", "dbus-daemon", "ip", "nsenter", "unshare", "nfs-ls", "nfs-cat", "nfs-cp"}

// RequireGanesha skips (or fails, see DisallowSkipEnv) unless the test can
// run a GaneshaServer: root, NFS state isolated by IsolateNFSState (which
// also gives the private mount namespace /run is replaced in), and the
// tools installed (nfs-ganesha, nfs-ganesha-vfs, rpcbind, dbus,
// libnfs-utils, iproute2, util-linux).
func RequireGanesha(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireNFSIsolation(t)
	for _, tool := range ganeshaTools {
		RequireTool(t, tool)
	}
}

// privateRun counts the users of the tmpfs over /run.
var privateRun struct {
	sync.Mutex
	refs int
}

// usePrivateRun puts a tmpfs over /run in this process's mount namespace for
// as long as a test uses it, and refuses to if that namespace is the host's.
func usePrivateRun(t testing.TB) {
	t.Helper()
	RequireNFSIsolation(t)
	// IsolateNFSState re-executed this binary into a new mount namespace:
	// its parent must be in another one. (PID 1's may not be readable.)
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("compare mount namespaces: %v", err)
	}
	if self == parent {
		t.Fatalf("refusing to replace /run: this process shares its parent's mount namespace (%s)", self)
	}
	privateRun.Lock()
	defer privateRun.Unlock()
	if privateRun.refs == 0 {
		if err := mountRetry("pxebootfs-test-run", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			t.Fatalf("mount a private tmpfs over /run: %v", err)
		}
		if err := os.Mkdir("/run/lock", 0o1777); err != nil {
			t.Fatalf("private /run: %v", err)
		}
	}
	privateRun.refs++
	t.Cleanup(func() {
		privateRun.Lock()
		defer privateRun.Unlock()
		privateRun.refs--
		if privateRun.refs == 0 {
			if err := syscall.Unmount("/run", syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount the private /run: %v", err)
			}
		}
	})
}

// NetNS is a network namespace made for a test, with its loopback up.
type NetNS struct {
	Name string
	Path string // /run/netns/NAME, for nsenter --net
}

var netnsSeq atomic.Int64

// NewNetNS makes a network namespace named pxebootfs-test-PID-N and deletes
// it when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	usePrivateRun(t)
	n := &NetNS{Name: fmt.Sprintf("pxebootfs-test-%d-%d", os.Getpid(), netnsSeq.Add(1))}
	n.Path = filepath.Join("/run/netns", n.Name)
	runTool(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		if out, err := exec.Command(toolPath("ip"), "netns", "delete", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
		}
	})
	runTool(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Command returns cmd run inside n's network namespace (and only that: it
// shares the test's mount namespace).
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, toolPath("nsenter"), append([]string{"--net=" + n.Path, "--", toolPath(name)}, args...)...)
}

// toolPath resolves name as RequireTool does (the sbin directories too,
// which a test runner's PATH may lack), or leaves it for exec to report.
func toolPath(name string) string {
	if p, err := lookTool(name); err == nil {
		return p
	}
	return name
}

// linkNetNS connects a and b with a veth pair, aAddr and bAddr on one
// subnet.
func linkNetNS(t testing.TB, a, b *NetNS, aAddr, bAddr netip.Prefix) {
	t.Helper()
	// Interface names are per namespace; these never meet the host's.
	runTool(t, "ip", "-n", a.Name, "link", "add", "pxg0", "type", "veth", "peer", "name", "pxg1", "netns", b.Name)
	runTool(t, "ip", "-n", a.Name, "addr", "add", aAddr.String(), "dev", "pxg0")
	runTool(t, "ip", "-n", b.Name, "addr", "add", bAddr.String(), "dev", "pxg1")
	runTool(t, "ip", "-n", a.Name, "link", "set", "pxg0", "up")
	runTool(t, "ip", "-n", b.Name, "link", "set", "pxg1", "up")
}

// runTool runs a setup command and fails the test with its output if it
// fails.
func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(toolPath(name), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, bytes.TrimSpace(out))
	}
}

// GaneshaServer is a running ganesha.nfsd with its own rpcbind and D-Bus,
// in network namespace NS. Only one may run per test process at a time
// (they would share rpcbind's socket).
type GaneshaServer struct {
	// NS is the server's namespace; clients in it reach the server at
	// 127.0.0.1 and connect from 127.0.0.1.
	NS *NetNS
	// Client is a second namespace; clients in it reach the server at
	// GaneshaServerAddr and connect from GaneshaClientAddr.
	Client *NetNS
	// Bus is the D-Bus address of Ganesha's export manager (ganesha_dbus).
	Bus string
	// Include is the export file Ganesha's configuration %includes
	// (ganesha_config); it starts empty.
	Include string
	// Config is Ganesha's main configuration file.
	Config string

	dir     string
	logFile string
	mu      sync.Mutex
	ganesha *daemonProc
}

var ganeshaRunning atomic.Bool

// StartGanesha starts Ganesha with an empty export file and waits until its
// D-Bus export manager answers. Everything it started is stopped and removed
// when the test ends; if the test failed, Ganesha's log is logged.
func StartGanesha(t testing.TB) *GaneshaServer {
	t.Helper()
	RequireGanesha(t)
	if !ganeshaRunning.CompareAndSwap(false, true) {
		t.Fatal("a GaneshaServer is already running in this test process")
	}
	t.Cleanup(func() { ganeshaRunning.Store(false) })

	// The D-Bus socket path must fit in sun_path: keep it short, not
	// under a long test-named temp dir.
	dir, err := os.MkdirTemp("", "pxg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &GaneshaServer{
		Bus:     "unix:path=" + filepath.Join(dir, "bus"),
		Include: filepath.Join(dir, "exports.conf"),
		Config:  filepath.Join(dir, "ganesha.conf"),
		dir:     dir,
		logFile: filepath.Join(dir, "ganesha.log"),
	}
	if err := os.Mkdir(filepath.Join(dir, "recovery"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, g.Include, "")
	writeTestFile(t, g.Config, fmt.Sprintf(`NFS_CORE_PARAM {
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Protocols = 3, 4;
}
NFS_KRB5 {
	Active_krb5 = false;
}
NFSv4 {
	# No grace period after a restart: tests restart it and go on at once.
	Graceless = true;
	RecoveryRoot = "%s";
}
%%include "%s"
`, filepath.Join(dir, "recovery"), g.Include))
	writeTestFile(t, filepath.Join(dir, "bus.conf"), fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`, filepath.Join(dir, "bus")))

	g.NS = NewNetNS(t)
	g.Client = NewNetNS(t)
	linkNetNS(t, g.NS, g.Client,
		netip.PrefixFrom(GaneshaServerAddr, ganeshaLinkBits), netip.PrefixFrom(GaneshaClientAddr, ganeshaLinkBits))

	bus := startDaemon(t, "dbus-daemon", exec.Command(toolPath("dbus-daemon"), "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork", "--nopidfile", "--nosyslog"))
	waitUnixSocket(t, bus, filepath.Join(dir, "bus"))
	// rpcbind switches to its own user, which clears the parent-death
	// signal: it runs under `unshare --fork` as init of a PID namespace
	// of its own instead, so that when that init dies with the test
	// binary, the kernel kills rpcbind too.
	rpcbindCmd := g.NS.Command(context.Background(), "unshare", "--fork", "--", toolPath("rpcbind"), "-f")
	rpcbindCmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	rpcbind := startDaemon(t, "rpcbind", rpcbindCmd)
	// The init of a PID namespace ignores SIGTERM (no handler); rpcbind
	// keeps no state worth a clean exit.
	rpcbind.stopSignal = syscall.SIGKILL
	waitUnixSocket(t, rpcbind, rpcbindSocket)

	g.Start(t)
	t.Cleanup(func() { g.Stop(t) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ganesha.nfsd log:\n%s", g.Log())
		}
	})
	return g
}

// Start starts ganesha.nfsd (again) and waits until it answers on D-Bus.
func (g *GaneshaServer) Start(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ganesha != nil {
		t.Fatal("ganesha.nfsd is already running")
	}
	cmd := g.NS.Command(context.Background(), "ganesha.nfsd", "-F", "-f", g.Config, "-L", g.logFile, "-p", filepath.Join(g.dir, "ganesha.pid"), "-N", "NIV_EVENT")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+g.Bus)
	p, err := newDaemon("ganesha.nfsd", cmd)
	if err != nil {
		t.Fatal(err)
	}
	g.ganesha = p
	if err := g.waitReady(p); err != nil {
		t.Fatalf("%v\nganesha.nfsd log:\n%s", err, g.logLocked())
	}
}

// waitReady waits until Ganesha's export manager answers ShowExports.
func (g *GaneshaServer) waitReady(p *daemonProc) error {
	ctx, cancel := context.WithTimeout(context.Background(), daemonReadyTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("ganesha.nfsd exited before answering on D-Bus: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("ganesha.nfsd did not answer on D-Bus within %s: %v", daemonReadyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
		if last = g.Call(ctx, "ShowExports"); last == nil {
			return nil
		}
	}
}

// Call calls method of Ganesha's D-Bus export manager with args, as
// pxebootfs does, for tests and benchmarks that export without it.
func (g *GaneshaServer) Call(ctx context.Context, method string, args ...any) error {
	conn, err := dbus.Connect(g.Bus, dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", g.Bus, err)
	}
	defer conn.Close()
	call := conn.Object("org.ganesha.nfsd", "/org/ganesha/nfsd/ExportMgr").
		CallWithContext(ctx, "org.ganesha.nfsd.exportmgr."+method, 0, args...)
	if call.Err != nil {
		return fmt.Errorf("%s%v on %s: %w", method, args, g.Bus, call.Err)
	}
	return nil
}

// Stop stops ganesha.nfsd (SIGTERM, then SIGKILL), leaving rpcbind and the
// bus running for a later Start. Stopping a stopped server does nothing.
func (g *GaneshaServer) Stop(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ganesha == nil {
		return
	}
	if err := g.ganesha.stop(); err != nil {
		t.Errorf("stop ganesha.nfsd: %v", err)
	}
	g.ganesha = nil
}

// Restart stops and starts ganesha.nfsd: it exports again what its
// configuration, and so the export file, says.
func (g *GaneshaServer) Restart(t testing.TB) {
	t.Helper()
	g.Stop(t)
	g.Start(t)
}

// Log returns Ganesha's log file and what it wrote to stderr.
func (g *GaneshaServer) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logLocked()
}

func (g *GaneshaServer) logLocked() string {
	data, err := os.ReadFile(g.logFile)
	if err != nil {
		data = []byte(err.Error() + "\n")
	}
	if g.ganesha != nil {
		data = append(data, g.ganesha.out.String()...)
	}
	return string(data)
}

// daemonProc is a daemon run in the foreground.
type daemonProc struct {
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error // valid once done is closed
	// stopSignal asks the daemon to exit; default SIGTERM.
	stopSignal syscall.Signal
}

func newDaemon(name string, cmd *exec.Cmd) (*daemonProc, error) {
	p := &daemonProc{name: name, cmd: cmd, out: &logBuffer{}, done: make(chan struct{}), stopSignal: syscall.SIGTERM}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// If the test binary dies (go test's timeout), the daemon must not
	// linger and keep its namespaces alive. nsenter execs the daemon, which
	// keeps the setting as long as it keeps its user: none of them is
	// set-user-ID or has file capabilities.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startDaemon starts cmd and stops it when the test ends, logging its output
// if the test failed.
func startDaemon(t testing.TB, name string, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	p, err := newDaemon(name, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// stop sends SIGTERM and waits, then SIGKILL. A daemon that had exited by
// itself is an error unless it exited cleanly.
func (p *daemonProc) stop() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s had exited: %v: %s", p.name, p.err, p.out)
	default:
	}
	p.cmd.Process.Signal(p.stopSignal)
	select {
	case <-p.done:
		return nil
	case <-time.After(daemonStopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored %v for %s; killed", p.name, p.stopSignal, daemonStopTimeout)
	}
}

// waitUnixSocket waits until path accepts connections, failing the test if
// the daemon exits first.
func waitUnixSocket(t testing.TB, p *daemonProc, path string) {
	t.Helper()
	deadline := time.Now().Add(daemonReadyTimeout)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, path, p.err, p.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s after %s: %v\n%s", p.name, path, daemonReadyTimeout, err, p.out)
		}
	}
}

func writeTestFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// NFSURL is libnfs's URL for path on server, over NFSv3 (whose MOUNT
// protocol is where Ganesha checks the client list first).
func NFSURL(server netip.Addr, path string) string {
	u := url.URL{Scheme: "nfs", Host: server.String(), Path: path, RawQuery: "version=3"}
	return u.String()
}

// nfsRun runs a libnfs client in n and returns its standard output; the
// error carries the command line and its standard error.
func (n *NetNS) nfsRun(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), nfsClientTimeout)
	defer cancel()
	cmd := n.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()+" "+stdout.String()))
	}
	return stdout.Bytes(), nil
}

// NFSList lists directory dir on server with nfs-ls from n and returns the
// entries' names.
func (n *NetNS) NFSList(t testing.TB, server netip.Addr, dir string) ([]string, error) {
	t.Helper()
	out, err := n.nfsRun(t, "nfs-ls", NFSURL(server, dir))
	if err != nil {
		return nil, err
	}
	// "drwxr-xr-x  2     0     0         4096 etc": the name is what
	// follows the fifth field.
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		names = append(names, strings.Join(f[5:], " "))
	}
	return names, nil
}

// NFSRead reads file path on server with nfs-cat from n.
func (n *NetNS) NFSRead(t testing.TB, server netip.Addr, path string) ([]byte, error) {
	t.Helper()
	return n.nfsRun(t, "nfs-cat", NFSURL(server, path))
}

// NFSCreate creates file path on server, which must not exist, with data, by
// nfs-cp from n.
func (n *NetNS) NFSCreate(t testing.TB, server netip.Addr, path string, data []byte) error {
	t.Helper()
	local := filepath.Join(t.TempDir(), "nfs-upload")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		return err
	}
	_, err := n.nfsRun(t, "nfs-cp", local, NFSURL(server, path))
	return err
}
