package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// TestDebPackage: scripts/deb.sh builds a package that apt installs with its
// dependencies; the installed config checks and the installed unit
// verifies; an admin's edit of the config survives a reinstall (conffile);
// purging leaves none of its files behind.
func TestDebPackage(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"dpkg-deb", "apt-get", "systemd-analyze"} {
		testenv.RequireTool(t, tool)
	}
	if exec.Command("dpkg", "-s", "pxebootfs").Run() == nil {
		testenv.Skip(t, "a pxebootfs package is installed on this machine; not replacing it")
	}
	sh := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "BIN="+binary)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := t.TempDir()
	deb := strings.TrimSpace(lastLine(sh("../../scripts/deb.sh", out)))
	if filepath.Dir(deb) != out || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("deb.sh printed %q", deb)
	}
	t.Cleanup(func() { exec.Command("apt-get", "purge", "-y", "-qq", "pxebootfs").Run() })
	sh("apt-get", "install", "-y", "-qq", deb)
	files := strings.Fields(sh("dpkg", "-L", "pxebootfs"))
	for _, want := range []string{"/usr/sbin/pxebootfs", "/lib/systemd/system/pxebootfs.service", "/etc/pxebootfs/pxebootfs.cfg", "/etc/pxebootfs/grub.cfg.template",
		"/usr/share/doc/pxebootfs/examples/pxebootfs.cfg.example", "/usr/share/doc/pxebootfs/examples/grub.cfg.template"} {
		if !strings.Contains(" "+strings.Join(files, " ")+" ", " "+want+" ") {
			t.Errorf("package lacks %s", want)
		}
	}
	if got := sh("pxebootfs", "check", "-c", "/etc/pxebootfs/pxebootfs.cfg"); !strings.Contains(got, "ok") {
		t.Errorf("check of the installed config: %s", got)
	}
	sh("systemd-analyze", "verify", "/lib/systemd/system/pxebootfs.service")
	if deps := sh("dpkg-query", "-W", "-f=${Depends}", "pxebootfs"); !strings.Contains(deps, "fuse3") || !strings.Contains(deps, "nfs-kernel-server | nfs-ganesha") {
		t.Errorf("Depends: %s", deps)
	}

	// The admin's edit of a conffile survives a reinstall.
	cfg := "/etc/pxebootfs/pxebootfs.cfg"
	edited := mustRead(t, cfg) + "# edited by the admin\n"
	if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	sh("apt-get", "install", "-y", "-qq", "--reinstall", deb)
	if mustRead(t, cfg) != edited {
		t.Error("reinstall replaced the admin's config")
	}

	sh("apt-get", "purge", "-y", "-qq", "pxebootfs")
	for _, f := range files {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
			t.Errorf("%s left behind after purge", f)
		}
	}
	for _, d := range []string{"/etc/pxebootfs", "/usr/share/doc/pxebootfs"} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left behind after purge", d)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
