package testenv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// tftpdStartAttempts bounds retries when the free port we picked was
	// taken by someone else before in.tftpd could bind it.
	tftpdStartAttempts = 5
	// tftpdReadyTimeout is generous: the machine is shared and busy.
	tftpdReadyTimeout = 15 * time.Second
	// tftpdProbeInterval is how long each readiness probe waits for an answer.
	tftpdProbeInterval = 100 * time.Millisecond
	// tftpdStopTimeout is how long SIGTERM gets before SIGKILL.
	tftpdStopTimeout = 5 * time.Second
	// tftpdProbeName is a name no test serves: the ERROR it draws proves the
	// server answers.
	tftpdProbeName = ".pxebootfs-testenv-probe-does-not-exist"
)

// tftpdVersion runs "in.tftpd -V" once: Debian's atftpd can also install an
// in.tftpd, and its options differ.
var tftpdVersion = sync.OnceValues(func() (string, error) {
	bin, err := lookTool("in.tftpd")
	if err != nil {
		return "", fmt.Errorf("tftpd-hpa's in.tftpd is not installed (apt-get install tftpd-hpa): %w", err)
	}
	cmd := exec.Command(bin, "-V")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", cmd, err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte("tftp-hpa")) {
		return "", fmt.Errorf("%s is not tftpd-hpa: %s", bin, bytes.TrimSpace(out))
	}
	return bin, nil
})

// TFTPDAvailable reports why StartTFTPD cannot run here, or nil if it can
// (not counting root, which StartTFTPD also needs).
func TFTPDAvailable() error {
	_, err := tftpdVersion()
	return err
}

// StartTFTPD starts a real tftpd-hpa serving root (chrooted, as Debian runs
// it, so pxelinux-style relative names work) on a free UDP port of
// 127.0.0.1, waits until it answers, and returns its "127.0.0.1:PORT". It
// skips the test (see Skip) without root or without tftpd-hpa. The server
// is stopped, with every child it forked, when the test ends.
//
// Like a stock installation it runs as user tftp (or nobody) without -p, so
// it serves only world-readable files and needs every directory up to root
// to be searchable: root itself, and directories the test made under the
// temp dir (t.TempDir makes them 0700), get o+rx.
//
// tftpd-hpa logs only to syslog, and its per-request children reconnect to
// /dev/log after their chroot, so while it runs (and only if root/dev does
// not exist already) a socket at root/dev/log collects its messages; they
// are logged with t.Log if the test fails.
func StartTFTPD(t testing.TB, root string) (addr string) {
	t.Helper()
	bin, err := tftpdVersion()
	if err != nil {
		Skip(t, err.Error())
	}
	if os.Geteuid() != 0 {
		Skip(t, "in.tftpd needs root to chroot and switch to its user")
	}
	root, err = filepath.Abs(root)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		t.Fatalf("tftpd root %s: %v", root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("tftpd root %s is not a directory (%v)", root, err)
	}
	runAs := "nobody"
	if _, err := user.Lookup("tftp"); err == nil {
		runAs = "tftp"
	}
	makeTraversable(t, root, runAs)

	logs := &logBuffer{}
	capture := captureSyslog(root, logs)
	var errs []error
	for range tftpdStartAttempts {
		srv, err := startTFTPD(bin, runAs, root, FreeUDPPort(t), logs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.Cleanup(func() {
			if err := srv.stop(); err != nil {
				t.Errorf("stop in.tftpd on %s: %v", srv.addr, err)
			}
			if err := capture.close(); err != nil {
				t.Errorf("remove tftpd log socket: %v", err)
			}
			if t.Failed() {
				t.Logf("in.tftpd on %s logged:\n%s", srv.addr, logs)
			}
		})
		return srv.addr.String()
	}
	if err := capture.close(); err != nil {
		t.Errorf("remove tftpd log socket: %v", err)
	}
	t.Fatalf("start in.tftpd (%d attempts): %v\nin.tftpd logged:\n%s", tftpdStartAttempts, errors.Join(errs...), logs)
	return ""
}

// tftpd is one running in.tftpd, leader of its own process group so its
// per-request children can be stopped with it.
type tftpd struct {
	cmd     *exec.Cmd
	addr    netip.AddrPort
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

func startTFTPD(bin, runAs, root string, port int, logs *logBuffer) (*tftpd, error) {
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	s, err := launchTFTPD(exec.Command(bin, tftpdArgs(addr, runAs, root)...), addr, logs)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		if stopErr := s.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("%s: %w", s.cmd, err)
	}
	return s, nil
}

// tftpdArgs are in.tftpd's arguments to serve root on addr as runAs, in
// the foreground, logging every request.
func tftpdArgs(addr netip.AddrPort, runAs, root string) []string {
	return []string{"-L", "-a", addr.String(), "-s", "-vvv", "-u", runAs, root}
}

// launchTFTPD starts cmd, an in.tftpd serving on addr, as the leader of
// its own process group (its per-request children stop with it), killed
// if this process dies first, its output going to logs.
func launchTFTPD(cmd *exec.Cmd, addr netip.AddrPort, logs *logBuffer) (*tftpd, error) {
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Children inherit the output pipe; do not let one that outlives the
	// parent hold up Wait.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	s := &tftpd{cmd: cmd, addr: addr, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady waits until the server answers a request, and makes sure the
// answer came from our process: if someone took the port first, in.tftpd
// exits, and the other owner's answer must not count.
func (s *tftpd) waitReady() error {
	deadline := time.Now().Add(tftpdReadyTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("exited before answering (port taken?): %v", s.waitErr)
		default:
		}
		answered, err := probeTFTP(s.addr, tftpdProbeInterval)
		if err != nil {
			return err
		}
		if answered {
			owned, err := ownsUDPPort(s.cmd.Process.Pid, s.addr.Port())
			if err != nil {
				return err
			}
			if !owned {
				return fmt.Errorf("another process answers on %s", s.addr)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %s", s.addr, tftpdReadyTimeout)
		}
	}
}

// stop sends SIGTERM to the whole process group (a child may still be
// serving a client that went away), then SIGKILL to whatever is left.
func (s *tftpd) stop() error {
	pgid := s.cmd.Process.Pid
	signalGroup(pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(tftpdStopTimeout):
		signalGroup(pgid, syscall.SIGKILL)
		<-s.exited
	}
	if waitGroupGone(pgid, tftpdStopTimeout) == nil {
		return nil
	}
	signalGroup(pgid, syscall.SIGKILL)
	return waitGroupGone(pgid, tftpdStopTimeout)
}

func signalGroup(pgid int, sig syscall.Signal) {
	// ESRCH just means everyone is gone already.
	_ = syscall.Kill(-pgid, sig)
}

// waitGroupGone waits until no live process is left in the group. Zombies do
// not count: orphaned children are reaped by init, whenever it gets to it.
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := groupMembers(pgid)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of group %d still running after %s", pids, pgid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupMembers lists the live (non-zombie) processes of process group pgid.
func groupMembers(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and
		// parentheses, so split after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// probeTFTP sends one read request for a name nobody serves and reports
// whether any TFTP packet came back within wait.
func probeTFTP(server netip.AddrPort, wait time.Duration) (bool, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false, fmt.Errorf("probe: listen: %w", err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(rrqPacket(tftpdProbeName, GetOptions{}), server); err != nil {
		return false, fmt.Errorf("probe: send to %s: %w", server, err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4+maxBlksize)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			return false, fmt.Errorf("probe: receive: %w", err)
		}
		if from.Addr().Unmap() != server.Addr() || n < 4 {
			continue
		}
		if binary.BigEndian.Uint16(buf) != opERROR {
			// Somehow the name exists: end the transfer we started.
			conn.WriteToUDPAddrPort(errorPacket(errCodeNotDefined, "probe done"), from)
		}
		return true, nil
	}
}

// ownsUDPPort reports whether process pid holds a socket bound to UDP port
// (IPv4) on this network namespace.
func ownsUDPPort(pid int, port uint16) (bool, error) {
	// The process's own view: it may be in another network namespace.
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "net", "udp"))
	if err != nil {
		return false, fmt.Errorf("list UDP sockets: %w", err)
	}
	defer f.Close()
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode"
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && uint16(p) == port {
			inodes["socket:["+fields[9]+"]"] = true
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read /proc/net/udp: %w", err)
	}
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, fmt.Errorf("list descriptors of %d: %w", pid, err)
	}
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[link] {
			return true, nil
		}
	}
	return false, nil
}

// makeTraversable gives o+rx to root and to its ancestors that the test made
// under the temp dir, so the server's unprivileged user can reach root. Other
// ancestors are left alone, with a note in the test log if they look closed.
func makeTraversable(t testing.TB, root, runAs string) {
	t.Helper()
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		tmp = filepath.Clean(os.TempDir())
	}
	for dir := root; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatalf("make %s reachable for in.tftpd: %v", root, err)
		}
		perm := fi.Mode().Perm()
		if perm&0o001 == 0 || (dir == root && perm&0o005 != 0o005) {
			st, _ := fi.Sys().(*syscall.Stat_t)
			ours := st != nil && st.Uid == uint32(os.Geteuid())
			if dir == root || (ours && strings.HasPrefix(dir, tmp+string(filepath.Separator))) {
				if err := os.Chmod(dir, perm|0o055); err != nil {
					t.Fatalf("make %s reachable for in.tftpd: %v", root, err)
				}
			} else {
				t.Logf("note: %s is mode %v; in.tftpd running as %s may not reach %s", dir, perm, runAs, root)
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			return
		}
	}
}

// syslogCapture is a datagram socket at root/dev/log collecting what the
// chrooted tftpd children send to syslog.
type syslogCapture struct {
	conn *net.UnixConn
	dir  string
	done chan struct{}
}

// captureSyslog sets up root/dev/log, or returns nil when it cannot (root/dev
// exists, or the path is too long for a socket): logs are a debugging aid.
func captureSyslog(root string, logs *logBuffer) *syslogCapture {
	dir := filepath.Join(root, "dev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil
	}
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err == nil {
		// The children write as the unprivileged user; umask may have
		// narrowed both modes.
		err = errors.Join(os.Chmod(dir, 0o755), os.Chmod(sock, 0o666))
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		os.RemoveAll(dir)
		return nil
	}
	c := &syslogCapture{conn: conn, dir: dir, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 8192)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			logs.Write(append(bytes.TrimRight(buf[:n], "\n"), '\n'))
		}
	}()
	return c
}

// close stops collecting and removes the socket and the dev directory.
func (c *syslogCapture) close() error {
	if c == nil {
		return nil
	}
	c.conn.Close()
	<-c.done
	return errors.Join(os.Remove(filepath.Join(c.dir, "log")), os.Remove(c.dir))
}

// logBuffer collects the server's output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 {
		return "(nothing)"
	}
	return b.buf.String()
}

// RequireTool returns the path of the named program, or skips the test (see
// Skip) when it is not installed. Besides $PATH it looks in /usr/sbin and
// /sbin, where root-only tools such as in.tftpd live but which a user's PATH
// often lacks.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := lookTool(name)
	if err != nil {
		Skip(t, fmt.Sprintf("%s is not installed: %v", name, err))
	}
	return path
}

func lookTool(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	if !strings.ContainsRune(name, filepath.Separator) {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
				return p, nil
			}
		}
	}
	return "", err
}

// FreeUDPPort returns a UDP port of 127.0.0.1 that was free a moment ago.
// Someone else may take it before the caller binds it; callers that start a
// server on it should retry on a bind failure.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free UDP port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port of 127.0.0.1 that was free a moment ago;
// see FreeUDPPort for the race.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free TCP port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
