package testenv

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A diskless Linux guest: a Debian kernel and an initrd that mounts the
// node's root over NFS and switch_roots into it.
//
// The kernel comes from Debian's linux-image package, which
// scripts/setup.sh downloads into GuestCache (never installing it as this
// machine's kernel). Debian's NFS client is modular and the kernel does no
// IP autoconfiguration, so an initrd is needed: busybox-static, the NIC
// driver and the NFS client modules in dependency order, and an /init that
// takes its address, server and root path from the kernel command line
// (pxb.ip=, pxb.server=, pxb.root=, rendered by pxebootfs's template),
// mounts the root with NFSv3 over TCP and runs the root's /sbin/init.
//
// The initrd is built once per kernel package and init script, in a
// staging directory renamed into place, so runs in parallel or killed
// half-way never see half of one.

// GuestCache is where scripts/setup.sh puts the kernel package and where
// built guests are kept.
const GuestCache = "/var/cache/pxebootfs-guest"

// guestModules are loaded, with what they depend on: the NIC QEMU emulates
// for iPXE (e1000) and the NFSv3 client.
var guestModules = []string{"e1000", "nfsv3"}

// Guest is a kernel and an initrd for a diskless node.
type Guest struct {
	Kernel  string // vmlinuz
	Initrd  string // gzip'd newc cpio
	Busybox string // the static busybox the initrd runs, for golden roots
}

const busyboxPath = "/bin/busybox" // busybox-static

// initScript is the initrd's /init.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do
	insmod /lib/modules/$m || echo "pxebootfs-initrd: insmod $m failed"
done
for w in $(cat /proc/cmdline); do
	case "$w" in
	pxb.ip=*) ip=${w#pxb.ip=} ;;
	pxb.server=*) server=${w#pxb.server=} ;;
	pxb.root=*) root=${w#pxb.root=} ;;
	esac
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ifconfig lo 127.0.0.1 up
ifconfig eth0 "$ip" netmask 255.255.255.0 up
echo "pxebootfs-initrd: eth0 $ip; mounting $server:$root over NFSv3"
if mount -t nfs -o vers=3,nolock,proto=tcp,mountproto=tcp,addr=$server "$server:$root" /root; then
	echo "pxebootfs-initrd: mounted $server:$root"
	umount /sys
	umount /proc
	mount --move /dev /root/dev 2>/dev/null || umount /dev
	exec switch_root /root /sbin/init
fi
echo "pxebootfs-initrd: NFS mount of $server:$root failed"
poweroff -f
`

// BuildGuest returns the diskless guest, building and caching it if
// needed. It skips (fails in CI) if setup.sh has not downloaded the kernel.
func BuildGuest(t testing.TB) Guest {
	t.Helper()
	RequireRoot(t)
	RequireFile(t, busyboxPath, "busybox-static")
	for _, tool := range []string{"dpkg-deb", "depmod", "modprobe", "cpio"} {
		RequireTool(t, tool)
	}
	debs, _ := filepath.Glob(filepath.Join(GuestCache, "linux-image-*-amd64_*.deb"))
	if len(debs) == 0 {
		Skip(t, "no Debian kernel package in "+GuestCache+" (scripts/setup.sh downloads it)")
	}
	slices.Sort(debs)
	deb := debs[len(debs)-1]
	bb, err := os.Stat(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s\x00%s\x00%s", filepath.Base(deb), bb.Size(), bb.ModTime(), strings.Join(guestModules, ","), initScript)))
	dir := filepath.Join(GuestCache, "guest-"+hex.EncodeToString(h[:6]))
	g := Guest{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.gz"), Busybox: busyboxPath}
	if _, err := os.Stat(g.Initrd); err == nil {
		return g
	}
	staging, err := os.MkdirTemp(GuestCache, ".build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(staging)
	if err := buildGuest(deb, staging); err != nil {
		t.Fatalf("build the diskless guest from %s: %v", deb, err)
	}
	out := filepath.Join(staging, "out")
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(out, dir); err != nil {
		// Another run built it meanwhile.
		if _, serr := os.Stat(g.Initrd); serr != nil {
			t.Fatalf("cache the diskless guest: %v", err)
		}
	}
	return g
}

func runCmd(dir string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(toolPath(name), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func buildGuest(deb, staging string) error {
	pkg := filepath.Join(staging, "pkg")
	if _, err := runCmd("", nil, "dpkg-deb", "-x", deb, pkg); err != nil {
		return err
	}
	vers, err := os.ReadDir(filepath.Join(pkg, "lib", "modules"))
	if err != nil || len(vers) != 1 {
		return fmt.Errorf("want one kernel version in the package's lib/modules: %v %v", vers, err)
	}
	kver := vers[0].Name()
	if _, err := runCmd("", nil, "depmod", "-b", pkg, kver); err != nil {
		return err
	}
	var mods []string
	for _, m := range guestModules {
		out, err := runCmd("", nil, "modprobe", "-d", pkg, "-S", kver, "--show-depends", m)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "insmod" && !slices.Contains(mods, f[1]) {
				mods = append(mods, f[1])
			}
		}
	}
	tree := filepath.Join(staging, "initrd")
	for _, d := range []string{"bin", "dev", "proc", "sys", "root", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busyboxPath, filepath.Join(tree, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	var order []string
	for _, m := range mods {
		name := filepath.Base(m)
		if err := copyFile(m, filepath.Join(tree, "lib", "modules", name), 0o644); err != nil {
			return err
		}
		order = append(order, name)
	}
	if err := os.WriteFile(filepath.Join(tree, "modules.order"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "init"), []byte(initScript), 0o755); err != nil {
		return err
	}
	var list bytes.Buffer
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		list.WriteString(rel + "\n")
		return nil
	})
	if err != nil {
		return err
	}
	archive, err := runCmd(tree, list.Bytes(), "cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0")
	if err != nil {
		return err
	}
	out := filepath.Join(staging, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "initrd.gz"), gz.Bytes(), 0o644); err != nil {
		return err
	}
	return copyFile(filepath.Join(pkg, "boot", "vmlinuz-"+kver), filepath.Join(out, "vmlinuz"), 0o644)
}

// copyFile copies src to dst with mode (exactly: not narrowed by umask).
func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// goldenInit is the golden root's /sbin/init: it reports where its root
// is, counts its boots in /var/boots, writes /booted-by-NODE (writes land
// in the node's own upper layer), lists what of that kind the root holds,
// and powers off.
const goldenInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
for w in $(cat /proc/cmdline); do
	case "$w" in pxb.node=*) node=${w#pxb.node=} ;; esac
done
echo "pxebootfs-guest: node $node runs from $(awk '$2 == "/" && $1 != "rootfs" {print $1 " (" $3 ")"}' /proc/mounts)"
boots=$(($(cat /var/boots 2>/dev/null || echo 0) + 1))
echo "$boots" >/var/boots
echo "boot $boots of $node" >>/booted-by-$node
sync
echo "pxebootfs-guest: node $node boot $boots wrote /booted-by-$node; root holds: $(cd / && echo booted-by-*)"
poweroff -f
`

// MakeGoldenRoot fills dir with a tiny golden root: busybox with its applet
// links, /sbin/init (goldenInit), and /etc/golden.
func MakeGoldenRoot(t testing.TB, g Guest, dir string) {
	t.Helper()
	MakeGoldenRootInit(t, g, dir, goldenInit)
}

// MakeGoldenRootInit is MakeGoldenRoot with init as /sbin/init.
func MakeGoldenRootInit(t testing.TB, g Guest, dir, init string) {
	t.Helper()
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "var", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile(g.Busybox, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("", nil, g.Busybox, "--list")
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sbin", "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "golden"), []byte("the golden root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
