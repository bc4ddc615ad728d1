package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// heartbeatInit is the /sbin/init of the generations a diskless guest boots
// in TestDisklessRootGenerations: it says which generation its root is,
// then writes a heartbeat through NFS every second (and reads a file of the
// lower layer), reporting any failure, such as a stale file handle.
const heartbeatInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
for w in $(cat /proc/cmdline); do
	case "$w" in pxb.node=*) node=${w#pxb.node=} ;; esac
done
echo "pxebootfs-guest: node $node sees root $(cat /etc/pxebootfs-root)"
i=1
while [ $i -le 25 ]; do
	if echo "beat $i" >>/heartbeat 2>/tmp/err && cat /etc/pxebootfs-root >/dev/null 2>>/tmp/err && sync 2>>/tmp/err; then
		echo "pxebootfs-guest: node $node heartbeat $i ok"
	else
		echo "pxebootfs-guest: node $node heartbeat $i FAILED: $(cat /tmp/err)"
	fi
	sleep 1
	i=$((i + 1))
done
echo "pxebootfs-guest: node $node heartbeats done"
poweroff -f
`

// rootsDisklessTemplate boots the kernel and initrd of the node's pinned
// generation.
const rootsDisklessTemplate = `SERIAL 0 115200
DEFAULT diskless
PROMPT 0
LABEL diskless
  KERNEL {{.Kernel}}
  INITRD {{.Initrd}}
  APPEND console=ttyS0,115200 loglevel=3 panic=-1 pxb.node=<NODE> pxb.ip={{.IP}} pxb.server=10.77.0.1 pxb.root={{.NodeDir}} pxb.fsid={{.FSID}} pxb.gen={{.RootGen}}
`

// generationTree makes a golden root for generation label, carrying the
// guest's kernel as boot/vmlinuz-VERSION with its (empty) modules
// directory. extra is appended to the initrd (an empty cpio archive, which
// the kernel skips) so that each generation's boot image differs.
func generationTree(t *testing.T, g testenv.Guest, label, version string, extra []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), label)
	testenv.MakeGoldenRootInit(t, g, dir, heartbeatInit)
	for _, d := range []string{"boot", "lib/modules/" + version} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CopyFile(t, g.Kernel, filepath.Join(dir, "boot", "vmlinuz-"+version))
	initrd, err := os.ReadFile(g.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	for len(initrd)%4 != 0 { // archives are 4-byte aligned, zero padded
		initrd = append(initrd, 0)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot", "initrd.img-"+version), append(initrd, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "pxebootfs-root"), []byte(label+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// emptyCpio is a gzip'd newc archive with only its trailer.
func emptyCpio(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	cmd.Stdin = strings.NewReader("")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(raw)
	zw.Close()
	return b.Bytes()
}

// TestDisklessRootGenerations: a real diskless guest A boots generation 1
// and keeps writing heartbeats through NFS while generation 2 is imported
// and made current and the daemon is killed and started again; guest B
// boots generation 2 meanwhile. A's heartbeats all succeed (no stale
// handle); each guest boots the kernel and initrd of its own generation;
// after `root upgrade A` and a reboot, A sees generation 2.
func TestDisklessRootGenerations(t *testing.T) {
	guest := testenv.BuildGuest(t)
	rootsDir := filepath.Join(t.TempDir(), "roots")
	f := newGaneshaSiteConfig(t, "10.77.0.0/24", "roots_dir = "+rootsDir+"\nroot = os\ntftp_root = ../tftpboot\n")
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(rootsDir))
		for i := len(infos) - 1; i >= 0; i-- {
			syscall.Unmount(infos[i].Mountpoint, syscall.MNT_DETACH)
		}
	})
	f.write(f.template, rootsDisklessTemplate)
	testenv.InstallPXELinux(t, f.tftpRoot)
	t0 := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("== [%3.0fs] "+format, append([]any{time.Since(t0).Seconds()}, args...)...)
	}
	importGen := func(label, version string, extra []byte) string {
		t.Helper()
		out, errOut, code := run(t, "root", "import", "-c", f.cfg, "os", generationTree(t, guest, label, version, extra))
		if code != 0 {
			t.Fatalf("root import %s: exit %d: %s%s", label, code, out, errOut)
		}
		step("%s", strings.TrimSpace(out))
		return strings.Fields(strings.SplitN(out, "imported generation ", 2)[1])[0]
	}
	gen1 := importGen("gen-1", "6.1.0-1-test", nil)

	d := f.start()
	net := testenv.StartBootNet(t, f.srv.NS, f.tftpRoot, map[string]netip.Addr{
		guestA.mac: testenv.BootAddr(15), guestB.mac: testenv.BootAddr(16),
	})
	boot := func(g disklessGuest) *testenv.QEMU {
		t.Helper()
		return testenv.StartQEMUIn(t, net.NS, testenv.PXEGuestArgs(net.Tap(t), g.mac)...)
	}
	sees := func(g disklessGuest, label string) string {
		return fmt.Sprintf("pxebootfs-guest: node %s sees root %s", g.name, label)
	}
	done := func(g disklessGuest) string { return fmt.Sprintf("pxebootfs-guest: node %s heartbeats done", g.name) }
	checkBeats := func(g disklessGuest, q *testenv.QEMU) {
		t.Helper()
		lines := q.Lines("pxebootfs-guest: node " + g.name + " heartbeat ")
		n := 0
		for _, l := range lines {
			if strings.HasSuffix(l, " ok") {
				n++
			}
		}
		if n != 25 || len(lines) != 25 {
			t.Errorf("node %s: %d of 25 heartbeats ok:\n%s", g.name, n, strings.Join(lines, "\n"))
		}
	}
	configOf := func(g disklessGuest) string { return string(f.render(g.name)) }

	step("booting node %s on generation 1", guestA.name)
	qa := boot(guestA)
	qa.WaitFor(t, fmt.Sprintf("pxebootfs-guest: node %s heartbeat 2 ok", guestA.name), bootTimeout)
	step("node %s runs generation 1 and writes heartbeats", guestA.name)

	gen2 := importGen("gen-2", "6.1.0-2-test", emptyCpio(t))
	step("kill -9 of the daemon, and a new one")
	d.cmd.Process.Kill()
	<-d.done
	f.start()
	step("booting node %s, which gets generation 2", guestB.name)
	qb := boot(guestB)

	qa.WaitFor(t, done(guestA), 2*time.Minute)
	qa.Wait(t, time.Minute)
	qa.WaitFor(t, sees(guestA, "gen-1"), time.Second)
	checkBeats(guestA, qa)
	step("node %s: all 25 heartbeats written through the import and the restart", guestA.name)
	cfgA := configOf(guestA)
	qb.WaitFor(t, done(guestB), bootTimeout)
	qb.Wait(t, time.Minute)
	qb.WaitFor(t, sees(guestB, "gen-2"), time.Second)
	checkBeats(guestB, qb)
	cfgB := configOf(guestB)
	kernelOf := func(cfg string) string { return strings.Fields(strings.SplitN(cfg, "KERNEL ", 2)[1])[0] }
	initrdOf := func(cfg string) string { return strings.Fields(strings.SplitN(cfg, "INITRD ", 2)[1])[0] }
	if !strings.Contains(cfgA, "pxb.gen="+gen1) || !strings.Contains(cfgB, "pxb.gen="+gen2) || initrdOf(cfgA) == initrdOf(cfgB) {
		t.Errorf("each node's config should name its own generation's boot image:\nA: %s\nB: %s", cfgA, cfgB)
	}
	step("node %s booted %s, node %s booted %s", guestA.name, initrdOf(cfgA), guestB.name, initrdOf(cfgB))

	step("pxebootfs root upgrade -force %s, and a reboot", guestA.name)
	if out, errOut, code := run(t, "root", "upgrade", "-c", f.cfg, "-force", guestA.name); code != 0 {
		t.Fatalf("root upgrade: exit %d: %s%s", code, out, errOut)
	}
	qa2 := boot(guestA)
	qa2.WaitFor(t, sees(guestA, "gen-2"), bootTimeout)
	if cfg := configOf(guestA); !strings.Contains(cfg, "pxb.gen="+gen2) || kernelOf(cfg) != kernelOf(cfgB) || initrdOf(cfg) != initrdOf(cfgB) {
		t.Errorf("A's config after the upgrade: %s", cfg)
	}
	qa2.WaitFor(t, done(guestA), 2*time.Minute)
	qa2.Wait(t, time.Minute)
	checkBeats(guestA, qa2)
	step("node %s now runs generation 2", guestA.name)
}
