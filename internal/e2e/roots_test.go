package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// rootsTemplate shows what a node's config says of its root.
const rootsTemplate = "LABEL linux\n  KERNEL {{.Kernel}}\n  APPEND initrd={{.Initrd}} nfsroot=127.0.0.1:{{.NodeDir}} fsid={{.FSID}} root={{.Root}}/{{.RootGen}}\n"

// newRootsSite is a full site whose nodes get root "os" from roots_dir,
// with boot images in tftp_root.
func newRootsSite(t *testing.T) (*fullSite, string) {
	t.Helper()
	base := t.TempDir()
	rootsDir := filepath.Join(base, "roots")
	f := newFullSite(t, "roots_dir = "+rootsDir+"\nroot = os\nroot_keep = 1\nroot_grace = 0\ntftp_root = ../tftpboot\nimage_keep = 1\nimage_grace = 0\n")
	f.write(f.template, rootsTemplate)
	unsealOnCleanup(t, rootsDir)
	return f, rootsDir
}

// unsealOnCleanup detaches the read-only bind mounts of the generations in
// rootsDir when the test ends: the test's mount namespace goes with it,
// but its temp dir must be removable before.
func unsealOnCleanup(t testing.TB, rootsDir string) {
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(rootsDir))
		for i := len(infos) - 1; i >= 0; i-- {
			syscall.Unmount(infos[i].Mountpoint, syscall.MNT_DETACH)
		}
	})
}

// osTree writes a Debian-like tree: kernel VERSION with its modules, and
// /etc/pxebootfs-root saying label.
func osTree(t *testing.T, version, label string, modules bool) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"etc/pxebootfs-root":           label + "\n",
		"boot/vmlinuz-" + version:      "kernel " + version + "\n",
		"boot/initrd.img-" + version:   "initrd " + version + "\n",
		"usr/bin/true":                 "#!/bin/true\n",
		"sbin/init":                    "#!/bin/sh\n",
		"lib/modules/README-not-a-dir": "",
	}
	if modules {
		files["lib/modules/"+version+"/modules.dep"] = ""
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// root runs `pxebootfs root SUB -c CONFIG ARGS…`.
func (f *fullSite) rootCmd(t *testing.T, sub string, args ...string) (string, string, int) {
	t.Helper()
	return run(t, append([]string{"root", sub, "-c", f.cfg}, args...)...)
}

func (f *fullSite) mustRoot(t *testing.T, sub string, args ...string) string {
	t.Helper()
	out, errOut, code := f.rootCmd(t, sub, args...)
	if code != 0 {
		t.Fatalf("pxebootfs root %s %s: exit %d\n%s%s", sub, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

type rootJSON struct {
	Name       string   `json:"name"`
	Generation string   `json:"generation"`
	Current    bool     `json:"current"`
	Nodes      []string `json:"nodes"`
}

func (f *fullSite) rootList(t *testing.T) map[string]rootJSON {
	t.Helper()
	var ls []rootJSON
	out := f.mustRoot(t, "list", "-json")
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("root list -json: %v\n%s", err, out)
	}
	m := map[string]rootJSON{}
	for _, l := range ls {
		m[l.Generation] = l
	}
	return m
}

// TestRootGenerationsCLI walks an admin's rollout through the real binary
// and tftpd-hpa: import gen 1, a node boots it; import gen 2, the running
// node keeps gen 1 (and its kernel) through a kill -9 of the daemon while
// a new node gets gen 2; remove of the pinned generation is refused; root
// upgrade moves the node; prune then reclaims gen 1 and its kernel.
func TestRootGenerationsCLI(t *testing.T) {
	f, rootsDir := newRootsSite(t)
	// Before any import, check says the config's root has nothing to give.
	if out, _, code := f.admin(t, "check"); code != 3 || !strings.Contains(out, `[PXEBOOTFS] root: root "os": not found; import it with: pxebootfs root import os SOURCE`) {
		t.Errorf("check before an import: exit %d\n%s", code, out)
	}
	// Imports work with no daemon running.
	out := f.mustRoot(t, "import", "os", osTree(t, "6.1.0-1", "gen-1", true))
	if !strings.Contains(out, "imported generation") || !strings.Contains(out, "boot/vmlinuz-6.1.0-1 served as images/os/") {
		t.Fatalf("import gen 1: %s", out)
	}
	gen1 := strings.Fields(strings.SplitN(out, "imported generation ", 2)[1])[0]
	if out := f.mustRoot(t, "import", "os", osTree(t, "6.1.0-1", "gen-1", true)); !strings.Contains(out, "nothing imported") {
		t.Errorf("the same tree again: %s", out)
	}
	// A kernel without its modules is refused, nothing made.
	_, errOut, code := f.rootCmd(t, "import", "os", osTree(t, "6.1.0-9", "bad", false))
	if code != 1 || !strings.Contains(errOut, "boot/vmlinuz-6.1.0-9 has no modules") {
		t.Errorf("kernel without modules: exit %d, %s", code, errOut)
	}
	// Even root cannot write into a generation.
	if err := os.WriteFile(filepath.Join(rootsDir, "os", gen1, "etc", "x"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write into a generation: %v, want read-only", err)
	}

	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	cfgA := mustFetch(t, addr, "C0A80102")
	if !strings.Contains(cfgA, "root=os/"+gen1) || !strings.Contains(cfgA, "KERNEL images/os/") {
		t.Fatalf("A's config: %s", cfgA)
	}
	kernelA := strings.Fields(strings.SplitN(cfgA, "KERNEL ", 2)[1])[0]
	if b, err := os.ReadFile(filepath.Join(f.tftpRoot, kernelA)); err != nil || string(b) != "kernel 6.1.0-1\n" {
		t.Fatalf("A's kernel %s: %q, %v", kernelA, b, err)
	}
	if err := os.WriteFile(filepath.Join(f.nodes, "C0A80102", "heartbeat"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}

	out = f.mustRoot(t, "import", "os", osTree(t, "6.1.0-2", "gen-2", true))
	gen2 := strings.Fields(strings.SplitN(out, "imported generation ", 2)[1])[0]
	if got := mustFetch(t, addr, "C0A80102"); got != cfgA {
		t.Errorf("A's config changed with gen 2 imported:\n%s\nwas\n%s", got, cfgA)
	}
	cfgB := mustFetch(t, addr, "C0A80103")
	if !strings.Contains(cfgB, "root=os/"+gen2) || strings.Contains(cfgB, kernelA) {
		t.Errorf("new node B's config: %s", cfgB)
	}

	// kill -9: the next daemon remounts nothing new and serves A gen 1.
	d.cmd.Process.Kill()
	<-d.done
	f.start()
	if got := mustFetch(t, addr, "C0A80102"); got != cfgA {
		t.Errorf("A's config after kill -9:\n%s", got)
	}
	if b, _ := os.ReadFile(filepath.Join(f.nodes, "C0A80102", "etc", "pxebootfs-root")); string(b) != "gen-1\n" {
		t.Errorf("A's root says %q after the restart", b)
	}
	if _, err := os.Stat(filepath.Join(f.nodes, "C0A80102", "heartbeat")); err != nil {
		t.Errorf("A's heartbeat: %v", err)
	}

	list := f.rootList(t)
	if g := list[gen1]; g.Current || len(g.Nodes) != 1 || g.Nodes[0] != "C0A80102" {
		t.Errorf("root list gen 1: %+v", g)
	}
	if g := list[gen2]; !g.Current || len(g.Nodes) != 1 || g.Nodes[0] != "C0A80103" {
		t.Errorf("root list gen 2: %+v", g)
	}
	if n := f.nodesJSON(t)["C0A80102"]; n.Root != "os" || n.RootGen != gen1 {
		t.Errorf("nodes -json A: %+v", n)
	}
	// Neither remove nor prune pulls a pinned generation (or its kernel).
	_, errOut, code = f.rootCmd(t, "remove", "os", gen1)
	if code != 7 || !strings.Contains(errOut, "C0A80102") {
		t.Errorf("remove pinned gen 1: exit %d, %s", code, errOut)
	}
	f.mustRoot(t, "prune")
	run(t, "image", "prune", "-c", f.cfg)
	if _, err := os.Stat(filepath.Join(f.tftpRoot, kernelA)); err != nil {
		t.Errorf("gen 1's kernel pruned while A is pinned: %v", err)
	}

	// Upgrade A: a reset onto gen 2, same fsid.
	f.mustRoot(t, "upgrade", "-force", "C0A80102")
	cfgA2 := mustFetch(t, addr, "C0A80102")
	if !strings.Contains(cfgA2, "root=os/"+gen2) || strings.Contains(cfgA2, kernelA) || !strings.Contains(cfgA2, "fsid=10000") {
		t.Errorf("A after upgrade: %s", cfgA2)
	}
	f.mustRoot(t, "prune")
	if _, err := os.Stat(filepath.Join(rootsDir, "os", gen1)); !os.IsNotExist(err) {
		t.Errorf("gen 1 still there after prune with nobody on it: %v", err)
	}
	run(t, "image", "prune", "-c", f.cfg)
	if _, err := os.Stat(filepath.Join(f.tftpRoot, kernelA)); !os.IsNotExist(err) {
		t.Errorf("gen 1's kernel still there after its generation went: %v", err)
	}
	// check finds nothing wrong with the roots (these machines lack a
	// kernel NFS server, which it reports apart).
	if out, errOut, _ := f.admin(t, "check"); strings.Contains(out+errOut, "pinned to") || strings.Contains(out+errOut, "] root") {
		t.Errorf("check reports a root problem:\n%s%s", out, errOut)
	}
}

// TestRootImportFromPipe: `podman save IMAGE | pxebootfs root import NAME
// docker-archive:/dev/stdin` makes a generation, recorded with the image's
// digest; the same archive again creates nothing.
func TestRootImportFromPipe(t *testing.T) {
	f, rootsDir := newRootsSite(t)
	archive := dockerArchive(t, osTree(t, "6.1.0-1", "base", true), osTree(t, "6.1.0-1", "changed", true), "etc/pxebootfs-root")
	pipe := func() (string, string) {
		t.Helper()
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, "root", "import", "-c", f.cfg, "compute", "docker-archive:/dev/stdin")
		cmd.Stdin = bytes.NewReader(data) // a pipe, as from podman save
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("root import from stdin: %v\n%s%s", err, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}
	out, _ := pipe()
	if !strings.Contains(out, "imported generation") || !strings.Contains(out, "from docker-archive:/dev/stdin, manifest sha256:") {
		t.Fatalf("import: %s", out)
	}
	gen := strings.Fields(strings.SplitN(out, "imported generation ", 2)[1])[0]
	if b, err := os.ReadFile(filepath.Join(rootsDir, "compute", gen, "etc", "pxebootfs-root")); err != nil || string(b) != "changed\n" {
		t.Errorf("the upper layer's file: %q, %v", b, err)
	}
	if out, _ := pipe(); !strings.Contains(out, "nothing imported") {
		t.Errorf("the same archive again: %s", out)
	}
	var ls []struct {
		Generation string `json:"generation"`
		Image      struct {
			Digest string `json:"digest"`
		} `json:"image"`
	}
	if err := json.Unmarshal([]byte(f.mustRoot(t, "list", "-json", "compute")), &ls); err != nil || len(ls) != 1 || !strings.HasPrefix(ls[0].Image.Digest, "sha256:") {
		t.Errorf("root list -json: %+v, %v", ls, err)
	}
}
