package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// The main job, end to end with real parts only: BIOS firmware (QEMU's
// e1000 iPXE ROM) gets an address from dnsmasq and pxelinux.0 from
// tftpd-hpa; pxelinux fetches the node's config through the pxebootfs
// mount, which gives the node its overlay root and exports it through
// NFS-Ganesha; a Debian kernel and initrd mount that root over NFSv3 and
// run its /sbin/init, which writes into it and powers off. Everything runs
// in a network namespace the test makes (testenv.BootNet).

// disklessTemplate boots the guest kernel with its root from the node's
// export. The initrd reads pxb.* (testenv.BuildGuest).
const disklessTemplate = `SERIAL 0 115200
DEFAULT diskless
PROMPT 0
LABEL diskless
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0,115200 loglevel=3 panic=-1 pxb.node=<NODE> pxb.ip={{.IP}} pxb.server=` + "10.77.0.1" + ` pxb.root={{.NodeDir}} pxb.fsid={{.FSID}}
`

// bootTimeout bounds one guest's boot under TCG (measured 30–65 s alone;
// two at once on two cores take longer).
const bootTimeout = 6 * time.Minute

type disklessGuest struct {
	name, mac string
}

var (
	guestA = disklessGuest{"0A4D000F", "52:54:00:4d:00:0f"} // 10.77.0.15
	guestB = disklessGuest{"0A4D0010", "52:54:00:4d:00:10"} // 10.77.0.16
)

// TestDisklessBoot boots two diskless nodes at once from one golden root,
// reboots one, then resets it: the write lands in the node's own upper
// layer, the other node does not see it, the reboot keeps it, the reset
// wipes it, and the golden root never changes. With -v it narrates each
// step (scripts/demo.sh shows it).
func TestDisklessBoot(t *testing.T) {
	guest := testenv.BuildGuest(t)
	f := newGaneshaSiteAllow(t, "10.77.0.0/24")
	testenv.MakeGoldenRoot(t, guest, f.root)
	f.write(f.template, disklessTemplate)
	testenv.InstallPXELinux(t, f.tftpRoot)
	for src, dst := range map[string]string{guest.Kernel: "vmlinuz", guest.Initrd: "initrd.gz"} {
		testenv.CopyFile(t, src, filepath.Join(f.tftpRoot, dst))
	}
	goldenBefore := listTree(t, f.root)
	t0 := time.Now()
	step := stepLogger(t, t0)

	step("pxebootfs mount in full mode over %s (export = ganesha)", f.mnt)
	d := f.start()
	boot := guestBooter(t, f)

	wrote := func(g disklessGuest, n int) string {
		return fmt.Sprintf("pxebootfs-guest: node %s boot %d wrote", g.name, n)
	}
	// follow narrates q's console lines that matter as they appear, until
	// marker shows, the guest exits or bootTimeout passes since start.
	follow := func(g disklessGuest, q *testenv.QEMU, marker string, start time.Time) {
		shown := 0
		served := strings.Count(d.stderr.String(), "msg=serve name="+g.name)
		for {
			if n := strings.Count(d.stderr.String(), "msg=serve name="+g.name); n > served {
				t.Logf("   [%3.0fs] pxelinux on %s fetched pxelinux.cfg/%s through the mount", time.Since(t0).Seconds(), g.name, g.name)
				served = n
			}
			lines := q.Lines("pxebootfs-")
			for _, l := range lines[shown:] {
				// From the marker on: what the firmware printed may share the line.
				t.Logf("   [%3.0fs] %s console: %s", time.Since(t0).Seconds(), g.name, l[strings.Index(l, "pxebootfs-"):])
			}
			shown = len(lines)
			if strings.Contains(q.Console(), marker) || q.Exited() || time.Since(start) > bootTimeout {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	step("booting nodes %s and %s at once: iPXE -> pxelinux -> Linux with its root over NFS", guestA.name, guestB.name)
	start := time.Now()
	qa, qb := boot(guestA), boot(guestB)
	var wg sync.WaitGroup
	for _, gq := range []struct {
		g disklessGuest
		q *testenv.QEMU
	}{{guestA, qa}, {guestB, qb}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			follow(gq.g, gq.q, wrote(gq.g, 1), start)
		}()
	}
	wg.Wait()
	for _, gq := range []struct {
		g disklessGuest
		q *testenv.QEMU
	}{{guestA, qa}, {guestB, qb}} {
		gq.q.WaitFor(t, wrote(gq.g, 1), time.Second)
		gq.q.Wait(t, time.Minute)
		if got := gq.q.Lines("root holds:"); len(got) != 1 || !strings.HasSuffix(got[0], "root holds: booted-by-"+gq.g.name) {
			t.Errorf("node %s sees other nodes' writes: %q", gq.g.name, got)
		}
		if !regexp.MustCompile(`node ` + gq.g.name + ` runs from 10\.77\.0\.1:` + regexp.QuoteMeta(filepath.Join(f.nodes, gq.g.name)) + ` \(nfs\)`).MatchString(gq.q.Console()) {
			t.Errorf("node %s's root is not its NFS export:\n%s", gq.g.name, strings.Join(gq.q.Lines("runs from"), "\n"))
		}
	}
	step("both booted diskless in %s", time.Since(start).Round(time.Second))

	upperA := filepath.Join(f.overlays, guestA.name, "upper")
	upperB := filepath.Join(f.overlays, guestB.name, "upper")
	mountLine := func(g disklessGuest) string {
		ms, _ := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Join(f.nodes, g.name)))
		if len(ms) != 1 {
			t.Fatalf("%s: %d mounts", g.name, len(ms))
		}
		return ms[0].FSType + " " + ms[0].Mountpoint + " " + ms[0].VFSOptions
	}
	step("node %s's mount: %s", guestA.name, mountLine(guestA))
	for path, e := range f.exports(t) {
		step("Ganesha export: %s to %s, fsid %d", path, e.Client, e.FSID)
	}
	out, errOut, code := run(t, "nodes", "-c", f.cfg)
	if code != 0 {
		t.Fatalf("nodes: %s", errOut)
	}
	step("pxebootfs nodes:\n%s", out)
	requireFile(t, filepath.Join(upperA, "booted-by-"+guestA.name), "boot 1 of "+guestA.name+"\n")
	requireFile(t, filepath.Join(upperB, "booted-by-"+guestB.name), "boot 1 of "+guestB.name+"\n")
	requireAbsent(t, filepath.Join(upperB, "booted-by-"+guestA.name))
	step("%s's write is in %s/booted-by-%s; %s's upper has only its own; the golden root %s has none", guestA.name, upperA, guestA.name, guestB.name, f.root)

	step("rebooting node %s: its root keeps what it wrote", guestA.name)
	qa2 := boot(guestA)
	follow(guestA, qa2, wrote(guestA, 2), time.Now())
	qa2.WaitFor(t, wrote(guestA, 2), time.Second)
	qa2.Wait(t, time.Minute)
	requireFile(t, filepath.Join(upperA, "booted-by-"+guestA.name), "boot 1 of "+guestA.name+"\nboot 2 of "+guestA.name+"\n")

	step("pxebootfs reset -force %s: a fresh root, same fsid", guestA.name)
	fsidBefore := f.exports(t)[filepath.Join(f.nodes, guestA.name)].FSID
	if out, errOut, code := run(t, "reset", "-c", f.cfg, "-force", guestA.name); code != 0 {
		t.Fatalf("reset: exit %d: %s %s", code, out, errOut)
	}
	requireAbsent(t, filepath.Join(upperA, "booted-by-"+guestA.name))
	requireAbsent(t, filepath.Join(f.nodes, guestA.name, "booted-by-"+guestA.name))
	if got := f.exports(t)[filepath.Join(f.nodes, guestA.name)].FSID; got != fsidBefore || got == 0 {
		t.Errorf("after reset: fsid %d, want %d", got, fsidBefore)
	}
	requireFile(t, filepath.Join(upperB, "booted-by-"+guestB.name), "boot 1 of "+guestB.name+"\n")
	if after := listTree(t, f.root); after != goldenBefore {
		t.Errorf("the golden root changed:\nbefore:\n%s\nafter:\n%s", goldenBefore, after)
	}
	step("the golden root is unchanged")
	step("node %s booted diskless; its write was in %s until the reset wiped it", guestA.name, filepath.Join(upperA, "booted-by-"+guestA.name))
}

// guestBooter starts the boot network of guests A and B in f's Ganesha
// namespace and returns how to boot one of them.
func guestBooter(t testing.TB, f *ganeshaSite) func(g disklessGuest) *testenv.QEMU {
	net := testenv.StartBootNet(t, f.srv.NS, f.tftpRoot, map[string]netip.Addr{
		guestA.mac: testenv.BootAddr(15), guestB.mac: testenv.BootAddr(16),
	})
	return func(g disklessGuest) *testenv.QEMU {
		t.Helper()
		return testenv.StartQEMUIn(t, net.NS, testenv.PXEGuestArgs(net.Tap(t), g.mac)...)
	}
}

// stepLogger narrates a long test's steps with the seconds since t0.
func stepLogger(t *testing.T, t0 time.Time) func(format string, args ...any) {
	return func(format string, args ...any) {
		t.Helper()
		t.Logf("== [%3.0fs] "+format, append([]any{time.Since(t0).Seconds()}, args...)...)
	}
}

func requireFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Fatalf("%s = %q, %v; want %q", path, b, err, want)
	}
}

func requireAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists (%v)", path, err)
	}
}

// listTree lists dir's files with their sizes and modes, to compare.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %v %d %s\n", rel, fi.Mode(), fi.Size(), fi.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
