package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

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

// dockerArchive writes a docker-archive of two layers: the tree at base,
// and the names of upper (taken from the tree at upperDir; a name whose
// last element starts with .wh. is a whiteout).
func dockerArchive(t *testing.T, base, upperDir string, upper ...string) string {
	t.Helper()
	layer := func(data []byte) v1.Layer {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var b1, b2 bytes.Buffer
	tw := tar.NewWriter(&b1)
	if err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == base {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		return addToTar(tw, p, rel)
	}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	tw = tar.NewWriter(&b2)
	for _, rel := range upper {
		if strings.HasPrefix(filepath.Base(rel), ".wh.") {
			tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: time.Unix(1700000000, 0)})
			continue
		}
		if err := addToTar(tw, filepath.Join(upperDir, rel), rel); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	img, err := mutate.AppendLayers(empty.Image, layer(b1.Bytes()), layer(b2.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "os.tar")
	tag, _ := name.NewTag("localhost/pxebootfs-test/os:gen-2")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatal(err)
	}
	return out
}

// addToTar adds the file at p (not following a symlink) as rel.
func addToTar(tw *tar.Writer, p, rel string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name, h.Uname, h.Gname = rel, "", ""
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	return nil
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
// (a directory) and keeps writing heartbeats through NFS while generation 2
// (a docker-archive built here: gen 1 plus a layer that changes
// /etc/pxebootfs-root and replaces the kernel) is imported and made current
// and the daemon is killed and started again; guest B boots generation 2
// meanwhile. A's heartbeats all succeed (no stale
// handle); each guest boots the kernel and initrd of its own generation;
// after `root upgrade A` and a reboot, A sees generation 2.
func TestDisklessRootGenerations(t *testing.T) {
	guest := testenv.BuildGuest(t)
	rootsDir := filepath.Join(t.TempDir(), "roots")
	f := newGaneshaSiteConfig(t, "10.77.0.0/24", "roots_dir = "+rootsDir+"\nroot = os\ntftp_root = ../tftpboot\n")
	unsealOnCleanup(t, rootsDir)
	f.write(f.template, rootsDisklessTemplate)
	testenv.InstallPXELinux(t, f.tftpRoot)
	t0 := time.Now()
	step := stepLogger(t, t0)
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
	boot := guestBooter(t, f)
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

	// Generation 2 is a container image, as `podman save` writes one: the
	// busybox root of generation 1 as its base layer, and a layer that
	// changes /etc/pxebootfs-root and replaces the kernel (the old one
	// whited out).
	gen2Tree := generationTree(t, guest, "gen-2", "6.1.0-2-test", emptyCpio(t))
	archive := dockerArchive(t, generationTree(t, guest, "gen-1", "6.1.0-1-test", nil), gen2Tree,
		"etc/pxebootfs-root", "boot/vmlinuz-6.1.0-2-test", "boot/initrd.img-6.1.0-2-test", "lib/modules/6.1.0-2-test",
		"boot/.wh.vmlinuz-6.1.0-1-test", "boot/.wh.initrd.img-6.1.0-1-test", "lib/modules/.wh.6.1.0-1-test")
	out, errOut, code := run(t, "root", "import", "-c", f.cfg, "os", "docker-archive:"+archive)
	if code != 0 {
		t.Fatalf("root import of the docker-archive: exit %d: %s%s", code, out, errOut)
	}
	step("%s", strings.TrimSpace(out))
	gen2 := strings.Fields(strings.SplitN(out, "imported generation ", 2)[1])[0]
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
