package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

const (
	unitFile      = "../../contrib/pxebootfs.service"
	installedPath = "/usr/local/sbin/pxebootfs"
)

// verifyUnit runs `systemd-analyze verify` on unit text. verify checks that
// ExecStart's program exists, so the installed path is pointed at binPath;
// nothing else in the unit changes.
func verifyUnit(t *testing.T, unit, binPath string) {
	t.Helper()
	analyze := testenv.RequireTool(t, "systemd-analyze")
	if !strings.Contains(unit, "ExecStart="+installedPath+" ") {
		t.Fatalf("ExecStart does not run %s:\n%s", installedPath, unit)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "pxebootfs.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, installedPath, binPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitFile: the shipped unit passes systemd-analyze verify and has the
// settings the boot server relies on.
func TestUnitFile(t *testing.T) {
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	verifyUnit(t, unit, binary)
	settings := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], strings.Fields(v)...)
		}
	}
	for key, want := range map[string][]string{
		"Type":       {"notify"},
		"After":      {"nfs-server.service", "nfs-ganesha.service"},
		"Before":     {"tftpd-hpa.service", "atftpd.service"},
		"Restart":    {"on-failure"},
		"ExecStart":  {installedPath, "mount", "-c", "/etc/pxebootfs/pxebootfs.cfg", "/srv/tftp/pxelinux.cfg"},
		"ExecReload": {"/bin/kill", "-HUP", "$MAINPID"},
		"WantedBy":   {"multi-user.target"},
	} {
		for _, w := range want {
			if !strings.Contains(" "+strings.Join(settings[key], " ")+" ", " "+w+" ") {
				t.Errorf("%s=%s lacks %s", key, strings.Join(settings[key], " "), w)
			}
		}
	}
}

// TestUnitInstall: `make install` into a staging root puts the binary, the
// unit, the config and the template where Debian admins expect them, the
// installed unit verifies, and a second install keeps the admin's config.
func TestUnitInstall(t *testing.T) {
	testenv.RequireTool(t, "make")
	root := t.TempDir()
	install := func() {
		t.Helper()
		// -o build: use the binary the tests built instead of rebuilding
		// into the source tree.
		cmd := exec.Command("make", "-s", "-C", "../..", "-o", "build", "install", "DESTDIR="+root, "BIN="+binary)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/local/sbin/pxebootfs":             0o755,
		"etc/systemd/system/pxebootfs.service": 0o644,
		"etc/pxebootfs/pxebootfs.cfg":          0o644,
		"etc/pxebootfs/pxebootfs.cfg.example":  0o644,
		"etc/pxebootfs/pxelinux.cfg.template":  0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v; want mode %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/pxebootfs.service"))
	if err != nil {
		t.Fatal(err)
	}
	verifyUnit(t, string(unit), filepath.Join(root, installedPath))
	// The installed config works as it is, beside the installed template.
	if out, errOut, code := run(t, "render", "-c", filepath.Join(root, "etc/pxebootfs/pxebootfs.cfg"), "C0A80102"); code != 0 || !strings.Contains(out, "C0A80102") {
		t.Errorf("render with the installed config: exit %d\n%s%s", code, out, errOut)
	}

	mine := "[PXEBOOTFS]\n# the admin's\npxe_template: pxelinux.cfg.template\n"
	for _, name := range []string{"pxebootfs.cfg", "pxelinux.cfg.template"} {
		if err := os.WriteFile(filepath.Join(root, "etc/pxebootfs", name), []byte(mine), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	install()
	for _, name := range []string{"pxebootfs.cfg", "pxelinux.cfg.template"} {
		if b, _ := os.ReadFile(filepath.Join(root, "etc/pxebootfs", name)); string(b) != mine {
			t.Errorf("a second make install replaced the admin's %s", name)
		}
	}
}

// TestUnitNotify: under systemd's Type=notify protocol the daemon reports
// READY=1 once mounted, RELOADING=1 then READY=1 around a reload, and
// STOPPING=1 on SIGTERM.
func TestUnitNotify(t *testing.T) {
	f := newFullSite(t, "")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	d := f.start()
	if msg := next(); msg != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	if !mounted(f.mnt) {
		t.Error("READY=1 before the mount was up")
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if msg := next(); !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1 with MONOTONIC_USEC", msg)
	}
	if msg := next(); msg != "READY=1" {
		t.Errorf("after the reload: %q, want READY=1", msg)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if msg := next(); msg != "STOPPING=1" {
		t.Errorf("on SIGTERM: %q, want STOPPING=1", msg)
	}
	if err := d.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
