package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A boot network for real PXE guests, inside a network namespace the test
// made: a bridge at BootServerAddr, one tap device per guest enslaved to
// it, dnsmasq for DHCP only (each guest's MAC gets a fixed address and
// pxelinux.0 from BootServerAddr), and tftpd-hpa on BootServerAddr:69.
// QEMU runs in the namespace too (StartQEMUIn), so the host's network is
// never touched; the NFS server a guest mounts from (Ganesha) runs in the
// same namespace and listens there on every address.

// BootServerAddr is the boot server's address on the boot network (the
// bridge's); guests get addresses of the same /24.
var BootServerAddr = netip.MustParseAddr("10.77.0.1")

const bootBridge = "pxbr0"

// BootNet is a running boot network.
type BootNet struct {
	NS   *NetNS
	taps int
}

// StartBootNet makes the bridge in ns, starts dnsmasq (DHCP: guests maps
// each MAC to its address) and tftpd-hpa serving tftpRoot.
func StartBootNet(t testing.TB, ns *NetNS, tftpRoot string, guests map[string]netip.Addr) *BootNet {
	t.Helper()
	return StartBootNetFiles(t, ns, tftpRoot, guests, nil)
}

// StartBootNetFiles is StartBootNet where bootFiles gives some MACs
// another boot file than pxelinux.0 (e.g. an http:// URL, which iPXE
// fetches itself).
func StartBootNetFiles(t testing.TB, ns *NetNS, tftpRoot string, guests map[string]netip.Addr, bootFiles map[string]string) *BootNet {
	t.Helper()
	dnsmasq := RequireTool(t, "dnsmasq")
	tftpdBin, err := tftpdVersion()
	if err != nil {
		Skip(t, err.Error())
	}
	runTool(t, "ip", "-n", ns.Name, "link", "add", bootBridge, "type", "bridge")
	runTool(t, "ip", "-n", ns.Name, "addr", "add", netip.PrefixFrom(BootServerAddr, 24).String(), "dev", bootBridge)
	runTool(t, "ip", "-n", ns.Name, "link", "set", bootBridge, "up")

	dir := t.TempDir()
	args := []string{"--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root", "--group=root",
		"--interface=" + bootBridge, "--bind-interfaces", "--log-dhcp",
		"--dhcp-range=" + bootPrefix(100) + "," + bootPrefix(200) + ",255.255.255.0,1h",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file="}
	// Every guest is tagged with its boot file, so that no untagged
	// default competes with a guest's own.
	files := map[string]string{}
	for mac, ip := range guests {
		file := "pxelinux.0"
		if f, ok := bootFiles[mac]; ok {
			file = f
		}
		tag, ok := files[file]
		if !ok {
			tag = fmt.Sprintf("boot%d", len(files))
			files[file] = tag
			args = append(args, "--dhcp-boot=tag:"+tag+","+file+",,"+BootServerAddr.String())
		}
		args = append(args, "--dhcp-host="+mac+","+ip.String()+",set:"+tag)
	}
	startDaemon(t, "dnsmasq", ns.Command(context.Background(), dnsmasq, args...))

	runAs := "nobody"
	if _, err := user.Lookup("tftp"); err == nil {
		runAs = "tftp"
	}
	makeTraversable(t, tftpRoot, runAs)
	logs := &logBuffer{}
	addr := netip.AddrPortFrom(BootServerAddr, 69)
	srv, err := launchTFTPD(ns.Command(context.Background(), tftpdBin, tftpdArgs(addr, runAs, tftpRoot)...), addr, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Errorf("stop in.tftpd in %s: %v", ns.Name, err)
		}
		if t.Failed() {
			t.Logf("in.tftpd on %s logged:\n%s", addr, logs)
		}
	})
	// Bound is ready: tftpd-hpa reads requests from its socket as soon as
	// it has one, and from the host a probe cannot reach the namespace.
	deadline := time.Now().Add(tftpdReadyTimeout)
	for {
		ok, err := ownsUDPPort(srv.cmd.Process.Pid, 69)
		if ok {
			break
		}
		select {
		case <-srv.exited:
			t.Fatalf("in.tftpd in %s exited: %v\n%s", ns.Name, srv.waitErr, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("in.tftpd in %s not bound to %s after %s (%v)", ns.Name, addr, tftpdReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &BootNet{NS: ns}
}

// bootPrefix is the address with last byte n on the boot network.
func bootPrefix(n byte) string {
	a := BootServerAddr.As4()
	a[3] = n
	return netip.AddrFrom4(a).String()
}

// BootAddr is the boot network's address with last byte n, for guests.
func BootAddr(n byte) netip.Addr { return netip.MustParseAddr(bootPrefix(n)) }

// Tap makes a new tap device on the bridge and returns its name, for
// QEMU's -netdev tap,ifname=NAME.
func (b *BootNet) Tap(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("pxtap%d", b.taps)
	b.taps++
	runTool(t, "ip", "-n", b.NS.Name, "tuntap", "add", "dev", name, "mode", "tap")
	runTool(t, "ip", "-n", b.NS.Name, "link", "set", name, "master", bootBridge)
	runTool(t, "ip", "-n", b.NS.Name, "link", "set", name, "up")
	return name
}

// PXEGuestArgs are QEMU's arguments for a BIOS guest that PXE-boots from
// the boot network through tap with mac: QEMU's e1000 with Debian's iPXE
// ROM, network boot only.
func PXEGuestArgs(tap, mac string) []string {
	return []string{"-boot", "n", "-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "e1000,netdev=n0,mac=" + mac + ",romfile=" + IPXEROM}
}

// InstallPXELinux copies pxelinux.0 and ldlinux.c32 (Debian's pxelinux,
// syslinux-common) into a TFTP root, world-readable.
func InstallPXELinux(t testing.TB, root string) {
	t.Helper()
	RequireFile(t, PXELinux, "pxelinux")
	RequireFile(t, LDLinux, "syslinux-common")
	for _, f := range []string{PXELinux, LDLinux} {
		if err := copyFile(f, filepath.Join(root, filepath.Base(f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// consoleLines returns the lines of console holding marker, in order.
func consoleLines(console, marker string) []string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, marker) {
			out = append(out, l)
		}
	}
	return out
}

// Lines returns the guest's console lines holding marker.
func (q *QEMU) Lines(marker string) []string { return consoleLines(q.Console(), marker) }

// Wait waits until the guest exits (it powers off), failing the test after
// timeout.
func (q *QEMU) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-q.done:
	case <-time.After(timeout):
		t.Fatalf("the guest did not power off within %v", timeout)
	}
}

// Exited reports whether the guest has exited.
func (q *QEMU) Exited() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}
