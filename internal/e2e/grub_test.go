package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"

	pxfs "github.com/pxebootfs/pxebootfs/fs"
)

// withGRUB adds a GRUB mount at tftp_root/grub with a template and a static
// tree (a module directory) to a site's config.
func withGRUB(t *testing.T, s *site, tmpl string) (grubDir string) {
	t.Helper()
	grubDir = filepath.Join(s.tftpRoot, "grub")
	static := filepath.Join(s.dir, "grubstatic")
	for _, d := range []string{grubDir, filepath.Join(static, "x86_64-efi")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.write(filepath.Join(static, "x86_64-efi", "normal.mod"), "not really a module\n")
	s.write(filepath.Join(s.dir, "grub.cfg.template"), tmpl)
	s.write(s.cfg, mustRead(t, s.cfg)+"grub_mount = "+grubDir+"\ngrub_template = grub.cfg.template\ngrub_static_dir = grubstatic\n")
	t.Cleanup(func() {
		if mounted(grubDir) {
			t.Errorf("%s still mounted after the daemon stopped", grubDir)
		}
	})
	return grubDir
}

// TestGRUBMountFullMode: one daemon serves pxelinux.cfg and GRUB's
// directory; a node fetched by its pxelinux name and by every GRUB name gets
// one root and one fsid; the static tree and the built-in grub.cfg are
// served through tftpd-hpa; SIGTERM unmounts both.
func TestGRUBMountFullMode(t *testing.T) {
	f := newFullSite(t, "")
	withGRUB(t, f.site, "set root_fsid={{.FSID}}\necho node <NODE> mac {{.MAC}} root {{.NodeDir}}\n")
	d := f.start()
	addr := testenv.StartTFTPD(t, f.tftpRoot)
	pxe, err := fetch(t, addr, "C0A80102")
	if err != nil {
		t.Fatal(err)
	}
	var fsidLine string
	for _, name := range []string{"grub.cfg-52:54:00:12:34:56", "grub.cfg-01-52-54-00-12-34-56", "grub.cfg-C0A80102", "grub.cfg-192.168.1.2"} {
		b, err := fetchFrom(t, addr, "grub", name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if fsidLine == "" {
			fsidLine = line
		}
		if line != fsidLine || !strings.Contains(string(b), "node C0A80102 mac 52:54:00:12:34:56 root "+filepath.Join(f.nodes, "C0A80102")) {
			t.Errorf("%s: %q", name, b)
		}
	}
	r := f.registry(t)
	if len(r.Nodes) != 1 || fsidLine != "set root_fsid="+strconv.FormatUint(uint64(r.Nodes[0].FSID), 10) ||
		!strings.Contains(string(pxe), strconv.FormatUint(uint64(r.Nodes[0].FSID), 10)) {
		t.Errorf("registry %+v; GRUB says %q; pxelinux says %q", r, fsidLine, pxe)
	}
	if n := len(f.overlayMounts(t)); n != 1 {
		t.Errorf("%d overlay mounts, want 1", n)
	}
	if b, err := fetchFrom(t, addr, "grub", "x86_64-efi/normal.mod"); err != nil || string(b) != "not really a module\n" {
		t.Errorf("static tree: %q, %v", b, err)
	}
	if b, err := fetchFrom(t, addr, "grub", "grub.cfg"); err != nil || !strings.Contains(string(b), "configfile $prefix/grub.cfg-$net_default_mac") {
		t.Errorf("built-in grub.cfg: %q, %v", b, err)
	}
	for _, name := range []string{"grub.cfg-C0A8", "grub.cfg-aa:bb:cc:dd:ee:ff", "grub.cfg-10.0.0.300"} {
		if _, err := fetchFrom(t, addr, "grub", name); err == nil {
			t.Errorf("%s served", name)
		}
	}
	if out, _, code := run(t, "render", "-c", f.cfg, "grub.cfg-C0A80102"); code != 0 || !strings.Contains(out, "node C0A80102") {
		t.Errorf("render of a GRUB name: %d %q", code, out)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestGRUBMountRestartOverDeadMount: after kill -9 both mounts are dead; a
// new daemon clears both and serves both again. SIGTERM unmounts both
// (withGRUB's cleanup and the harness check).
func TestGRUBMountRestartOverDeadMount(t *testing.T) {
	s := newSite(t, "")
	grubDir := withGRUB(t, s, "echo <NODE>\n")
	d := s.start()
	// Kill only once both mounts are fully up: go-fuse opens and closes a
	// file on each new mount (its poll hack), and a process killed in that
	// close waits forever for its own FLUSH (see the README's notes).
	d.waitLog(t, "msg=serving loader=grub")
	d.cmd.Process.Kill()
	<-d.done
	for _, dir := range []string{s.mnt, grubDir} {
		if !pxfs.Dead(dir) {
			t.Fatalf("%s: expected a dead mount after kill -9", dir)
		}
	}
	s.start()
	for !serving(grubDir) {
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(grubDir, "grub.cfg-C0A80102")); err != nil || string(b) != "echo C0A80102\n" {
		t.Fatalf("GRUB mount after restart: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.mnt, "C0A80102")); err != nil || len(b) == 0 {
		t.Fatalf("pxelinux mount after restart: %q, %v", b, err)
	}
}
