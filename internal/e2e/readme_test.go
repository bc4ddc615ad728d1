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
	"github.com/pxebootfs/pxebootfs/nfsexport"
)

// readmeBlock returns the indented command block that follows the first
// README line starting with lead, one command a line, as an admin would
// paste it.
func readmeBlock(t *testing.T, lead string) string {
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
		case !in && strings.HasPrefix(l, lead):
			in = true
		case in && strings.HasPrefix(l, "    "):
			lines = append(lines, strings.TrimPrefix(l, "    "))
		case in && len(lines) > 0:
			return strings.Join(lines, "\n") + "\n"
		}
	}
	t.Fatalf("README has no command block after %q", lead)
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
	full := readmeBlock(t, "Full mode (every node also gets its own root)")
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
			q := startBlock(t, block)
			if !q.serving(t) {
				t.Fatalf("the README's steps stopped before the mount served:\n%s", q.out.String())
			}
			addr := testenv.StartTFTPD(t, "/srv/tftp")
			b, err := fetch(t, addr, "C0A80102")
			if err != nil || !strings.Contains(string(b), "C0A80102") {
				t.Errorf("a node's config through tftpd-hpa: %q, %v\n%s", b, err, q.out.String())
			}
			if existing {
				if b, err := fetch(t, addr, "default"); err != nil || string(b) != "DEFAULT local\n" {
					t.Errorf("the admin's default through the mount: %q, %v", b, err)
				}
			}
			if err := q.stop(); err != nil {
				t.Errorf("the mount did not exit 0 on SIGTERM: %v\n%s", err, q.out.String())
			}
			if mounted("/srv/tftp/pxelinux.cfg") {
				t.Error("still mounted after SIGTERM")
			}
			if !strings.Contains(q.out.String(), ": ok (config-only mode)") {
				t.Errorf("check did not pass:\n%s", q.out.String())
			}

			// Full mode, on the same machine.
			scratchOver(t, "/srv/pxebootfs")
			q = startBlock(t, full)
			if nfsexport.KernelServer() != nil {
				// No kernel NFS server here: the steps stop at check,
				// which says why, before anything is mounted.
				if q.serving(t) || q.err == nil || !strings.Contains(q.out.String(), "the kernel NFS server is not running") {
					t.Errorf("full mode without an NFS server: %v\n%s", q.err, q.out.String())
				}
				return
			}
			if !q.serving(t) {
				t.Fatalf("the README's full-mode steps stopped before the mount served:\n%s", q.out.String())
			}
			t.Cleanup(func() {
				exec.Command("exportfs", "-u", "192.168.1.2:/srv/pxebootfs/nodes/C0A80102").Run()
				unix.Unmount("/srv/pxebootfs/nodes/C0A80102", unix.MNT_DETACH)
			})
			if b, err := fetch(t, addr, "C0A80102"); err != nil || !mounted("/srv/pxebootfs/nodes/C0A80102") {
				t.Errorf("full mode: %q, %v; root mounted %v\n%s", b, err, mounted("/srv/pxebootfs/nodes/C0A80102"), q.out.String())
			}
			if err := q.stop(); err != nil {
				t.Errorf("the full-mode mount did not exit 0 on SIGTERM: %v", err)
			}
		})
	}
}

// block is the README's steps running in bash.
type block struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
	err  error
}

// startBlock runs steps with bash -e from the checkout, with the built
// binary first in PATH, in a process group of its own so that the test
// can stop the mount the steps leave in the foreground, and only it.
func startBlock(t *testing.T, steps string) *block {
	t.Helper()
	q := &block{cmd: exec.Command("bash", "-e", "-c", steps), out: &testenv.Buffer{}, done: make(chan struct{})}
	q.cmd.Dir = "../.."
	q.cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
	q.cmd.Stdout, q.cmd.Stderr = q.out, q.out
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := q.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { q.err = q.cmd.Wait(); close(q.done) }()
	t.Cleanup(func() {
		q.stop()
		if mounted("/srv/tftp/pxelinux.cfg") {
			unix.Unmount("/srv/tftp/pxelinux.cfg", unix.MNT_DETACH)
		}
	})
	return q
}

// serving waits until the steps' mount serves (true), or the steps end
// first (false).
func (q *block) serving(t *testing.T) bool {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !serving("/srv/tftp/pxelinux.cfg"); time.Sleep(50 * time.Millisecond) {
		select {
		case <-q.done:
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mount after 30 s:\n%s", q.out.String())
		}
	}
	return true
}

// stop sends SIGTERM to the steps' process group, if they still run, and
// returns how they ended.
func (q *block) stop() error {
	select {
	case <-q.done:
		return q.err
	default:
	}
	syscall.Kill(-q.cmd.Process.Pid, syscall.SIGTERM)
	<-q.done
	return q.err
}
