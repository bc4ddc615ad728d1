package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pxebootfs/pxebootfs/internal/testenv"
)

// readmeBlock returns the indented command block that follows heading in
// the README, one command a line, as an admin would paste it.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == heading:
			in = true
		case in && strings.HasPrefix(l, "    "):
			lines = append(lines, strings.TrimPrefix(l, "    "))
		case in && len(lines) > 0:
			return strings.Join(lines, "\n") + "\n"
		}
	}
	t.Fatalf("README has no command block under %q", heading)
	return ""
}

// scratchOver mounts a fresh tmpfs over dir for the test (the e2e tests
// run in a private mount namespace, so the machine's dir is untouched);
// a dir the test had to create is removed again.
func scratchOver(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(dir) })
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("tmpfs over %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// TestREADMEQuickStart runs the README's "Mounting it over a real tftpd"
// steps verbatim with bash -e, from a checkout, on a machine where
// /etc/pxebootfs and /var/lib/pxebootfs do not exist yet: once with no
// /srv/tftp/pxelinux.cfg (a fresh Debian), once with one holding the
// admin's hand-written default. Each time a real tftpd-hpa serves a node's
// rendered config and the static default through the mount, and SIGTERM
// ends the mount.
func TestREADMEQuickStart(t *testing.T) {
	testenv.RequireNFSIsolation(t) // a private mount namespace for the tmpfs mounts
	block := readmeBlock(t, "## Mounting it over a real tftpd")
	for _, existing := range []bool{false, true} {
		name := "fresh"
		if existing {
			name = "with a pxelinux.cfg of hand-written files"
		}
		t.Run(name, func(t *testing.T) {
			for _, d := range []string{"/etc/pxebootfs", "/srv/tftp", "/var/lib/pxebootfs"} {
				scratchOver(t, d)
			}
			if existing {
				if err := os.Mkdir("/srv/tftp/pxelinux.cfg", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile("/srv/tftp/pxelinux.cfg/default", []byte("DEFAULT local\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", "-e", "-c", block)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
			out := &testenv.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			// Its own process group, so that the test can stop the
			// mount the steps leave in the foreground, and only it.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
					<-done
				}
				if mounted("/srv/tftp/pxelinux.cfg") {
					unix.Unmount("/srv/tftp/pxelinux.cfg", unix.MNT_DETACH)
				}
			})
			for deadline := time.Now().Add(30 * time.Second); !serving("/srv/tftp/pxelinux.cfg"); time.Sleep(50 * time.Millisecond) {
				select {
				case err := <-done:
					stopped = true
					t.Fatalf("the README's steps stopped before the mount served: %v\n%s", err, out.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no mount after 30 s:\n%s", out.String())
				}
			}
			addr := testenv.StartTFTPD(t, "/srv/tftp")
			b, err := fetch(t, addr, "C0A80102")
			if err != nil || !strings.Contains(string(b), "C0A80102") {
				t.Errorf("a node's config through tftpd-hpa: %q, %v\n%s", b, err, out.String())
			}
			if existing {
				if b, err := fetch(t, addr, "default"); err != nil || string(b) != "DEFAULT local\n" {
					t.Errorf("the admin's default through the mount: %q, %v", b, err)
				}
			}
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("the mount did not exit 0 on SIGTERM: %v\n%s", err, out.String())
			}
			stopped = true
			if mounted("/srv/tftp/pxelinux.cfg") {
				t.Error("still mounted after SIGTERM")
			}
			if !strings.Contains(out.String(), ": ok (config-only mode)") {
				t.Errorf("check did not pass:\n%s", out.String())
			}
		})
	}
}
