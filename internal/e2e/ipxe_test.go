package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// iPXE over HTTP, through a stock web server: QEMU's iPXE ROM gets
// http://10.77.0.1/ipxe/boot.ipxe from dnsmasq, which chains to the node's
// script in the iPXE mount (named by ${ip:hexraw}, lower case) through
// nginx, which loads the kernel and initrd of one image version over HTTP
// ({{imageURL}}) and boots the diskless guest to its NFS root.

const ipxeNodeTemplate = `#!ipxe
echo pxebootfs-ipxe: node <NODE> script from pxebootfs
kernel {{imageURL "guest" "vmlinuz"}} console=ttyS0,115200 loglevel=3 panic=-1 pxb.node=<NODE> pxb.ip={{.IP}} pxb.server=10.77.0.1 pxb.root={{.NodeDir}} pxb.fsid={{.FSID}}
initrd {{imageURL "guest" "initrd.gz"}}
boot
`

// bootIPXE is what dnsmasq hands iPXE: chain to the node's own script.
const bootIPXE = `#!ipxe
chain http://10.77.0.1/ipxe/${ip:hexraw}
`

// ipxePXELinuxTemplate is the pxelinux twin, for the TFTP side of the
// measurement: the same image version over TFTP.
const ipxePXELinuxTemplate = `SERIAL 0 115200
DEFAULT diskless
PROMPT 0
LABEL diskless
  KERNEL {{image "guest" "vmlinuz"}}
  INITRD {{image "guest" "initrd.gz"}}
  APPEND console=ttyS0,115200 loglevel=3 panic=-1 pxb.node=<NODE> pxb.ip={{.IP}} pxb.server=10.77.0.1 pxb.root={{.NodeDir}} pxb.fsid={{.FSID}}
`

// TestIPXEOverHTTP boots a BIOS guest over iPXE and HTTP through nginx
// and the iPXE mount to its diskless root; then measures, in the same run,
// one guest's boot with a 64 MiB initrd over HTTP (iPXE) and over TFTP
// (pxelinux), and logs the ratio (no assertion on it).
func TestIPXEOverHTTP(t *testing.T) {
	guest := testenv.BuildGuest(t)
	f := newGaneshaSiteConfig(t, "10.77.0.0/24", "ipxe_mount = ../http/ipxe\nipxe_template = node.ipxe.template\nipxe_static_dir = ipxestatic\n"+
		"tftp_root = ../tftpboot\nhttp_base = http://10.77.0.1/tftp/\n")
	ipxeMount := filepath.Join(filepath.Dir(f.dir), "http", "ipxe")
	f.write(filepath.Join(f.dir, "node.ipxe.template"), ipxeNodeTemplate)
	if err := os.MkdirAll(filepath.Join(f.dir, "ipxestatic"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.write(filepath.Join(f.dir, "ipxestatic", "boot.ipxe"), bootIPXE)
	f.write(f.template, ipxePXELinuxTemplate)
	testenv.MakeGoldenRoot(t, guest, f.root)
	testenv.InstallPXELinux(t, f.tftpRoot)
	importGuest := func(initrd string) {
		t.Helper()
		if out, errOut, code := run(t, "image", "import", "-c", f.cfg, "guest", "vmlinuz="+guest.Kernel, "initrd.gz="+initrd); code != 0 {
			t.Fatalf("image import: exit %d: %s%s", code, out, errOut)
		}
	}
	importGuest(guest.Initrd)
	step := stepLogger(t, time.Now())

	step("pxebootfs mount with the iPXE mount at %s", ipxeMount)
	f.start()
	net := testenv.StartBootNetFiles(t, f.srv.NS, f.tftpRoot,
		map[string]netip.Addr{guestA.mac: testenv.BootAddr(15), guestB.mac: testenv.BootAddr(16)},
		map[string]string{guestA.mac: "http://10.77.0.1/ipxe/boot.ipxe"})
	web := testenv.StartNginx(t, f.srv.NS, testenv.BootServerAddr, map[string]string{
		"/ipxe/": ipxeMount, "/tftp/": f.tftpRoot, "=/ipxe/mine": ipxeMount + "/$remote_addr"})
	boot := func(g disklessGuest) *testenv.QEMU {
		t.Helper()
		return testenv.StartQEMUIn(t, net.NS, testenv.PXEGuestArgs(net.Tap(t), g.mac)...)
	}
	wrote := func(g disklessGuest, n int) string {
		return fmt.Sprintf("pxebootfs-guest: node %s boot %d wrote", g.name, n)
	}

	step("booting node %s: iPXE -> boot.ipxe -> its script through nginx -> kernel and initrd over HTTP", guestA.name)
	qa := boot(guestA)
	qa.WaitFor(t, wrote(guestA, 1), bootTimeout)
	qa.Wait(t, time.Minute)
	if !strings.Contains(qa.Console(), "pxebootfs-ipxe: node "+guestA.name+" script from pxebootfs") {
		t.Errorf("the guest did not run its iPXE script:\n%s", qa.Console())
	}
	log := web.AccessLog()
	for _, want := range []string{"GET /ipxe/boot.ipxe ", "GET /ipxe/" + strings.ToLower(guestA.name) + " ", "GET /tftp/images/guest/"} {
		if !strings.Contains(log, want) {
			t.Errorf("nginx served no %q:\n%s", want, log)
		}
	}
	requireFile(t, filepath.Join(f.overlays, guestA.name, "upper", "booted-by-"+guestA.name), "boot 1 of "+guestA.name+"\n")
	step("node %s booted over HTTP to its NFS root; nginx served:\n%s", guestA.name, log)
	// The other style: nginx picks the script by the client's address.
	if got := web.Get(t, net.NS, "http://10.77.0.1/ipxe/mine"); !strings.Contains(got, "node 0A4D0001 script") {
		t.Errorf("/ipxe/mine from 10.77.0.1 served:\n%s", got)
	}

	// The same guest with a 64 MiB initrd (the real one, then zero
	// padding, which the kernel skips between archives), over each path.
	big := filepath.Join(t.TempDir(), "initrd-64m.gz")
	data, err := os.ReadFile(guest.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	padded := make([]byte, 64<<20)
	copy(padded, data)
	if err := os.WriteFile(big, padded, 0o644); err != nil {
		t.Fatal(err)
	}
	importGuest(big)
	timeBoot := func(g disklessGuest, n int) time.Duration {
		t.Helper()
		start := time.Now()
		q := boot(g)
		q.WaitFor(t, wrote(g, n), bootTimeout)
		d := time.Since(start)
		q.Wait(t, time.Minute)
		return d
	}
	httpBoot := timeBoot(guestA, 2)
	tftpBoot := timeBoot(guestB, 1)
	t.Logf("boot with a 64 MiB initrd (QEMU TCG, from power-on to the root's first write): HTTP (iPXE, nginx) %s, TFTP (pxelinux, tftpd-hpa) %s; TFTP/HTTP = %.2f",
		httpBoot.Round(100*time.Millisecond), tftpBoot.Round(100*time.Millisecond), tftpBoot.Seconds()/httpBoot.Seconds())
}
