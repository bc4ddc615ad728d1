package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// replace writes path by rename, as editors and config tools do.
func (s *site) replace(path, content string) {
	s.t.Helper()
	s.write(path+".new", content)
	if err := os.Rename(path+".new", path); err != nil {
		s.t.Fatal(err)
	}
}

// importImage imports image deb (vmlinuz and initrd.img) for a site with
// tftp_root.
func importImage(t *testing.T, s *site) {
	t.Helper()
	src := t.TempDir()
	k := filepath.Join(src, "k")
	os.WriteFile(k, bootFile("K", 1, 100), 0o644)
	if _, errOut, code := run(t, "image", "import", "-c", s.cfg, "deb", "vmlinuz="+k, "initrd.img="+k); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
}

// TestTemplateChangeThatCannotRenderIsRefused: a template changed to name
// an image that is not imported is refused when it is reloaded, with a log
// line naming the file and line, and the previous template serves on; a
// render that fails at serve time (a node in install mode lacking a var
// the install template uses) is "not found" through the tftpd, logged with
// the node, template and reason.
func TestTemplateChangeThatCannotRenderIsRefused(t *testing.T) {
	s := newSite(t, "install_template = install.template\n")
	s.write(s.cfg, mustRead(t, s.cfg)+"tftp_root = "+s.tftpRoot+"\n")
	s.write(s.template, imageTemplate)
	s.write(filepath.Join(s.dir, "install.template"), "install {{.Vars.suite}} <NODE>\n")
	importImage(t, s)
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	good, err := fetch(t, addr, "C0A80102")
	if err != nil || !strings.Contains(string(good), "KERNEL images/deb/") {
		t.Fatalf("first fetch: %q, %v", good, err)
	}
	s.replace(s.template, "DEFAULT linux\nLABEL linux\n  KERNEL {{image \"nope\" \"vmlinuz\"}} ip=<NODE>\n")
	d.waitLog(t, "reload failed; still serving the previous template")
	log := d.stderr.String()
	if !strings.Contains(log, "pxelinux.cfg.template:3") || !strings.Contains(log, `image \"nope\"`) {
		t.Errorf("the refusal does not name the file, line and image:\n%s", log)
	}
	if b, err := fetch(t, addr, "C0A80102"); err != nil || string(b) != string(good) {
		t.Errorf("after the refused change: %q, %v; want the previous config", b, err)
	}

	if _, errOut, code := run(t, "install", "-c", s.cfg, "C0A80102"); code != 0 {
		t.Fatalf("install: exit %d %s", code, errOut)
	}
	if b, err := fetch(t, addr, "C0A80102"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a config that does not render: %q, %v; want not found", b, err)
	}
	d.waitLog(t, "render failed; the name is not served")
	if log := d.stderr.String(); !strings.Contains(log, "node=C0A80102") || !strings.Contains(log, "install.template") || !strings.Contains(log, "suite") {
		t.Errorf("the render failure is not logged with node, template and reason:\n%s", log)
	}
}

// TestWarmFetchesCauseNoReload: the daemon's own writes (served image
// versions, recorded every 10 s into the image index it watches) are no
// change: a minute of warm fetches (six records) logs no reload, and every
// served version is recorded with its serve time (image list does not
// say never).
func TestWarmFetchesCauseNoReload(t *testing.T) {
	s := newSite(t, "")
	s.write(s.cfg, mustRead(t, s.cfg)+"tftp_root = "+s.tftpRoot+"\n")
	s.write(s.template, imageTemplate)
	importImage(t, s)
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, err := fetch(t, addr, "C0A80102"); err != nil {
			t.Fatal(err)
		}
	}
	if log := d.stderr.String(); strings.Contains(log, "reloaded") {
		t.Errorf("warm fetches made the daemon reload:\n%s", log)
	}
	out, _, code := run(t, "image", "list", "-c", s.cfg)
	if code != 0 || strings.Contains(out, "never") {
		t.Errorf("image list after a minute of serving:\n%s", out)
	}
}

// TestConfigTypoWhileRunning: with a typo in the config file, `reload` still
// reaches the daemon, which rejects the reload and logs why (the command
// exits 3), and `nodes` still lists what the daemon knows.
func TestConfigTypoWhileRunning(t *testing.T) {
	s := newSite(t, "")
	d := s.start()
	addr := testenv.StartTFTPD(t, s.tftpRoot)
	if _, err := fetch(t, addr, "C0A80102"); err != nil {
		t.Fatal(err)
	}
	good := mustRead(t, s.cfg)
	s.write(s.cfg, good+"frobnicate = 1\n")
	_, errOut, code := run(t, "reload", "-c", s.cfg)
	if code != exitConfig || !strings.Contains(errOut, "frobnicate") {
		t.Errorf("reload with a typo: exit %d, %q; want 3 naming the key", code, errOut)
	}
	d.waitLog(t, "reload rejected")
	if !strings.Contains(d.stderr.String(), "frobnicate") {
		t.Errorf("the daemon's log does not say why:\n%s", d.stderr.String())
	}
	out, errOut, code := run(t, "nodes", "-c", s.cfg)
	if code != 0 || !strings.Contains(errOut, "frobnicate") {
		t.Errorf("nodes with a typo: exit %d\n%s%s", code, out, errOut)
	}
}

// TestInstallWithoutGRUBInstallTemplateIsSaid: with install_template set
// and grub_install_template not, a UEFI node in install mode is served its
// usual GRUB config; check notes it, and install says so for each node.
func TestInstallWithoutGRUBInstallTemplateIsSaid(t *testing.T) {
	s := newSite(t, "install_template = install.template\n")
	s.write(filepath.Join(s.dir, "install.template"), "install <NODE>\n")
	withGRUB(t, s, "echo usual <NODE>\n")
	out, errOut, code := run(t, "check", "-c", s.cfg)
	if code != 0 || !strings.Contains(out, "note: install_template is set but grub_install_template is not") {
		t.Errorf("check: exit %d\n%s%s", code, out, errOut)
	}
	s.start()
	out, errOut, code = run(t, "install", "-c", s.cfg, "C0A80102")
	if code != 0 || !strings.Contains(out, "no install template for its grub names") {
		t.Errorf("install: exit %d\n%s%s", code, out, errOut)
	}
	if got := string(s.render("grub.cfg-C0A80102")); got != "echo usual C0A80102\n" {
		t.Errorf("the GRUB config of a node in install mode: %q", got)
	}
}
